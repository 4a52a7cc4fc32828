"""Widefield blur: ``y = h ⊛ x (+ haze b + noise e)``; the operator is the blur, the haze is
structured noise (``wsprior.noise``).

``Blur`` is a *linear* "same"-size convolution with zero boundary: the image is zero-padded by
the PSF support before the FFT, so nothing wraps around, and the adjoint is exact.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
import torch

from .base import LinearOperator
from .optics import airy_psf, embed_centered, gaussian_psf, gaussian_sigma_um


def make_psf(*, psf=None, na: float | None = None, wavelength_um: float | None = None,
             pixel_size_um: float | None = None, model: str = "airy") -> torch.Tensor:
    """A centred, odd-sized, sum-1 PSF: the measured ``psf`` array, or Airy / Gaussian from
    NA, wavelength and pixel size (validated by the caller)."""
    if psf is not None:
        return normalize_psf(psf)
    if model == "airy":
        return airy_psf(na, wavelength_um, pixel_size_um).float()
    if model == "gaussian":
        return gaussian_psf(gaussian_sigma_um(na, wavelength_um), pixel_size_um).float()
    raise ValueError(f"psf model must be 'airy' or 'gaussian'; got {model!r}")


def normalize_psf(psf) -> torch.Tensor:
    """Measured PSF → float32, background-clipped, odd-sized (centred on its peak), sum 1."""
    kernel = torch.as_tensor(np.asarray(psf), dtype=torch.float32).clamp_min(0)
    if kernel.ndim != 2 or kernel.sum() <= 0:
        raise ValueError(f"psf must be a 2D array with positive total; got shape {tuple(kernel.shape)}")
    peak_y, peak_x = np.unravel_index(int(kernel.argmax()), kernel.shape)
    ry = min(peak_y, kernel.shape[0] - 1 - peak_y)
    rx = min(peak_x, kernel.shape[1] - 1 - peak_x)
    kernel = kernel[peak_y - ry: peak_y + ry + 1, peak_x - rx: peak_x + rx + 1]
    return kernel / kernel.sum()


def padded_shape(image_shape: tuple[int, int], psf_shape: tuple[int, int]) -> tuple[int, int]:
    """FFT grid large enough that a linear convolution does not wrap (fast FFT sizes)."""
    return tuple(scipy.fft.next_fast_len(n + k - 1) for n, k in zip(image_shape, psf_shape))


class Blur(LinearOperator):
    """``A x = crop(h ⊛ pad₀(x))``: linear convolution with the PSF, output the size of x."""

    def __init__(self, psf: torch.Tensor, image_shape: tuple[int, int]):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.grid_shape = padded_shape(self.image_shape, tuple(psf.shape))
        self.register_buffer("psf", psf)
        self.register_buffer("otf", torch.fft.fft2(embed_centered(psf, self.grid_shape)))

    def transfer(self, shape: tuple[int, int]) -> torch.Tensor:
        """The OTF on another FFT grid (for closed-form solvers working on their own padding)."""
        return torch.fft.fft2(embed_centered(self.psf, shape))

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self._filter(x, self.otf)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self._filter(y, self.otf.conj())

    def _filter(self, x: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
        ny, nx = self.image_shape
        spectrum = torch.fft.fft2(x.to(transfer.real.dtype), s=self.grid_shape)
        return torch.fft.ifft2(spectrum * transfer).real[..., :ny, :nx]
