"""Deblur + dehaze: Tikhonov/Wiener deconvolution with the haze as coloured noise, and
Richardson–Lucy with the haze as a background.

Measurement model (DESIGN.md §3): ``y = h ⊛ x + b + e`` with haze ``b`` a Gaussian random field
of correlation width ``σ_h`` (``haze_sigma_um``) and standard deviation ``s_h`` (``haze_std``),
and white noise ``e`` of standard deviation ``σ_w`` (estimated from the data, MAD). The noise
power spectrum is therefore ``N(u) = σ_w² + s_h² |K̂_σ(u)|²`` and the whitened Tikhonov solution

    X(u) = H*(u) Y(u) / (|H(u)|² + r N(u))

hands the haze-dominated low frequencies to the regulariser. ``r`` comes from Morozov's
discrepancy principle on the whitened residual unless given. The constant offset (mean haze +
camera background) cannot be separated from the object's mean by a linear filter; it is
estimated as a low percentile of the dehazed image (fluorescence has dark background) unless
``background`` is given, and negative values are clipped (densities are ≥ 0).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...noise import StructuredNoise
from ...physics.blur_haze import Blur
from ...physics.optics import embed_centered
from ..padding import mirror_pad
from ..regularization import discrepancy_weight, estimate_noise_sigma

DEFAULT_HAZE_SIGMA_UM = 3.0
_BACKGROUND_PERCENTILE = 1.0
_PASSBAND = 1e-3  # |H|² relative to its maximum
_EPS = 1e-6


@dataclass
class WhitenedDeconvolution:
    """One image's whitened Tikhonov solve on a mirror-padded grid."""
    dehazed: torch.Tensor      # object estimate incl. the constant offset, (Y, X)
    haze: torch.Tensor         # posterior-mean haze fluctuation, (Y, X)
    regularization: float


def wiener_deblur(y: torch.Tensor, psf: torch.Tensor, *, pixel_size_um: float,
                  haze_sigma_um: float = DEFAULT_HAZE_SIGMA_UM, haze_std: float | str = "auto",
                  regularization: float | str = "auto",
                  background: float | str = "auto") -> torch.Tensor:
    """Whitened Tikhonov deblur + dehaze of ``y`` (..., Y, X) → (..., Y, X), ≥ 0."""
    images = y.reshape(-1, *y.shape[-2:])
    out = []
    for image in images:
        solve = whitened_deconvolution(image, psf, pixel_size_um=pixel_size_um,
                                       haze_sigma_um=haze_sigma_um, haze_std=haze_std,
                                       regularization=regularization)
        out.append((solve.dehazed - _offset(solve.dehazed, background)).clamp_min(0))
    return torch.stack(out).reshape(y.shape)


