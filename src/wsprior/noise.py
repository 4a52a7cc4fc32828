"""Structured-noise operators K: Fourier-diagonal, spatially correlated + white.

A Gaussian random field ``b = k_σ ⊛ z`` (``z ~ N(0, I)``, ``k_σ`` a Gaussian kernel) has the power
spectrum ``|ĝ_σ(u)|² = exp(-4π²(σ_y² u_y² + σ_x² u_x²))`` (DESIGN.md §3). Mixed with white noise
of relative power ``white_mix`` (γ²)::

    |K̂(u)|² = (|ĝ_σ(u)|² / mean_u |ĝ_σ|² + γ²) / (1 + γ²)

normalised so ``K z`` has unit variance per pixel on the grid it is applied to (Parseval). In
distribution this equals ``(k_σ ⊛ z + γ w) / sqrt(1 + γ²)`` with the field scaled to unit
variance. ``σ → 0`` or ``γ² → ∞`` gives white noise (K = I), the conventional diffusion case.

Widths are in pixels here (the prior works on pixel grids); ``from_um`` converts.
K is real, symmetric and circulant: ``K^H = K``.
"""
from __future__ import annotations

import torch

from .physics.base import apply_transfer


class StructuredNoise(torch.nn.Module):
    def __init__(self, sigma_px: float | tuple[float, float], white_mix: float = 0.0):
        super().__init__()
        sy, sx = (sigma_px, sigma_px) if not isinstance(sigma_px, (tuple, list)) else sigma_px
        if sy < 0 or sx < 0:
            raise ValueError(f"sigma_px must be >= 0 (pixels); got {sigma_px!r}")
        if white_mix < 0:
            raise ValueError(f"white_mix must be >= 0; got {white_mix!r}")
        self.sigma_px = (float(sy), float(sx))
        self.white_mix = float(white_mix)

    @classmethod
    def from_um(cls, sigma_um: float | tuple[float, float], pixel_size_um: float,
                white_mix: float = 0.0) -> "StructuredNoise":
        if isinstance(sigma_um, (tuple, list)):
            return cls(tuple(s / pixel_size_um for s in sigma_um), white_mix)
        return cls(sigma_um / pixel_size_um, white_mix)

    def power_spectrum(self, shape: tuple[int, int], *, device=None,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``|K̂(u)|²`` on the FFT grid of ``shape`` (mean 1)."""
        uy = torch.fft.fftfreq(shape[0], device=device, dtype=dtype)[:, None]
        ux = torch.fft.fftfreq(shape[1], device=device, dtype=dtype)[None, :]
        sy, sx = self.sigma_px
        field = torch.exp(-4 * torch.pi ** 2 * (sy ** 2 * uy ** 2 + sx ** 2 * ux ** 2))
        field = field / field.mean()
        return (field + self.white_mix) / (1 + self.white_mix)

    def transfer(self, shape: tuple[int, int], *, device=None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``K̂(u)`` (real, ≥ 0)."""
        return self.power_spectrum(shape, device=device, dtype=dtype).sqrt()

    def apply(self, z: torch.Tensor) -> torch.Tensor:
        """``K z`` over the last two axes (circular). K is self-adjoint."""
        return apply_transfer(z, self.transfer(tuple(z.shape[-2:]), device=z.device, dtype=z.dtype))

    def sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
               device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A draw of ``K z`` with ``z ~ N(0, I)`` of the given shape (..., Y, X)."""
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return self.apply(z)
