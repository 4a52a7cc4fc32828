"""Transport-of-intensity (TIE) and weak-phase defocus forward models. Lengths in µm, phase in rad.

Conventions (DESIGN.md §2-3): ``f̂(u) = Σ f(x) e^{-i2π u·x}`` on ``fftfreq`` grids (cycles/µm);
a plane at defocus ``z > 0`` is the field propagated by ``+z`` (downstream of the sample), so a
positive phase bump (a thicker cell, a converging lens) brightens its centre at ``z > 0``.
Both operators are circular (Fourier-diagonal); padding against wrap-around is the caller's job.

* ``intensity_derivative``: ``∂I/∂z`` as the per-pixel least-squares slope over any ``Z ≥ 2``
  planes at arbitrary depths.
* ``LaplacianTIE``: uniform-intensity TIE ``∂I/∂z = -(I0/k) ∇²φ``, ``k = 2π n_m / λ``.
* ``WeakPhaseDefocus``: weak-phase coherent defocus ``Î_z(u) = I0 2 sin θ_z(u) φ̂(u)``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._validation import positive
from .base import LinearOperator, apply_transfer
from .optics import frequency_grid


def intensity_derivative(stack: torch.Tensor,
                         z_um: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares axial intensity derivative of a defocus stack.

    ``stack`` (..., Z, Y, X) at depths ``z_um`` (µm; any order, any spacing, ``Z ≥ 2``, not all
    equal). Per pixel, ``∂I/∂z = Σ_j (z_j − z̄)(I_j − Ī) / Σ_j (z_j − z̄)²`` (slope of the
    least-squares line; for two planes the finite difference). Returns ``(didz, mean_intensity)``:
    ``didz`` (..., Y, X) in intensity/µm and ``mean_intensity`` (..., 1, 1), the mean of the stack
    over planes and pixels (``I0``).
    """
    if stack.ndim < 3:
        raise ValueError(f"stack must have shape (..., Z, Y, X); got shape {tuple(stack.shape)}")
    if not stack.is_floating_point():
        stack = stack.float()
    z = _depths(z_um, stack.shape[-3], stack)
    dz = (z - z.mean())[:, None, None]
    didz = (dz * (stack - stack.mean(dim=-3, keepdim=True))).sum(dim=-3) / (dz ** 2).sum()
    mean_intensity = stack.mean(dim=(-3, -2, -1))[..., None, None]
    return didz, mean_intensity


def _depths(z_um: Sequence[float], n_planes: int, like: torch.Tensor) -> torch.Tensor:
    """``z_um`` as a 1-D tensor on ``like``'s device/dtype, checked against the stack."""
    z = torch.as_tensor([float(v) for v in z_um], dtype=torch.float64)
    if z.numel() != n_planes:
        raise ValueError(f"z_um must have one entry per plane ({n_planes}); got {z.numel()}")
    if n_planes < 2:
        raise ValueError("a TIE stack needs at least 2 planes")
    if not torch.isfinite(z).all() or float(z.max() - z.min()) <= 0:
        raise ValueError(f"z_um must hold finite depths that are not all equal; got {z.tolist()}")
    return z.to(device=like.device, dtype=like.dtype)


def wavenumber(wavelength_um: float, n_medium: float = 1.0) -> float:
    """``k = 2π n_m / λ`` in rad/µm."""
    return 2 * math.pi * positive("n_medium", n_medium) / positive("wavelength_um", wavelength_um,
                                                                   "µm")


