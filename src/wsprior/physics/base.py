"""Linear operators: the common interface every forward model implements.

Each operator is a small ``torch.nn.Module`` holding its transfer function as buffers (so
``.to(device)`` moves it) with ``A(x)`` and ``A_adjoint(y)``. Fourier-diagonal operators also
expose their transfer function, which the closed-form solvers reuse.
"""
from __future__ import annotations

import torch
from torch import nn


class LinearOperator(nn.Module):
    """``A`` and its adjoint ``A^H`` under the real inner product ``<a, b> = Σ a·b``."""

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802  (math notation)
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``."""
        return self.A_adjoint(self.A(x))


def apply_transfer(x: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """Real part of ``IFFT2(transfer · FFT2(x))`` over the last two axes (circular).

    For real ``x`` the adjoint is ``apply_transfer(y, transfer.conj())``.
    """
    spectrum = torch.fft.fft2(x.to(transfer.real.dtype))
    return torch.fft.ifft2(spectrum * transfer).real


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64
