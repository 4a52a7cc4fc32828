"""Classical TIE phase retrieval: Tikhonov-regularised inverse Laplacian (closed form, Fourier).

``φ̂(u) = (k/I0) ∂Î/∂z(u) · L/(L² + r)``, ``L = 4π²|u|²`` (µm⁻²), ``k = 2π n_m/λ``, DC set
to 0 (phase is defined up to a constant). ``r`` has the units of ``L²`` (µm⁻⁴). To keep a
non-periodic field free of wrap-around artefacts, ``∂I/∂z`` is mirror-extended to twice its
size in Y and X before the FFT (its periodic continuation is then continuous: the solution
obeys Neumann boundary conditions, as a DCT solver would) and the result is cropped back.

The inverse amplifies noise as ``1/|u|²`` in amplitude (``1/|u|⁴`` in power): with ``r → 0``
the result is dominated by low-frequency "cloudy" noise, which ``r`` trades against blur.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..._arrays import to_tensor
from ..._validation import image_array, positive
from ...physics.tie import intensity_derivative, laplacian_symbol, wavenumber
from ..regularization import discrepancy_weight, estimate_noise_sigma
from .tie_weight import simulated_risk_weight

# Clamp band of the automatic weights, as the cut-off frequency u_c where L(u_c)² = r: from
# 1/(8 FOV) (a quarter of the lowest frequency of the mirror-extended grid: the inverse is then
# essentially unregularised) to 1/(16 pixel) (regularisation never flattens structure finer than
# 16 pixels, whatever the noise).
_LOW_CUTOFF_PER_FOV = 0.125
_HIGH_CUTOFF_PER_PIXEL = 1 / 16
# Spectral rule: half-octave annuli, bins with fewer coefficients than this are not fitted, and
# the fitted slope p of the data SNR ∝ |u|^p is kept in [1, 4] (phase spectra ∝ |u|^{p-4}).
_BINS_PER_OCTAVE = 2
_MIN_BIN_COUNT = 16
_SLOPE_RANGE = (1.0, 4.0)
_RULES = ("auto", "crossover", "discrepancy")


def tie_tikhonov(stack, z_um: Sequence[float], *, wavelength_um: float, pixel_size_um: float,
                 n_medium: float = 1.0, regularization="auto", mean_intensity=None,
                 remove_mean: bool = True) -> torch.Tensor:
    """Phase (..., Y, X) [rad, float32, mean 0 per image] from a defocus stack (..., Z, Y, X).

    ``stack``: intensities at depths ``z_um`` (µm, ``Z ≥ 2``, any order and spacing), torch
    (device kept) or numpy. ``regularization``: a number ``r ≥ 0`` (µm⁻⁴, the units of ``L²``),
    ``"auto"`` (least simulated risk), ``"crossover"`` or ``"discrepancy"`` (Morozov); see
    ``tie_regularization``. A tile of a larger stack passes the whole stack's ``mean_intensity``
    ``I0`` (default: this stack's mean) and ``remove_mean=False``: the untiled phase has zero mean
    already (the even mirror extension makes its mean the extended grid's DC, which the filter
    sets to 0), so the per-image subtraction only removes round-off there, but a tile's own mean
    is not zero.
    """
    stack = _stack_tensor(stack)
    k = wavenumber(wavelength_um, n_medium)
    didz, i0 = intensity_derivative(stack, z_um)
    if mean_intensity is not None:
        given = torch.as_tensor(mean_intensity, dtype=didz.dtype, device=didz.device)
        i0 = given.expand_as(i0) if given.ndim == 0 else given.reshape(i0.shape)
    _check_mean_intensity(i0)
    spectrum, symbol = _extended_spectrum(didz, pixel_size_um)
    if isinstance(regularization, str):
        r = _automatic_r(regularization, stack, z_um, spectrum, symbol, pixel_size_um)
    else:
        r = _fixed_r(regularization, stack)
    phase_hat = (k / i0) * spectrum * _tikhonov_filter(symbol, r[..., None, None])
    phase = torch.fft.ifft2(phase_hat).real[..., : didz.shape[-2], : didz.shape[-1]]
    return phase - phase.mean(dim=(-2, -1), keepdim=True) if remove_mean else phase


def _check_mean_intensity(i0: torch.Tensor) -> None:
    """TIE divides by the mean intensity ``I0``: an empty (all-zero) or negative stack has none."""
    lowest = float(i0.min())
    if not (lowest > 0 and math.isfinite(lowest)):
        raise ValueError(f"stack: the mean intensity of every defocus stack must be positive "
                         f"(a brightfield image of the specimen); got {lowest:.3g}")


def tikhonov_transfer(shape: tuple[int, int], pixel_size_um: float, regularization: float,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The Tikhonov inverse-Laplacian filter ``L/(L² + r)`` on the FFT grid of ``shape`` (up to
    the constant ``k/I0``): its kernel's reach is the halo a TIE tile needs (``wsprior.halo``)."""
    return _tikhonov_filter(laplacian_symbol(shape, pixel_size_um, dtype=dtype),
                            torch.tensor(float(regularization), dtype=dtype))


def tie_regularization(stack, z_um: Sequence[float], *, pixel_size_um: float,
                       rule: str = "auto") -> torch.Tensor:
    """The weight ``r`` (...,) [µm⁻⁴] that ``tie_tikhonov(regularization=rule)`` uses.

    The rules work on ``d = ∂I/∂z`` mirror-extended to ``N`` pixels, whose white noise has
    ``σ_d = σ_I / sqrt(Σ_j (z_j − z̄)²)`` (the least-squares slope of planes with noise
    ``σ_I``, the RMS over planes of ``estimate_noise_sigma``), i.e. ``E|n̂(u)|² = N σ_d²``.

    * ``"auto"`` — the least expected phase error on simulated fields with the data's own
      spectrum, noise and border (``tie_weight.simulated_risk_weight``): it accounts for the
      unmeasured flux through the border, which dominates on fields cut from a larger
      specimen (where the noise-based rules below left 2-6× the best weight's error).
    * ``"crossover"`` — signal-to-noise crossover (the default before issue 19; best where the
      specimen is mirror-symmetric about the border, i.e. only in simulations). Tikhonov is the Wiener filter of a data SNR
      ``L²/r``, so ``r = L(u_c)²`` at the frequency ``u_c`` where the data SNR is 1. The SNR
      ``|d̂|²/(N σ_d²) − 1`` is averaged over half-octave annuli of ``|u|``, a power law
      ``a |u|^p`` is fitted (weights ``sqrt(count)``) over the annuli from the lowest up to the
      SNR peak (slope kept in [1, 4]), and solved for ``a u_c^p = 1``.
    * ``"discrepancy"`` — Morozov: ``r`` with data residual
      ``‖A φ_r − d‖² = Σ_{u≠0} |d̂|² (r/(L²+r))² / N`` equal to ``N σ_d²``. The Tikhonov data
      filter ``L²/(L²+r)`` is a high-pass, so reaching the whole (white) noise energy needs
      most of the band suppressed: this over-smooths TIE data badly and is kept for comparison.

    ``r`` is clamped to ``regularization_band`` (cut-off between ``1/(8 FOV)`` and
    ``1/(16 pixel)``).
    """
    stack = _stack_tensor(stack)
    didz, _ = intensity_derivative(stack, z_um)
    spectrum, symbol = _extended_spectrum(didz, pixel_size_um)
    return _automatic_r(rule, stack, z_um, spectrum, symbol, pixel_size_um)


def regularization_band(shape: tuple[int, int], pixel_size_um: float) -> tuple[float, float]:
    """``(r_low, r_high)`` [µm⁻⁴]: clamp band of the automatic weights, ``r = L(u_c)²`` with
    ``u_c`` from ``1/(8 FOV)`` to ``1/(16 pixel)`` (FOV: the longer field side in µm)."""
    pixel = positive("pixel_size_um", pixel_size_um, "µm")
    u_low = _LOW_CUTOFF_PER_FOV / (max(shape) * pixel)
    u_high = _HIGH_CUTOFF_PER_PIXEL / pixel
    return _symbol_sq(u_low), _symbol_sq(u_high)


def _symbol_sq(u: float) -> float:
    return (4 * math.pi ** 2 * u ** 2) ** 2


def _stack_tensor(stack) -> torch.Tensor:
    image_array("stack", stack, 3, "(..., Z, Y, X)")
    device = stack.device if isinstance(stack, torch.Tensor) else torch.device("cpu")
    return to_tensor(stack, device, torch.float32)


def _mirror_extend(x: torch.Tensor) -> torch.Tensor:
    """Even (half-sample symmetric) extension (..., Y, X) → (..., 2Y, 2X)."""
    x = torch.cat([x, x.flip(-2)], dim=-2)
    return torch.cat([x, x.flip(-1)], dim=-1)


def _extended_spectrum(didz: torch.Tensor,
                       pixel_size_um: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FFT of the mirror-extended ``∂I/∂z`` and ``L = 4π²|u|²`` on the same grid."""
    extended = _mirror_extend(didz)
    symbol = laplacian_symbol(tuple(extended.shape[-2:]), pixel_size_um,
                              device=didz.device, dtype=didz.dtype)
    return torch.fft.fft2(extended), symbol


def _tikhonov_filter(symbol: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``L/(L² + r)`` with the DC term set to 0."""
    safe = torch.where(symbol > 0, symbol, torch.ones_like(symbol))
    return torch.where(symbol > 0, safe / (safe ** 2 + r), torch.zeros_like(symbol))


def _fixed_r(regularization, stack: torch.Tensor) -> torch.Tensor:
    r = float(regularization)
    if not r >= 0 or not math.isfinite(r):
        raise ValueError(f"regularization must be a finite number >= 0, 'auto' or "
                         f"'discrepancy'; got {r!r}")
    return torch.full(stack.shape[:-3], r, dtype=stack.dtype, device=stack.device)


def _slope_noise(stack: torch.Tensor, z_um: Sequence[float]) -> torch.Tensor:
    """``σ_d = σ_I / sqrt(Σ (z − z̄)²)`` (...,): noise of the least-squares ``∂I/∂z``."""
    z = torch.as_tensor([float(v) for v in z_um], dtype=torch.float64)
    sigma_planes = estimate_noise_sigma(stack).double()            # (..., Z)
    sigma_i = sigma_planes.pow(2).mean(dim=-1).sqrt()
    return (sigma_i / (z - z.mean()).pow(2).sum().sqrt()).to(stack.device)


def _automatic_r(rule: str, stack, z_um, spectrum, symbol, pixel_size_um) -> torch.Tensor:
    """Per-image weight (...,) chosen by ``rule`` and clamped to ``regularization_band``."""
    if rule not in _RULES:
        raise ValueError(f"regularization must be a number >= 0 or one of "
                         f"{', '.join(map(repr, _RULES))}; got {rule!r}")
    low, high = regularization_band(tuple(stack.shape[-2:]), pixel_size_um)
    noise = _slope_noise(stack, z_um).reshape(-1).tolist()
    if rule == "auto":
        planes = stack.reshape(-1, *stack.shape[-3:])
        weights = [simulated_risk_weight(p, z_um, pixel_size_um=pixel_size_um, noise_sigma=s,
                                         band=(low, high)) for p, s in zip(planes, noise)]
        return torch.tensor(weights, dtype=stack.dtype, device=stack.device).reshape(stack.shape[:-3])
    n_pix = spectrum.shape[-1] * spectrum.shape[-2]
    power = (spectrum.abs() ** 2).double().reshape(-1, n_pix)
    noise_power = [n_pix * s ** 2 for s in noise]
    sym = symbol.double().flatten()
    choose = _crossover_r if rule == "crossover" else _discrepancy_r
    weights = [choose(p, sym, noise, low, high) for p, noise in zip(power, noise_power)]
    r = torch.tensor(weights, dtype=stack.dtype, device=stack.device)
    return r.reshape(stack.shape[:-3])


def _discrepancy_r(power, sym, noise_power, low, high) -> float:
    """Morozov: ``Σ_{u≠0} |d̂|² (r/(L²+r))² / N = N σ_d²`` (``noise_power = N σ_d²``)."""
    n_pix = power.numel()
    p = torch.where(sym > 0, power / n_pix, torch.zeros_like(power))
    sym_sq = sym ** 2

    def residual_sq(r: float) -> float:
        return float((p * (r / (sym_sq + r)) ** 2).sum())
    return discrepancy_weight(residual_sq, noise_power, low=low, high=high)


def _crossover_r(power, sym, noise_power, low, high) -> float:
    """``r = L(u_c)²`` where the fitted annular data SNR ``a u^p`` equals 1 (see above)."""
    if noise_power <= 0:
        return low
    snr, u, count = _annular_snr(power, sym, noise_power)
    usable = count >= _MIN_BIN_COUNT
    peak = int(torch.argmax(torch.where(usable, snr, torch.full_like(snr, -math.inf))))
    fit = usable & (torch.arange(snr.numel(), device=snr.device) <= peak) & (snr > 0)
    if int(fit.sum()) == 0:
        return high
    x, y, w = u[fit].log(), snr[fit].log(), count[fit].sqrt()
    slope = _weighted_slope(x, y, w) if int(fit.sum()) >= 2 else _SLOPE_RANGE[1]
    slope = min(max(slope, _SLOPE_RANGE[0]), _SLOPE_RANGE[1])
    log_a = float((w * (y - slope * x)).sum() / w.sum())
    u_c = math.exp(-log_a / slope)
    return min(max(_symbol_sq(u_c), low), high)


def _annular_snr(power, sym, noise_power):
    """Mean data SNR ``|d̂|²/(N σ_d²) − 1``, mean ``|u|`` and count per half-octave annulus."""
    nonzero = sym > 0
    u = sym[nonzero].sqrt() / (2 * math.pi)
    bins = torch.floor(torch.log2(u / u.min()) * _BINS_PER_OCTAVE).long()
    n_bins = int(bins.max()) + 1
    count = torch.bincount(bins, minlength=n_bins).double()
    mean_power = torch.bincount(bins, weights=power[nonzero], minlength=n_bins) / count
    mean_u = torch.bincount(bins, weights=u, minlength=n_bins) / count
    return mean_power / noise_power - 1, mean_u, count


def _weighted_slope(x, y, w) -> float:
    """Slope of the weighted least-squares line ``y ≈ c + p x``."""
    xm, ym = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    return float((w * (x - xm) * (y - ym)).sum() / (w * (x - xm) ** 2).sum())
