"""Frequency grids, pupils and point-spread functions. Lengths in µm, frequencies in cycles/µm.

Fourier convention (DESIGN.md §2): ``f̂(u) = Σ f(x) e^{-i2π u·x}`` with ``fftfreq(n, d=pixel)``
grids, i.e. exactly ``torch.fft.fft2``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def frequency_grid(shape: tuple[int, int], pixel_size_um: float, *, device=None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(uy, ux)`` in cycles/µm, shaped ``(Y, 1)`` and ``(1, X)`` for broadcasting."""
    ny, nx = shape
    uy = torch.fft.fftfreq(ny, d=pixel_size_um, device=device, dtype=dtype)
    ux = torch.fft.fftfreq(nx, d=pixel_size_um, device=device, dtype=dtype)
    return uy[:, None], ux[None, :]


def pupil(shape: tuple[int, int], pixel_size_um: float, na: float, wavelength_um: float, *,
          shift: tuple[float, float] = (0.0, 0.0), device=None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Coherent circular pupil ``P(u + shift) = 1{|u + shift| <= NA/λ}`` on the FFT grid.

    ``shift`` is ``(ν_y, ν_x)`` in cycles/µm.
    """
    uy, ux = frequency_grid(shape, pixel_size_um, device=device, dtype=dtype)
    radius_sq = (uy + shift[0]) ** 2 + (ux + shift[1]) ** 2
    return (radius_sq <= (na / wavelength_um) ** 2).to(dtype)


def gaussian_sigma_um(na: float, wavelength_um: float) -> float:
    """Standard deviation of the Gaussian approximation of the widefield PSF: ≈ 0.21 λ/NA."""
    return 0.21 * wavelength_um / na


def default_psf_size(na: float, wavelength_um: float, pixel_size_um: float) -> int:
    """Odd PSF size (pixels) spanning ~8 Airy radii on each side (≥ 99.5 % of the energy)."""
    radius_px = 8 * 0.61 * wavelength_um / na / pixel_size_um
    return max(15, 2 * math.ceil(radius_px) + 1)


def airy_psf(na: float, wavelength_um: float, pixel_size_um: float, *, size: int | None = None,
             oversample: int = 3, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Incoherent widefield PSF ``|IFT P|²``, integrated over each pixel, sum 1, centred.

    Computed on an ``oversample``-times finer grid, zero-padded 4× so the Airy rings do not
    wrap around, then binned to the camera pixel (so an undersampled PSF is still correct).
    """
    size = size or default_psf_size(na, wavelength_um, pixel_size_um)
    size += 1 - size % 2
    fine = size * oversample
    grid = 4 * fine
    coherent_pupil = pupil((grid, grid), pixel_size_um / oversample, na, wavelength_um,
                           dtype=dtype)
    amplitude = torch.fft.fftshift(torch.fft.ifft2(coherent_pupil))
    intensity = amplitude.abs() ** 2
    start = grid // 2 - fine // 2
    window = intensity[start:start + fine, start:start + fine]
    binned = F.avg_pool2d(window[None, None], oversample)[0, 0]
    return binned / binned.sum()


def gaussian_psf(sigma_um: float | tuple[float, float], pixel_size_um: float, *,
                 size: int | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Sampled Gaussian PSF (``sigma_um`` scalar or ``(σ_y, σ_x)``), sum 1, centred, odd size."""
    sy, sx = (sigma_um, sigma_um) if not isinstance(sigma_um, (tuple, list)) else sigma_um
    size = size or max(7, 2 * math.ceil(4 * max(sy, sx) / pixel_size_um) + 1)
    size += 1 - size % 2
    r = (torch.arange(size, dtype=dtype) - size // 2) * pixel_size_um
    kernel = torch.exp(-0.5 * (r[:, None] / sy) ** 2 - 0.5 * (r[None, :] / sx) ** 2)
    return kernel / kernel.sum()


def embed_centered(kernel: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Place an odd-sized centred kernel on a grid of ``shape`` with its centre at index (0, 0),
    so that its FFT is the transfer function of the (circular) convolution."""
    ky, kx = kernel.shape[-2:]
    if ky > shape[0] or kx > shape[1]:
        raise ValueError(f"kernel of size {ky}x{kx} does not fit a {shape[0]}x{shape[1]} grid")
    grid = kernel.new_zeros(kernel.shape[:-2] + tuple(shape))
    grid[..., :ky, :kx] = kernel
    return torch.roll(grid, shifts=(-(ky // 2), -(kx // 2)), dims=(-2, -1))
