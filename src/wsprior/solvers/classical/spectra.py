"""Power spectra of a widefield image: specimen, haze and noise, fitted from the image alone.

The deblur + dehaze model ``y = h ⊛ x + b + e`` (DESIGN.md §3) gives the image's power spectrum
(per-pixel normalised: white noise of variance ``σ²`` has ``P = σ²``)

    P(u) = |H(u)|² S(u) + s_h² G_σ(u) + σ_w²

with the specimen's spectrum ``S(u) = A |u|^(−β)`` (a power law, as natural and microscopy images
have), the haze's ``G_σ(u) = 4πσ² exp(−4π²σ²|u|²)`` (a unit-variance Gaussian random field of
correlation width ``σ``, pixels) and white noise ``σ_w`` (``estimate_noise_sigma``). These are
the priors of the Wiener filter ``H* / (|H|² + N/S)``, ``N = s_h² G_σ + σ_w²``, the posterior
mean under Gaussian assumptions.

Haze and specimen overlap at low frequencies, where ``|H| ≈ 1``: one image tells them apart only
by shape. The fit therefore takes the specimen's power law from the frequencies haze cannot
reach (``σ ≥ HAZE_SIGMA_RANGE_UM[0]``) and calls haze only the low-frequency power *in excess*
of that power law, in the shape of a Gaussian spectrum; when the excess is not clearly there,
the haze level is 0 and nothing is removed. The Wiener filter then removes, per frequency, the
share of the power the haze holds, never all of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..regularization import estimate_noise_sigma

#: Correlation widths (µm, σ of the Gaussian kernel) the haze may have: out-of-focus light is
#: blurred over at least about a micrometre; wider than a quarter of the field it is an offset.
HAZE_SIGMA_RANGE_UM = (0.5, 20.0)
#: Haze is only called haze where its excess over the specimen's power law is at least this
#: factor of the power law's own share in the low-frequency bins it is fitted on.
HAZE_EXCESS_FACTOR = 1.0
#: Specimen power-law exponent bounds (β = 0: white, point-like; 4: very smooth).
SLOPE_RANGE = (0.0, 4.0)
#: Log-spaced annuli per octave for the spectral fit.
_BINS_PER_OCTAVE = 4
_MIN_BIN_COUNT = 8
#: Frequencies whose OTF power is below this share of its maximum do not constrain the specimen.
_OTF_FLOOR = 0.02


@dataclass(frozen=True)
class ImageSpectra:
    """The fitted spectral model of one image, frequencies in cycles per pixel."""
    amplitude: float       # A of S(f) = A f^(−β)   (image units² per pixel)
    slope: float           # β
    haze_std: float        # s_h (image units)
    haze_sigma_px: float   # σ of the haze kernel (pixels)
    noise_sigma: float     # σ_w (image units)

    def specimen(self, f: torch.Tensor) -> torch.Tensor:
        """``S(f)``, at ``f = 0`` its limit (infinite for ``β > 0``)."""
        safe = torch.where(f > 0, f, torch.ones_like(f))
        at_zero = math.inf if self.slope > 0 else self.amplitude
        return torch.where(f > 0, self.amplitude * safe ** (-self.slope),
                           torch.full_like(f, at_zero))

    def haze(self, f: torch.Tensor) -> torch.Tensor:
        return self.haze_std ** 2 * haze_shape(f, self.haze_sigma_px)

    def noise(self, f: torch.Tensor) -> torch.Tensor:
        """``N(f) = s_h² G_σ(f) + σ_w²``."""
        return self.haze(f) + self.noise_sigma ** 2


def haze_shape(f: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """``G_σ(f)``: spectrum of a unit-variance Gaussian random field of kernel width ``σ`` px."""
    return 4 * math.pi * sigma_px ** 2 * torch.exp(-4 * math.pi ** 2 * sigma_px ** 2 * f ** 2)


def radial_frequency(shape: tuple[int, int], *, device=None,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``|f|`` in cycles per pixel on the FFT grid of ``shape``."""
    fy = torch.fft.fftfreq(shape[0], device=device, dtype=dtype)[:, None]
    fx = torch.fft.fftfreq(shape[1], device=device, dtype=dtype)[None, :]
    return torch.sqrt(fy ** 2 + fx ** 2)


def fit_spectra(image: torch.Tensor, otf_power: torch.Tensor, *, pixel_size_um: float,
                noise_sigma: float | None = None, haze_std: float | str = "auto",
                haze_sigma_um: float | str = "auto") -> ImageSpectra:
    """Fit ``ImageSpectra`` to ``image`` (Y, X); ``otf_power`` is ``|H|²`` on the image's own
    FFT grid. ``noise_sigma``, ``haze_std``, ``haze_sigma_um``: given values are kept."""
    image = image.double()
    sigma_w = float(estimate_noise_sigma(image)) if noise_sigma is None else float(noise_sigma)
    f, power, mtf2, count = _annular_periodogram(image, otf_power.double())
    haze_min_px = HAZE_SIGMA_RANGE_UM[0] / pixel_size_um
    if haze_sigma_um != "auto":
        haze_min_px = float(haze_sigma_um) / pixel_size_um
    amplitude, slope = _specimen_power_law(f, power, mtf2, count, sigma_w, haze_min_px)
    if haze_std == "auto" or haze_sigma_um == "auto":
        fitted_std, fitted_sigma = _haze_excess(f, power, mtf2, count, sigma_w, amplitude, slope,
                                                pixel_size_um, min(image.shape), haze_sigma_um)
    if haze_std != "auto":
        fitted_std = float(haze_std)
    if haze_sigma_um != "auto":
        fitted_sigma = float(haze_sigma_um) / pixel_size_um
    return ImageSpectra(amplitude, slope, fitted_std, fitted_sigma, sigma_w)


