"""Intensity diffraction tomography (IDT): first-Born, slice-wise transfer functions.

Geometry and conventions (DESIGN.md §2-3):

* ``z`` is the optical axis, **positive downstream**: along the propagation direction of the
  illumination, i.e. from the LEDs through the sample towards the objective. ``z = 0`` is the
  focal plane; a slice at ``z > 0`` lies between the focal plane and the objective.
* Lengths in µm, frequencies in cycles/µm on ``fftfreq`` grids, forward FFT
  ``f̂(u) = Σ f(x) e^{-i2π u·x}`` (``torch.fft.fft2``), arrays ``(..., Y, X)``.
* Illumination ``j`` is a plane wave ``exp(i2π(ν_j·ρ + η(ν_j) z))`` with transverse frequency
  ``ν_j = NA_j / λ`` (cycles/µm); the pair is ordered ``(x, y)`` like ``illumination_na``.
* Unknown: permittivity contrast per slice ``Δε = n² − n_m² = Δε_Re + iΔε_Im``; with the
  ``e^{-iωt}`` time convention implied by the forward FFT, ``Δε_Im > 0`` is absorbing.

Normalised data ``g_j = I_j / B_j − 1`` obey (first Born, weak object)::

    ĝ_j(u) = Σ_m H_Re,j(u; z_m) Δε̂_Re(u; z_m) + H_Im,j(u; z_m) Δε̂_Im(u; z_m)
    η(u) = sqrt((n_m/λ)² − |u|²),   k0 = 2π/λ
    A_j  = P(u+ν_j) e^{ i2π z (η(ν_j) − η(u+ν_j))} / (2π η(u+ν_j))
    Ā_j  = P(ν_j−u) e^{−i2π z (η(ν_j) − η(ν_j−u))} / (2π η(ν_j−u))
    H_Re = i k0² Δz (A_j − Ā_j) / 2,   H_Im = −k0² Δz (A_j + Ā_j) / 2
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .._validation import numerical_aperture, positive
from .base import LinearOperator, complex_dtype
from .optics import frequency_grid, pupil


def illumination_frequencies(illumination_na, wavelength_um: float):
    """Transverse illumination frequencies ``ν = NA / λ`` (cycles/µm).

    ``illumination_na``: ``(L, 2)`` array (numpy or torch) of ``(NA_x, NA_y)``; the result has
    the same type, shape and ``(ν_x, ν_y)`` order.
    """
    wavelength_um = positive("wavelength_um", wavelength_um, "µm")
    if not isinstance(illumination_na, torch.Tensor):
        illumination_na = np.asarray(illumination_na, dtype=np.float64)
    _check_pairs("illumination_na", illumination_na)
    return illumination_na / wavelength_um


def led_array_na(positions_um, distance_um: float | None = None):
    """Illumination NA ``(NA_x, NA_y) = (x, y) / sqrt(x² + y² + d²)`` of point LEDs.

    ``positions_um``: ``(L, 2)`` lateral positions ``(x, y)`` relative to the optical axis with
    the LED plane at axial distance ``distance_um`` from the sample, or ``(L, 3)`` rows
    ``(x, y, d)`` with a per-LED distance (then ``distance_um`` must be ``None``). The transverse
    wave vector is conserved across planar interfaces, so ``ν = NA / λ`` holds in the sample
    medium too (this NA is the one in the LED's medium, usually air).
    """
    if not isinstance(positions_um, torch.Tensor):
        positions_um = np.asarray(positions_um, dtype=np.float64)
    columns = positions_um.shape[-1] if positions_um.ndim == 2 else -1
    if columns == 2:
        if distance_um is None:
            raise ValueError("distance_um is required when positions_um has 2 columns (x, y)")
        d = positive("distance_um", distance_um, "µm")
    elif columns == 3:
        if distance_um is not None:
            raise ValueError("positions_um with 3 columns (x, y, d) already holds the distance; "
                             "pass distance_um=None")
        d = positions_um[:, 2:3]
    else:
        raise ValueError(f"positions_um must have shape (L, 2) or (L, 3); got {positions_um.shape}")
    xy = positions_um[:, :2]
    return xy / ((xy ** 2).sum(-1, keepdims=True) + d ** 2) ** 0.5


def idt_transfer_functions(shape: tuple[int, int], pixel_size_um: float, wavelength_um: float,
                           na: float, n_medium: float, illumination_na, z_um,
                           slice_thickness_um, *, device=None,
                           dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H_Re, H_Im)``, complex, each ``(L, M, Y, X)``: the module-docstring formulas.

    ``illumination_na`` ``(L, 2)`` as ``(NA_x, NA_y)`` with ``|NA_j| <= na`` (brightfield);
    ``z_um`` ``(M,)`` slice depths (µm, positive downstream, 0 = focal plane);
    ``slice_thickness_um`` scalar or ``(M,)`` (µm). Units: ``H`` maps ``Δε̂`` (dimensionless,
    FFT-summed) to ``ĝ``; ``k0² Δz / (2π η)`` is dimensionless because k0 and η are per µm.
    Computed in float64, returned as ``complex_dtype(dtype)``. Frequencies with ``|u ± ν| > NA/λ``
    are exactly zero, so nothing evanescent enters (NA < n_m is enforced).
    """
    lam = positive("wavelength_um", wavelength_um, "µm")
    n_m = positive("n_medium", n_medium)
    na = numerical_aperture("na", na, n_m)
    nu = _as_float64(illumination_frequencies(_as_float64(illumination_na), lam))
    if bool((nu.square().sum(-1) > (na / lam) ** 2 * (1 + 1e-9)).any()):
        raise ValueError("every illumination NA must be <= the objective na (brightfield IDT)")
    z, dz = _slices(z_um, slice_thickness_um)
    k0 = 2 * math.pi / lam
    weight = (k0 ** 2 * dz)[:, None, None]                               # (M, 1, 1)
    out = dict(device=device, dtype=complex_dtype(dtype))
    h_re, h_im = [], []
    for nu_x, nu_y in nu.tolist():                       # per LED: float64 only transiently
        a = _shifted_term(shape, pixel_size_um, lam, na, n_m, (nu_y, nu_x), z, sign=1.0)
        a_bar = _shifted_term(shape, pixel_size_um, lam, na, n_m, (-nu_y, -nu_x), z, sign=-1.0)
        h_re.append((0.5j * weight * (a - a_bar)).to(**out))
        h_im.append((-0.5 * weight * (a + a_bar)).to(**out))
    return torch.stack(h_re), torch.stack(h_im)


def _shifted_term(shape, pixel_size_um, lam, na, n_m, shift_yx, z, sign):
    """``P(s) e^{sign·i2πz(η(ν) − η(s))} / (2π η(s))`` with ``s = u + shift`` → ``(M, Y, X)``.

    ``sign=+1, shift=ν`` gives ``A``; ``sign=−1, shift=−ν`` gives ``Ā`` (``P``, ``η`` are even).
    """
    f64 = torch.float64
    uy, ux = frequency_grid(shape, pixel_size_um, dtype=f64)
    p = pupil(shape, pixel_size_um, na, lam, shift=shift_yx, dtype=f64)
    radius_sq = (uy + shift_yx[0]) ** 2 + (ux + shift_yx[1]) ** 2
    eta_s = ((n_m / lam) ** 2 - radius_sq).clamp_min((n_m / lam) ** 2 * 1e-12).sqrt()
    eta_nu = math.sqrt((n_m / lam) ** 2 - shift_yx[0] ** 2 - shift_yx[1] ** 2)
    phase = sign * 2 * math.pi * z[:, None, None] * (eta_nu - eta_s)
    return p * torch.polar(torch.ones_like(phase), phase) / (2 * math.pi * eta_s)


class IDTOperator(LinearOperator):
    """Slice-wise first-Born IDT forward model ``x ↦ g``.

    ``A``: real ``x`` ``(..., 2, M, Y, X)`` (channel 0 = ``Δε_Re``, 1 = ``Δε_Im`` of each slice)
    → ``g`` ``(..., L, Y, X)``, ``g_j = Re IFFT2(Σ_m H_Re,j ε̂_Re,m + H_Im,j ε̂_Im,m)``
    (circular; pad outside if needed). ``A_adjoint``: ``x_c,m = Re IFFT2(Σ_j conj(H_c,j,m) ĝ_j)``,
    exact under ``<a, b> = Σ a·b``. The stacked transfer ``(L, 2, M, Y, X)`` is a buffer
    (``transfer_pairs``, real/imag pairs), so ``.to(device)`` and ``.to(torch.float64)`` work.
    """

    def __init__(self, shape: tuple[int, int], pixel_size_um: float, wavelength_um: float,
                 na: float, n_medium: float, illumination_na, z_um, slice_thickness_um, *,
                 device=None, dtype: torch.dtype = torch.float32):
        super().__init__()
        h_re, h_im = idt_transfer_functions(shape, pixel_size_um, wavelength_um, na, n_medium,
                                            illumination_na, z_um, slice_thickness_um,
                                            device=device, dtype=dtype)
        # stored as real (..., 2) pairs so that module.to(device or float dtype) converts it
        self.register_buffer("transfer_pairs",
                             torch.view_as_real(torch.stack((h_re, h_im), dim=1)).contiguous())
        self.shape = tuple(shape)
        self.n_leds, _, self.n_slices = self.transfer.shape[:3]

    @property
    def transfer(self) -> torch.Tensor:
        """Complex ``(L, 2, M, Y, X)``: ``[:, 0]`` = ``H_Re``, ``[:, 1]`` = ``H_Im``."""
        return torch.view_as_complex(self.transfer_pairs)

    @property
    def transfer_re(self) -> torch.Tensor:
        return self.transfer[:, 0]

    @property
    def transfer_im(self) -> torch.Tensor:
        return self.transfer[:, 1]

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self._check(x, (2, self.n_slices), "x")
        spectrum = torch.fft.fft2(x.to(self.transfer.real.dtype))
        g_hat = torch.einsum("lcmyx,...cmyx->...lyx", self.transfer, spectrum)
        return torch.fft.ifft2(g_hat).real

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self._check(y, (self.n_leds,), "y")
        spectrum = torch.fft.fft2(y.to(self.transfer.real.dtype))
        x_hat = torch.einsum("lcmyx,...lyx->...cmyx", self.transfer.conj(), spectrum)
        return torch.fft.ifft2(x_hat).real

    def _check(self, t: torch.Tensor, lead: tuple[int, ...], name: str) -> None:
        want = lead + self.shape
        if tuple(t.shape[-len(want):]) != want:
            raise ValueError(f"{name} must end with shape {want}; got {tuple(t.shape)}")


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """``g = I / B − 1`` with ``B`` the mean of each image (brightfield background), ``(..., L,
    Y, X)`` → same shape. The DC of ``g`` is zero by construction."""
    background = images.mean(dim=(-2, -1), keepdim=True)
    if bool((background <= 0).any()):
        raise ValueError("every IDT image must have a positive mean (brightfield background)")
    return images / background - 1


def permittivity_to_ri(delta_epsilon: torch.Tensor, n_medium: float, *,
                       return_kappa: bool = False):
    """``Δn = Re sqrt(n_m² + Δε) − n_m`` (and ``κ = Im sqrt(n_m² + Δε)`` if ``return_kappa``).

    ``delta_epsilon`` real or complex tensor; ``n = n_m + Δn + iκ``, ``κ > 0`` absorbing.
    Evaluated as ``Δε / (sqrt(n_m² + Δε) + n_m)`` to avoid cancellation in float32.
    """
    n_m = positive("n_medium", n_medium)
    eps = torch.as_tensor(delta_epsilon)
    eps = eps.to(complex_dtype(eps.real.dtype))
    contrast = eps / (torch.sqrt(eps + n_m ** 2) + n_m)
    return (contrast.real, contrast.imag) if return_kappa else contrast.real


def ri_to_permittivity(delta_n: torch.Tensor, n_medium: float, kappa=0.0) -> torch.Tensor:
    """``Δε = (n_m + Δn + iκ)² − n_m² = (Δn + iκ)(2n_m + Δn + iκ)`` (complex; inverse of
    ``permittivity_to_ri``)."""
    n_m = positive("n_medium", n_medium)
    delta_n = torch.as_tensor(delta_n)
    kappa = torch.as_tensor(kappa, dtype=delta_n.dtype, device=delta_n.device)
    contrast = torch.complex(delta_n, kappa.expand_as(delta_n))
    return contrast * (contrast + 2 * n_m)


def _slices(z_um, slice_thickness_um) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, Δz)`` as float64 ``(M,)``; Δz scalar or per slice, all > 0."""
    z = _as_float64(z_um).reshape(-1)
    dz = _as_float64(slice_thickness_um).reshape(-1)
    if dz.numel() not in (1, z.numel()):
        raise ValueError(f"slice_thickness_um must be a scalar or one value per slice "
                         f"({z.numel()}); got {dz.numel()} values")
    dz = dz.expand_as(z).clone()
    if z.numel() == 0 or not bool(torch.isfinite(z).all()):
        raise ValueError(f"z_um must hold at least one finite depth (µm); got {z_um!r}")
    if not bool((dz > 0).all()) or not bool(torch.isfinite(dz).all()):
        raise ValueError(f"slice_thickness_um must be > 0 (µm); got {slice_thickness_um!r}")
    return z, dz


def _as_float64(values) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach().to(device="cpu", dtype=torch.float64)
    return torch.as_tensor(np.ascontiguousarray(values, dtype=np.float64))


def _check_pairs(name: str, values) -> None:
    shape = tuple(getattr(values, "shape", ()))
    if len(shape) != 2 or shape[1] != 2:
        raise ValueError(f"{name} must have shape (L, 2) holding (NA_x, NA_y); got {shape}")