def richardson_lucy(y: torch.Tensor, psf: torch.Tensor, *, pixel_size_um: float,
                    haze_sigma_um: float = DEFAULT_HAZE_SIGMA_UM, haze_std: float | str = "auto",
                    iterations: int = 20, background: float | str = "auto",
                    progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Richardson–Lucy ``x ← x · Aᵀ(y / (A x + b)) / Aᵀ1`` with the haze background ``b``
    (offset + posterior-mean haze from the whitened solve) held fixed."""
    images = y.reshape(-1, *y.shape[-2:])
    blur = Blur(psf.to(y), tuple(y.shape[-2:]))
    backgrounds = []
    for image in images:
        solve = whitened_deconvolution(image, psf, pixel_size_um=pixel_size_um,
                                       haze_sigma_um=haze_sigma_um, haze_std=haze_std)
        backgrounds.append((solve.haze + _offset(solve.dehazed, background)).clamp_min(_EPS))
    background_map = torch.stack(backgrounds)
    data = images.clamp_min(0)
    norm = blur.A_adjoint(torch.ones_like(data)).clamp_min(_EPS)
    estimate = (data - background_map).clamp_min(0).mean(dim=(-2, -1), keepdim=True)
    estimate = estimate.expand_as(data).clamp_min(_EPS)
    for i in range(iterations):
        ratio = data / (blur.A(estimate) + background_map).clamp_min(_EPS)
        estimate = estimate * blur.A_adjoint(ratio) / norm
        if progress is not None:
            progress(i + 1, iterations)
    return estimate.reshape(y.shape)


def whitened_deconvolution(y: torch.Tensor, psf: torch.Tensor, *, pixel_size_um: float,
                           haze_sigma_um: float = DEFAULT_HAZE_SIGMA_UM,
                           haze_std: float | str = "auto",
                           regularization: float | str = "auto") -> WhitenedDeconvolution:
    """``X = H* Y / (|H|² + r N)`` for one image (Y, X); see the module docstring."""
    widths = tuple(max(k, n // 8) for k, n in zip(psf.shape, y.shape[-2:]))
    padded, crop = mirror_pad(y, widths)
    shape = tuple(padded.shape)
    otf = torch.fft.fft2(embed_centered(psf.to(y), shape))
    haze_psd = _haze_spectrum(padded, haze_sigma_um / pixel_size_um, haze_std)
    noise_psd = float(estimate_noise_sigma(padded)) ** 2 + haze_psd
    spectrum = torch.fft.fft2(padded - padded.mean())
    mtf2 = otf.abs() ** 2
    r = _choose_weight(spectrum, mtf2, noise_psd) if regularization == "auto" else float(regularization)
    denominator = mtf2 + r * noise_psd
    object_spectrum = otf.conj() * spectrum / denominator
    object_spectrum[0, 0] = 0
    haze_spectrum = r * haze_psd * spectrum / denominator
    haze_spectrum[0, 0] = 0
    dehazed = torch.fft.ifft2(object_spectrum).real[crop] + y.mean() / otf[0, 0].real
    return WhitenedDeconvolution(dehazed=dehazed, haze=torch.fft.ifft2(haze_spectrum).real[crop],
                                 regularization=r)


def _haze_spectrum(padded: torch.Tensor, sigma_px: float, haze_std) -> torch.Tensor:
    """``s_h² |K̂_σ|²`` in per-pixel variance units. ``haze_std="auto"``: the standard deviation
    of the measurement low-passed at the haze width (an upper bound: it includes the object's
    own low frequencies; the discrepancy-chosen weight is insensitive to it within ~2×)."""
    if haze_std == "auto":
        low_passed = StructuredNoise(sigma_px).power_spectrum(tuple(padded.shape), device=padded.device,
                                                              dtype=padded.dtype)
        low_passed = low_passed / low_passed[0, 0]
        haze_std = float(torch.fft.ifft2(low_passed * torch.fft.fft2(padded)).real.std())
    return float(haze_std) ** 2 * StructuredNoise(sigma_px).power_spectrum(
        tuple(padded.shape), device=padded.device, dtype=padded.dtype)


def _choose_weight(spectrum, mtf2, noise_psd) -> float:
    """Discrepancy principle over the OTF passband: the whitened residual energy equals the
    number of passband frequencies (unit variance each). Frequencies beyond the cut-off are left
    out: there the estimate is 0 for every ``r``, and their pure-noise residual would swamp the
    equation (70 % of the bins at Nyquist sampling)."""
    band = mtf2 > _PASSBAND * mtf2.max()
    band[0, 0] = False
    power = (spectrum.abs() ** 2 / noise_psd)[band]
    mtf2, noise_psd = mtf2[band], noise_psd[band]
    count = spectrum.numel()

    def whitened_residual(r: float) -> float:
        gain = r * noise_psd / (mtf2 + r * noise_psd)
        return float((gain ** 2 * power).sum() / count)

    return discrepancy_weight(whitened_residual, float(band.sum()), low=1e-6, high=1e6)


def _offset(dehazed: torch.Tensor, background) -> float:
    if background == "auto":
        step = max(1, dehazed.numel() // 100_000)
        return float(torch.quantile(dehazed.flatten()[::step], _BACKGROUND_PERCENTILE / 100))
    return float(background)