def _annular_periodogram(image: torch.Tensor, otf_power: torch.Tensor):
    """Hann-windowed periodogram averaged over log-spaced annuli of ``|f|``: (mean f, mean P,
    mean |H|², count) per annulus, starting above the window's own leakage (2 / field)."""
    ny, nx = image.shape
    window = torch.outer(torch.hann_window(ny, periodic=False, dtype=image.dtype),
                         torch.hann_window(nx, periodic=False, dtype=image.dtype))
    centred = image - (window * image).sum() / window.sum()
    power = torch.fft.fft2(window * centred).abs() ** 2 / (window ** 2).sum()
    f = radial_frequency((ny, nx), dtype=image.dtype)
    start = 2.0 / min(ny, nx)
    keep = f >= start
    bins = torch.floor(torch.log2(f[keep] / start) * _BINS_PER_OCTAVE).long()
    n = int(bins.max()) + 1
    count = torch.bincount(bins, minlength=n).double()
    means = [torch.bincount(bins, weights=v[keep], minlength=n) / count.clamp_min(1)
             for v in (f, power, otf_power)]
    used = count >= _MIN_BIN_COUNT
    return (*(m[used] for m in means), count[used])


def _specimen_power_law(f, power, mtf2, count, sigma_w: float, haze_min_px: float):
    """``(A, β)`` from the annuli beyond the reach of any haze (``f > 1/(π σ_min)``: the
    narrowest haze has ``e^-4`` of its power there) where the blurred specimen stands above the
    noise. With fewer than two such annuli the specimen is taken as white (``β = 0``)."""
    signal = (power - sigma_w ** 2) / mtf2.clamp_min(1e-12)
    usable = ((f > 1 / (math.pi * haze_min_px)) & (mtf2 > _OTF_FLOOR * float(mtf2.max()))
              & (power > 2 * sigma_w ** 2))
    if int(usable.sum()) < 2:
        usable = (mtf2 > _OTF_FLOOR * float(mtf2.max())) & (power > 2 * sigma_w ** 2)
        if int(usable.sum()) == 0:
            return max(float((signal.clamp_min(0) * count).sum() / count.sum()), 1e-30), 0.0
        return float((signal[usable] * count[usable]).sum() / count[usable].sum()), 0.0
    x, y, w = f[usable].log(), signal[usable].log(), count[usable].sqrt()
    xm, ym = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    slope = -float((w * (x - xm) * (y - ym)).sum() / (w * (x - xm) ** 2).sum())
    slope = min(max(slope, SLOPE_RANGE[0]), SLOPE_RANGE[1])
    log_a = float((w * (y + slope * x)).sum() / w.sum())
    return math.exp(log_a), slope


def _haze_excess(f, power, mtf2, count, sigma_w, amplitude, slope, pixel_size_um: float,
                 field_px: int, haze_sigma_um) -> tuple[float, float]:
    """``(s_h, σ_px)``: the Gaussian spectrum that best fits the low-frequency power in excess
    of the specimen's power law, or ``(0, σ_min)`` where there is no clear excess."""
    low_px, high_px = (s / pixel_size_um for s in HAZE_SIGMA_RANGE_UM)
    high_px = max(low_px, min(high_px, field_px / 4))
    if haze_sigma_um != "auto":
        sigmas = [float(haze_sigma_um) / pixel_size_um]
    else:
        sigmas = torch.logspace(math.log10(low_px), math.log10(high_px), 24).tolist()
    specimen = mtf2 * amplitude * f ** (-slope)
    excess = (power - specimen - sigma_w ** 2).clamp_min(0)
    best = (0.0, sigmas[0], 0.0)
    for sigma in sigmas:
        shape = haze_shape(f, sigma)
        reach = f < 1 / (math.pi * sigma)           # where this haze has ≥ e^-4 of its power
        if int(reach.sum()) == 0:
            continue
        w = count[reach]
        level = float((w * excess[reach] * shape[reach]).sum() / (w * shape[reach] ** 2).sum())
        explained = float((w * (level * shape[reach]).clamp_max(excess[reach])).sum())
        if (level > 0 and explained > best[2]
                and explained > HAZE_EXCESS_FACTOR * float((w * specimen[reach]).sum())):
            best = (math.sqrt(level), sigma, explained)
    return best[0], best[1]
