"""The TIE Tikhonov weight that minimises the expected phase error, by simulation.

On a finite field of view the TIE data fix the phase only up to a harmonic function: the flux
through the border is not measured, and the mirror-extended FFT solver assumes none (Neumann
boundaries). For a field cut from a larger specimen that harmonic error, not noise, dominates
the error at low frequencies, and a weight chosen from the noise alone (``"crossover"``,
``"discrepancy"``) leaves it in: 2-6× the error of the best weight on simulated cut fields.

This rule estimates the expected error of every weight on fields *like the measured one*:

1. the phase spectrum is estimated from the data, ``S_ψ(u) = (P_d(u) − σ_d²)/L(u)²`` in units
   of ``ψ = (I0/k) φ`` (the weight does not depend on ``k/I0``), over annuli where the data
   stand above their noise, interpolated between them, flat below the lowest and falling as
   ``|u|^-6`` above the highest;
2. Gaussian fields with that spectrum are drawn on a field twice as large, damped outside the
   measured field to the level of the specimen seen along its border (``border_activity``: a
   specimen that fills the field continues beyond it, isolated cells on a flat background do
   not), their exact ``∂I/∂z`` is cropped to the field and measured with the data's noise;
3. the solver runs on each draw; by Parseval on the mirror-extended grid (the estimate and the
   mirrored truth are both even) the error of every weight is a sum over frequencies, so a
   whole grid of weights costs one FFT per draw. The weight with the least mean error wins,
   unless the zero phase (``r = ∞``) is expected to do as well.

Large planes are estimated on a binned copy (the weight lives at low frequencies), which also
keeps the cost below a second.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...physics.tie import intensity_derivative, laplacian_symbol
from .spectra import windowed_power

#: Fields drawn per estimate, and the side (pixels) larger planes are binned down to.
DRAWS = 6
ESTIMATE_SIDE = 128
#: Annuli per octave for the phase spectrum; annuli with fewer coefficients are not used.
_BINS_PER_OCTAVE = 2
_MIN_BIN_COUNT = 8
#: A spectrum annulus counts as measured where its power exceeds the noise's by this factor.
_MEASURED_SNR = 1.0
#: Width of the border band (share of the shorter side) whose activity ``border_activity`` reads,
#: and of the ramp over which the simulated specimen fades to that activity.
ACTIVITY_BAND = 0.04
BORDER_BAND = 0.1
#: The zero phase (``r = ∞``) is returned unless some weight's expected error is below this
#: share of the zero phase's: a weak or noisy defocus signal, whose phase no weight recovers,
#: must not come out worse than no phase at all.
ZERO_RISK_SHARE = 1.0
_HIGH_FREQUENCY_SLOPE = -6.0
_SEED = 0


def simulated_risk_weight(stack: torch.Tensor, z_um, *, pixel_size_um: float, noise_sigma: float,
                          band: tuple[float, float], candidates: int = 48) -> float:
    """The weight ``r`` (µm⁻⁴) in ``band`` with the least expected zero-mean phase error for the
    stack (Z, Y, X) (module docstring); ``noise_sigma``: σ of ``∂I/∂z``."""
    didz, _ = intensity_derivative(stack.double(), z_um)
    didz, pixel, noise_sigma = _binned(didz.reshape(didz.shape[-2:]), pixel_size_um, noise_sigma)
    spectrum = _phase_spectrum(didz, noise_sigma, pixel)
    if spectrum is None:              # the data are noise at every frequency: the zero phase
        return math.inf
    weights = torch.logspace(math.log10(band[0]), math.log10(band[1]), candidates,
                             dtype=torch.float64)
    risk, zero_risk = _expected_error(didz.shape, pixel, spectrum, noise_sigma,
                                      border_activity(didz, noise_sigma), weights)
    if float(risk.min()) >= ZERO_RISK_SHARE * zero_risk:
        return math.inf               # no weight is expected to beat the zero phase
    return float(weights[int(torch.argmin(risk))])


def border_activity(didz: torch.Tensor, noise_sigma: float) -> float:
    """Signal power of ``∂I/∂z`` in a band along the border over that of the whole field, in
    [0, 1]: about 1 for a specimen that fills the field, about 0 for one on a flat background."""
    width = max(2, int(ACTIVITY_BAND * min(didz.shape)))
    centred = didz - didz.mean()
    border = torch.ones_like(centred, dtype=torch.bool)
    border[width:-width, width:-width] = False
    signal = float(centred.square().mean()) - noise_sigma ** 2
    at_border = float(centred[border].square().mean()) - noise_sigma ** 2
    return min(1.0, max(0.0, at_border / signal)) if signal > 0 else 1.0


def _binned(didz: torch.Tensor, pixel_size_um: float, noise_sigma: float):
    """``∂I/∂z`` averaged over ``b × b`` pixels so that its longer side is at most
    ``ESTIMATE_SIDE``, with the pixel size and noise σ that go with it."""
    factor = max(1, math.ceil(max(didz.shape) / ESTIMATE_SIDE))
    if factor == 1:
        return didz, pixel_size_um, noise_sigma
    ny, nx = (n // factor * factor for n in didz.shape)
    pooled = didz[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(dim=(1, 3))
    return pooled, pixel_size_um * factor, noise_sigma / factor


def _phase_spectrum(didz: torch.Tensor, noise_sigma: float, pixel_size_um: float):
    """``(log |u|, log S_ψ)`` of the measured annuli and the last one's index, or ``None``."""
    ny, nx = didz.shape
    power = windowed_power(didz)
    symbol = laplacian_symbol((ny, nx), pixel_size_um, dtype=didz.dtype)
    u = symbol.sqrt() / (2 * math.pi)
    lowest = 1 / (max(ny, nx) * pixel_size_um)
    keep = u >= lowest
    bins = torch.floor(torch.log2(u[keep] / lowest) * _BINS_PER_OCTAVE).long()
    count = torch.bincount(bins).double()
    mean = [torch.bincount(bins, weights=v[keep]) / count.clamp_min(1)
            for v in (u, power, (power - noise_sigma ** 2).clamp_min(0) / symbol.clamp_min(1e-30) ** 2)]
    used = count >= _MIN_BIN_COUNT
    u_bins, power_bins, phase_bins = (m[used] for m in mean)
    measured = (power_bins > (1 + _MEASURED_SNR) * noise_sigma ** 2) & (phase_bins > 0)
    if not bool(measured.any()):
        return None
    last = int(torch.nonzero(measured).max())
    log_u = u_bins[: last + 1].log()
    log_s = torch.from_numpy(np.interp(log_u.numpy(), u_bins[measured].log().numpy(),
                                       phase_bins[measured].log().numpy()))
    return log_u, log_s