def laplacian_symbol(shape: tuple[int, int], pixel_size_um: float, *, device=None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``L(u) = 4π²|u|²`` (µm⁻², the symbol of ``-∇²``), shape (Y, X)."""
    uy, ux = frequency_grid(shape, positive("pixel_size_um", pixel_size_um, "µm"),
                            device=device, dtype=dtype)
    return 4 * math.pi ** 2 * (uy ** 2 + ux ** 2)


def defocus_phase(shape: tuple[int, int], pixel_size_um: float, wavelength_um: float,
                  z_um: float, n_medium: float = 1.0, *, device=None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Exact angular-spectrum defocus phase ``θ_z(u) = 2π z (n_m/λ − η(u))`` (rad), (Y, X).

    ``η(u) = sqrt((n_m/λ)² − |u|²)``; ``θ = 0`` for evanescent ``|u| > n_m/λ``. Paraxially
    ``θ_z ≈ π λ z |u|² / n_m``.
    """
    uy, ux = frequency_grid(shape, positive("pixel_size_um", pixel_size_um, "µm"),
                            device=device, dtype=dtype)
    cutoff = positive("n_medium", n_medium) / positive("wavelength_um", wavelength_um, "µm")
    radial_sq = uy ** 2 + ux ** 2
    propagating = radial_sq <= cutoff ** 2
    eta = torch.sqrt(torch.clamp(cutoff ** 2 - radial_sq, min=0.0))
    return torch.where(propagating, 2 * math.pi * float(z_um) * (cutoff - eta),
                       torch.zeros_like(eta))


def _intensity_tensor(mean_intensity, dtype: torch.dtype, device) -> torch.Tensor:
    """``I0`` as a tensor broadcastable to (..., 1, 1) (a float or a tensor of that shape)."""
    i0 = torch.as_tensor(mean_intensity, dtype=dtype, device=device)
    if i0.ndim == 1 or (i0.ndim >= 2 and tuple(i0.shape[-2:]) != (1, 1)):
        raise ValueError("mean_intensity must be a number or a tensor shaped (..., 1, 1); "
                         f"got shape {tuple(i0.shape)}")
    if not bool((i0 > 0).all()):
        raise ValueError("mean_intensity must be > 0")
    return i0


class LaplacianTIE(LinearOperator):
    """Uniform-intensity TIE: phase φ (..., Y, X) [rad] → ``∂I/∂z`` (..., Y, X) [intensity/µm].

    ``∂I/∂z = -(I0/k) ∇²φ``, i.e. ``∂Î/∂z(u) = (I0/k) 4π²|u|² φ̂(u)`` with ``k = 2π n_m/λ``
    (circular). The transfer is real and even, so ``A^H = A``. ``mean_intensity`` is ``I0``
    (a number, or a tensor shaped (..., 1, 1) for per-image values).

    >>> op = LaplacianTIE((8, 8), pixel_size_um=0.5, wavelength_um=0.5)
    >>> op.A(torch.ones(8, 8)).abs().max().item() < 1e-6   # constant phase: no signal
    True
    """

    def __init__(self, shape: tuple[int, int], pixel_size_um: float, wavelength_um: float,
                 n_medium: float = 1.0, mean_intensity=1.0, *,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        k = wavenumber(wavelength_um, n_medium)
        i0 = _intensity_tensor(mean_intensity, dtype, device)
        symbol = laplacian_symbol(tuple(shape), pixel_size_um, device=device, dtype=dtype)
        self.register_buffer("transfer", i0 / k * symbol)

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return apply_transfer(x, self.transfer)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return apply_transfer(y, self.transfer)


class WeakPhaseDefocus(LinearOperator):
    """Weak-phase coherent defocus: φ (..., Y, X) [rad] → contrast ``I_z − I0`` (..., Z, Y, X).

    Linearising ``|P_z(e^{iφ})|²`` in φ (angular-spectrum propagator ``P_z``) gives
    ``Î_z(u) − I0 δ(u) = I0 · 2 sin θ_z(u) · φ̂(u)`` with the exact (non-paraxial) phase
    ``θ_z(u) = 2π z (n_m/λ − η(u))``, ``η(u) = sqrt((n_m/λ)² − |u|²)``, and transfer 0 for
    evanescent ``|u| > n_m/λ``. Paraxially ``θ_z ≈ π λ z |u|² / n_m``, which is DESIGN.md's
    ``2 sin(π λ z |u|²/n_m)``; its slope at ``z = 0`` is ``LaplacianTIE``. Valid for any ``z``
    as long as ``|φ| ≪ 1``. ``A^H`` applies the (real, even) transfer per plane and sums over Z.
    The transfer buffer has shape (Z, Y, X) (times ``I0`` of shape (..., 1, 1, 1) if per image).
    """

    def __init__(self, shape: tuple[int, int], pixel_size_um: float, wavelength_um: float,
                 z_um: Sequence[float], n_medium: float = 1.0, mean_intensity=1.0, *,
                 dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        i0 = _intensity_tensor(mean_intensity, dtype, device)
        if i0.ndim >= 2:
            i0 = i0.unsqueeze(-3)
        z_list = [float(v) for v in z_um]
        if not z_list:
            raise ValueError("z_um must hold at least one depth")
        theta = torch.stack([defocus_phase(tuple(shape), pixel_size_um, wavelength_um, z,
                                           n_medium, device=device) for z in z_list])
        self.register_buffer("transfer", i0 * (2 * torch.sin(theta)).to(dtype))
        self.register_buffer("z_um", torch.tensor(z_list, dtype=dtype, device=device))

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return apply_transfer(x.unsqueeze(-3), self.transfer)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return apply_transfer(y, self.transfer).sum(dim=-3)
