"""Cell-like phase phantoms and exact defocus-stack simulation (numpy only).

Deliberately independent of ``wsprior.physics`` so tests can check the operators against it:
the field ``U = a·e^{iφ}`` is propagated with the exact angular spectrum (no weak-phase or
paraxial approximation) and the camera records ``|U_z|²``. Lengths in µm, phase in rad.
Fourier convention ``Û(u) = Σ U(x) e^{-i2π u·x}`` (``numpy.fft``); a plane at ``z > 0`` lies
downstream of the sample: ``U_z = IFT[Û(u) e^{i2π z η(u)}]``, ``η = sqrt((n_m/λ)² − |u|²)``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Nominal optics behind the phantom's thickness → phase conversion (the result is rescaled).
_NOMINAL_WAVELENGTH_UM = 0.53
_CYTOPLASM_DN = 0.02     # refractive-index contrast of cytoplasm vs medium
_NUCLEUS_DN = 0.015      # extra contrast of the nucleus
_NUCLEOLUS_DN = 0.03     # extra contrast of nucleoli
_GRANULE_DN = 0.02       # extra contrast of cytoplasmic granules / vesicles


def phase_phantom(shape: tuple[int, int], pixel_size_um: float, rng: np.random.Generator,
                  max_phase_rad: float = 2.0) -> np.ndarray:
    """Cell-like phase object (Y, X), float32 rad, background 0, maximum ``max_phase_rad``.

    Optical path difference ``OPD = Σ_cells Δn_c t_c + Δn_n t_n + nucleoli + granules`` with
    soft-edged ellipsoidal thickness profiles ``t = h sqrt(max(0, 1 − ρ²))`` (cells 8–18 µm
    across, 3–6 µm high, overlapping when neighbours touch, some cut by the border), an
    off-centre nucleus per cell, 1–3 Gaussian nucleoli and tens of sub-µm granules; phase
    ``φ = 2π/λ · OPD`` rescaled so that ``max φ = max_phase_rad``.
    """
    ny, nx = shape
    y = (np.arange(ny) - ny / 2) * pixel_size_um
    x = (np.arange(nx) - nx / 2) * pixel_size_um
    yy, xx = np.meshgrid(y, x, indexing="ij")
    area_um2 = ny * nx * pixel_size_um ** 2
    n_cells = int(np.clip(round(area_um2 / 300 * rng.uniform(0.8, 1.2)), 2, 60))
    opd = np.zeros(shape)
    for _ in range(n_cells):
        center = (rng.uniform(y[0], y[-1]), rng.uniform(x[0], x[-1]))
        opd += _cell_opd(yy, xx, center, rng)
    phase = 2 * np.pi / _NOMINAL_WAVELENGTH_UM * opd
    phase -= phase.min()
    return (phase * (max_phase_rad / phase.max())).astype(np.float32)


def _cell_opd(yy: np.ndarray, xx: np.ndarray, center: tuple[float, float],
              rng: np.random.Generator) -> np.ndarray:
    """OPD (µm) of one cell: cytoplasm, nucleus, nucleoli and granules inside it."""
    a, b = rng.uniform(4.0, 9.0), rng.uniform(4.0, 9.0)
    angle = rng.uniform(0, np.pi)
    height = rng.uniform(3.0, 6.0)
    cell = _ellipsoid(yy, xx, center, (a, b), angle, height)
    inside = cell > 0.05 * height
    offset = rng.uniform(-0.25, 0.25, 2) * (a, b)
    nucleus_center = (center[0] + offset[0], center[1] + offset[1])
    na, nb = 0.45 * a * rng.uniform(0.8, 1.1), 0.45 * b * rng.uniform(0.8, 1.1)
    nucleus = _ellipsoid(yy, xx, nucleus_center, (na, nb), angle, 0.8 * height)
    opd = _CYTOPLASM_DN * cell + _NUCLEUS_DN * nucleus
    opd += _NUCLEOLUS_DN * _blobs(yy, xx, nucleus_center, (0.5 * na, 0.5 * nb),
                                  rng.integers(1, 4), (0.5, 0.9), 1.5, rng)
    granules = _blobs(yy, xx, center, (0.8 * a, 0.8 * b), rng.integers(15, 40), (0.2, 0.45),
                      0.6, rng)
    return opd + _GRANULE_DN * granules * inside


def _ellipsoid(yy, xx, center, semi_axes, angle, height, edge_um: float = 0.4) -> np.ndarray:
    """Soft-edged ellipsoidal cap ``h sqrt(s(1 − ρ²))`` with ``s`` a softplus of width ~edge_um."""
    dy, dx = yy - center[0], xx - center[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = (c * dx + s * dy) / semi_axes[1], (-s * dx + c * dy) / semi_axes[0]
    width = 2 * edge_um / min(semi_axes)
    arg = (1 - u ** 2 - v ** 2) / width
    soft = width * np.logaddexp(0.0, arg)          # smooth max(·, 0)
    return height * np.sqrt(soft)


def _blobs(yy, xx, center, spread, count, sigma_range, height, rng) -> np.ndarray:
    """Sum of ``count`` Gaussian blobs (heights ~``height`` µm) placed around ``center``."""
    out = np.zeros(yy.shape)
    for _ in range(int(count)):
        r = np.sqrt(rng.uniform(0, 1))
        t = rng.uniform(0, 2 * np.pi)
        cy, cx = center[0] + r * spread[0] * np.sin(t), center[1] + r * spread[1] * np.cos(t)
        sigma = rng.uniform(*sigma_range)
        h = height * rng.uniform(0.5, 1.0)
        out += h * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    return out


def simulate_defocus_stack(phase: np.ndarray, z_um: Sequence[float], *, wavelength_um: float,
                           pixel_size_um: float, n_medium: float = 1.0,
                           amplitude: np.ndarray | None = None, noise_std: float = 0.0,
                           rng: np.random.Generator | None = None,
                           pad: bool = True, na: float | None = None) -> np.ndarray:
    """Intensity stack ``|U_z|²`` (..., Z, Y, X) float32 of ``U = a·e^{iφ}`` at depths ``z_um``.

    Exact angular spectrum ``Û_z(u) = Û(u) e^{i2π z η(u)}``, ``η = sqrt((n_m/λ)² − |u|²)``;
    evanescent components (``|u| > n_m/λ``) are cut at every plane, ``z = 0`` included (they
    never reach the camera). With ``pad`` the phase and amplitude are mirror-padded by half the
    image size on each side (``numpy.pad(mode="symmetric")``) so propagation does not wrap,
    and the result is cropped back. ``noise_std`` adds Gaussian noise of standard deviation
    ``noise_std × mean intensity`` of the (noise-free) stack, per image (relative: 0.01 = 1 %).
    ``na``: imaging NA; the objective's coherent pupil ``|u| <= NA/λ`` then limits the recorded
    field at every plane (``None``: no pupil, only the evanescent cut).
    """
    phase = np.asarray(phase, dtype=np.float64)
    amp = np.ones_like(phase) if amplitude is None else np.broadcast_to(
        np.asarray(amplitude, dtype=np.float64), phase.shape)
    ny, nx = phase.shape[-2:]
    widths = (ny // 2, nx // 2) if pad else (0, 0)
    pad_spec = [(0, 0)] * (phase.ndim - 2) + [(widths[0],) * 2, (widths[1],) * 2]
    field = np.pad(amp, pad_spec, mode="symmetric") * np.exp(
        1j * np.pad(phase, pad_spec, mode="symmetric"))
    spectrum = np.fft.fft2(field)
    eta, propagating = _eta(field.shape[-2:], pixel_size_um, n_medium / wavelength_um)
    if na is not None:
        propagating = propagating & _pupil(field.shape[-2:], pixel_size_um, na / wavelength_um)
    planes = []
    for z in z_um:
        kernel = np.where(propagating, np.exp(2j * np.pi * float(z) * eta), 0.0)
        u_z = np.fft.ifft2(spectrum * kernel)
        planes.append(np.abs(u_z[..., widths[0]:widths[0] + ny, widths[1]:widths[1] + nx]) ** 2)
    stack = np.stack(planes, axis=-3)
    if noise_std > 0:
        rng = np.random.default_rng() if rng is None else rng
        sigma = noise_std * stack.mean(axis=(-3, -2, -1), keepdims=True)
        stack = stack + sigma * rng.standard_normal(stack.shape)
    return stack.astype(np.float32)


def _eta(shape: tuple[int, int], pixel_size_um: float, cutoff: float):
    """``η(u) = sqrt(cutoff² − |u|²)`` on the FFT grid (cycles/µm) and the propagating mask."""
    uy = np.fft.fftfreq(shape[0], d=pixel_size_um)[:, None]
    ux = np.fft.fftfreq(shape[1], d=pixel_size_um)[None, :]
    radial_sq = uy ** 2 + ux ** 2
    propagating = radial_sq <= cutoff ** 2
    return np.sqrt(np.clip(cutoff ** 2 - radial_sq, 0.0, None)), propagating


def _pupil(shape: tuple[int, int], pixel_size_um: float, cutoff: float) -> np.ndarray:
    """Coherent pupil ``|u| <= cutoff`` (cycles/µm) on the FFT grid of ``shape``."""
    uy = np.fft.fftfreq(shape[0], d=pixel_size_um)[:, None]
    ux = np.fft.fftfreq(shape[1], d=pixel_size_um)[None, :]
    return uy ** 2 + ux ** 2 <= cutoff ** 2