def _spectrum_on(shape, pixel_size_um: float, spectrum) -> tuple[torch.Tensor, torch.Tensor]:
    """``S_ψ`` and ``L`` on the FFT grid of ``shape`` (0 at DC)."""
    log_u, log_s = spectrum
    symbol = laplacian_symbol(shape, pixel_size_um, dtype=torch.float64)
    u = (symbol.sqrt() / (2 * math.pi)).clamp_min(1e-12).log()
    values = torch.from_numpy(np.interp(u.numpy(), log_u.numpy(), log_s.numpy()))
    beyond = u > log_u[-1]
    values[beyond] = log_s[-1] + _HIGH_FREQUENCY_SLOPE * (u[beyond] - log_u[-1])
    density = values.exp()
    density[0, 0] = 0
    return density, symbol


def _envelope(shape, field, activity: float) -> torch.Tensor:
    """1 inside the field, ramping over the border band to ``activity`` at its edge and beyond
    (amplitude of the simulated specimen; ``activity`` rather than its square root, the
    amplitude of that power, was chosen on simulated fields: it still took cut fields' weights
    to within 1.2× of the best, and halved the error on isolated cells)."""
    profiles = []
    for n, m in zip(shape, field):
        start = (n - m) // 2
        depth = torch.minimum(torch.arange(n) - start, start + m - 1 - torch.arange(n)).double()
        ramp = (depth / (BORDER_BAND * m)).clamp(0, 1)
        profiles.append(0.5 - 0.5 * torch.cos(math.pi * ramp))
    inside = torch.minimum(profiles[0][:, None], profiles[1][None, :])
    return activity + (1 - activity) * inside


def _mirror(x: torch.Tensor) -> torch.Tensor:
    x = torch.cat([x, x.flip(-2)], dim=-2)
    return torch.cat([x, x.flip(-1)], dim=-1)


def _expected_error(field, pixel_size_um: float, spectrum, noise_sigma: float, activity: float,
                    weights: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mean zero-mean squared error of the Tikhonov estimate for each weight (module docstring),
    and that of the zero phase (``r = ∞``):
    ``Σ_u |F_r D − T|² = Σ_u F_r²|D|² − 2 F_r Re(D T̄) + |T|²`` with the draws' sums of
    ``|D|²``, ``Re(D T̄)`` and ``|T|²`` over the mirror-extended grid (DC left out: the mean)."""
    ny, nx = field
    big = (2 * ny, 2 * nx)           # the simulation's field, and the solver's mirror grid
    density, symbol = _spectrum_on(big, pixel_size_um, spectrum)
    amplitude = density.sqrt()
    envelope = _envelope(big, field, activity)
    generator = torch.Generator().manual_seed(_SEED)
    y0, x0 = (ny // 2, nx // 2)
    data_power = cross = truth_power = 0.0
    for _ in range(DRAWS):
        white = torch.randn(big, generator=generator, dtype=torch.float64)
        phase = torch.fft.ifft2(amplitude * torch.fft.fft2(white)).real * envelope
        didz = torch.fft.ifft2(symbol * torch.fft.fft2(phase)).real
        phase, didz = (a[y0:y0 + ny, x0:x0 + nx] for a in (phase, didz))
        didz = didz + noise_sigma * torch.randn(field, generator=generator, dtype=torch.float64)
        data, truth = torch.fft.fft2(_mirror(didz)), torch.fft.fft2(_mirror(phase))
        data_power = data_power + data.abs().square()
        cross = cross + (data * truth.conj()).real
        truth_power = truth_power + truth.abs().square()
    data_power[0, 0] = cross[0, 0] = truth_power[0, 0] = 0     # the mean is not compared
    laplacian = symbol.flatten()
    data_power, cross = data_power.flatten(), cross.flatten()
    safe = torch.where(laplacian > 0, laplacian, torch.ones_like(laplacian))
    risk = torch.stack([(gain ** 2 * data_power - 2 * gain * cross).sum()
                        for gain in (safe / (safe ** 2 + w) for w in weights.tolist())])
    norm = DRAWS * (4 * ny * nx) ** 2
    return (risk + truth_power.sum()) / norm, float(truth_power.sum()) / norm
