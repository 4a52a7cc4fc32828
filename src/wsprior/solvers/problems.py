"""Inverse problems in the form the diffusion samplers need.

A ``FourierProblem`` is ``y = A x + n`` with ``A`` diagonal in Fourier space on a mirror-padded
grid (``Ŷ = H X̂``) and Gaussian noise of power spectrum ``N(u)`` (white + structured haze). The
unknown is mapped into the prior's range by an affine map ``x = centre + scale · x_p`` taken from
the classical solution's 0.1/99.9 percentiles (as the training images were scaled), so the
network sees images like those it was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..physics.tie import intensity_derivative, laplacian_symbol, wavenumber
from .classical import deconvolution
from .padding import mirror_pad, mirror_pad_to
from .regularization import estimate_noise_sigma


@dataclass
class FourierProblem:
    transfer: torch.Tensor            # H (Yp, Xp), complex
    noise_power: torch.Tensor         # N(u) (Yp, Xp), per-pixel variance units, > 0
    data_spectrum: torch.Tensor       # Ŷ (Yp, Xp), the measurement on the padded grid
    crop: tuple[slice, slice]         # padded grid → image
    classical: torch.Tensor           # the classical estimate (Y, X), physical units
    centre: float                     # x = centre + scale · x_p
    scale: float
    offset: float = 0.0               # added back after reconstruction (e.g. background)

    @property
    def padded_shape(self) -> tuple[int, int]:
        return tuple(self.transfer.shape)

    def to_prior(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.centre) / self.scale

    def from_prior(self, x_p: torch.Tensor) -> torch.Tensor:
        return self.centre + self.scale * x_p

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Image (..., Y, X) → padded grid, mirrored like the measurement."""
        return mirror_pad_to(x, self.padded_shape)[0]

    def proximal(self, x0: torch.Tensor, precision: torch.Tensor | float,
                 guidance: float = 1.0) -> torch.Tensor:
        """argmin_x  guidance · ‖y − A x‖²_{N⁻¹} + precision · ‖x − x0‖²  (physical units),
        closed form per frequency: X = (g H* Y/N + ρ X0) / (g |H|²/N + ρ)."""
        x0_hat = torch.fft.fft2(self.pad(x0))
        weight = guidance / self.noise_power
        numerator = weight * self.transfer.conj() * self.data_spectrum + precision * x0_hat
        denominator = weight * self.transfer.abs() ** 2 + precision
        return torch.fft.ifft2(numerator / denominator).real[(..., *self.crop)]

    def residual_norm(self, x: torch.Tensor) -> float:
        """Whitened data misfit per frequency, ``mean |Ŷ − H X̂|² / (N · npix)`` (≈ 1 at the noise level)."""
        x_hat = torch.fft.fft2(self.pad(x))
        count = x_hat.numel()
        return float(((self.data_spectrum - self.transfer * x_hat).abs() ** 2
                      / (self.noise_power * count)).mean())


def deblur_problem(y: torch.Tensor, psf: torch.Tensor, *, pixel_size_um: float,
                   haze_sigma_um: float, haze_std, background) -> FourierProblem:
    """``y = h ⊛ x + offset + haze + e``; the haze (GRF) and e (white) form the noise spectrum."""
    classical = deconvolution.whitened_deconvolution(y, psf, pixel_size_um=pixel_size_um,
                                                     haze_sigma_um=haze_sigma_um, haze_std=haze_std)
    offset = deconvolution._offset(classical.dehazed, background)
    estimate = (classical.dehazed - offset).clamp_min(0)
    widths = tuple(max(k, n // 8) for k, n in zip(psf.shape, y.shape[-2:]))
    padded, crop = mirror_pad(y - offset, widths)
    otf, noise, _ = deconvolution._spectra(psf.to(y), tuple(padded.shape), haze_sigma_um / pixel_size_um,
                                           classical.haze_std, classical.noise_sigma)
    noise[0, 0] = noise.min()  # the offset is removed: the mean is measured, not haze
    return FourierProblem(otf, noise, torch.fft.fft2(padded), crop, estimate,
                          *_affine(estimate))


def tie_problem(stack: torch.Tensor, z_um, *, wavelength_um: float, pixel_size_um: float,
                n_medium: float, classical: torch.Tensor) -> FourierProblem:
    """``∂I/∂z = (I0/k) 4π²|u|² φ̂`` with white noise of the least-squares slope."""
    didz, mean_intensity = intensity_derivative(stack, z_um)
    didz, i0 = didz.reshape(didz.shape[-2:]), float(mean_intensity.reshape(-1)[0])
    ny, nx = didz.shape
    padded, crop = mirror_pad(didz, (ny // 2, nx // 2))
    symbol = laplacian_symbol(tuple(padded.shape), pixel_size_um, device=didz.device, dtype=didz.dtype)
    transfer = (i0 / wavenumber(wavelength_um, n_medium) * symbol).to(torch.complex64)
    z = torch.as_tensor(z_um, dtype=torch.float64)
    sigma_planes = estimate_noise_sigma(stack.reshape(-1, *stack.shape[-2:])).pow(2).mean().sqrt()
    sigma = float(sigma_planes) / float(((z - z.mean()) ** 2).sum().sqrt())
    noise = torch.full(tuple(padded.shape), sigma ** 2, dtype=didz.dtype, device=didz.device)
    return FourierProblem(transfer, noise, torch.fft.fft2(padded), crop, classical, *_affine(classical))


def _affine(estimate: torch.Tensor) -> tuple[float, float]:
    """(centre, scale) mapping the estimate's 0.1/99.9 percentiles to [-1, 1]."""
    step = max(1, estimate.numel() // 200_000)
    low, high = torch.quantile(estimate.flatten()[::step].float(), torch.tensor([0.001, 0.999]))
    return float(low + high) / 2, max(float(high - low) / 2, 1e-6)
