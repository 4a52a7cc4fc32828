"""IDT phantoms, LED layouts and an explicit first-Born field simulation (numpy only).

This module deliberately does **not** use ``wsprior.physics``: it is the independent reference
the transfer-function model is tested against. Conventions match DESIGN.md: lengths in µm,
``numpy.fft`` with ``fftfreq`` grids (cycles/µm, ``f̂(u) = Σ f(x) e^{-i2πu·x}``), ``z`` positive
downstream (from the LEDs towards the objective), ``z = 0`` the focal plane, ``Δε = n² − n_m²``
with ``Δε_Im > 0`` absorbing, arrays ``(..., Y, X)``.
"""
from __future__ import annotations

import numpy as np


def volume_phantom(n_slices: int, shape: tuple[int, int], pixel_size_um: float,
                   rng: np.random.Generator | int | None = None, max_delta_n: float = 0.03,
                   max_kappa: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """Thin 3D sample of cells: ``(Δn, κ)``, float32 ``(n_slices, Y, X)``, ``n = n_m + Δn + iκ``.

    Each cell is a smooth ellipsoid (lateral semi-axes 2.5-5 µm, capped at 0.3 of the field)
    whose axial extent spans all slices with a varying cross-section, holding a nucleus (an
    inner, offset ellipsoid, also mildly absorbing) and small granules (0.3-0.7 µm, each mostly
    confined to one slice, absorbing). Edges are smooth (tanh, width ≈ 0.1 of the radius).
    ``Δn`` is scaled to peak at ``max_delta_n``, ``κ`` to peak at ``max_kappa``; both are ≥ 0.
    """
    rng = np.random.default_rng(rng)
    ny, nx = shape
    y = (np.arange(ny) - ny / 2) * pixel_size_um
    x = (np.arange(nx) - nx / 2) * pixel_size_um
    zs = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    half = 0.5 * np.array([ny, nx]) * pixel_size_um
    n_cells = max(1, int(round(4 * half[0] * half[1] / 120.0)))
    delta_n = np.zeros((n_slices, ny, nx))
    kappa = np.zeros_like(delta_n)
    for _ in range(n_cells):
        body, nucleus, granules = _cell(rng, y, x, zs, half)
        delta_n += 0.45 * body + 0.35 * nucleus + 0.35 * granules
        kappa += 0.3 * nucleus + granules
    delta_n *= max_delta_n / max(delta_n.max(), 1e-12)
    kappa *= max_kappa / max(kappa.max(), 1e-12)
    return delta_n.astype(np.float32), kappa.astype(np.float32)


def _cell(rng, y, x, zs, half):
    """Body, nucleus and granule occupancies (each in [0, 1]) of one random cell."""
    radius = np.minimum(rng.uniform(2.5, 5.0, 2), 0.3 * half.min() * 2)
    centre = rng.uniform(-half + radius, half - radius)
    angle = rng.uniform(0, np.pi)
    rz = rng.uniform(1.6, 2.4)
    body = _ellipsoid(y, x, zs, centre, radius, rz, 0.0, angle)
    offset = rng.uniform(-0.25, 0.25, 2) * radius
    nucleus = _ellipsoid(y, x, zs, centre + offset, radius * rng.uniform(0.35, 0.5), 0.8 * rz,
                         0.1, angle + rng.uniform(0, np.pi))
    granules = np.zeros_like(body)
    spacing = 2.0 / max(len(zs) - 1, 1)
    for _ in range(rng.integers(4, 8)):
        r = rng.uniform(0.3, 0.7)
        c = centre + rng.uniform(-0.6, 0.6, 2) * radius
        granules += _ellipsoid(y, x, zs, c, np.array([r, r]), 0.45 * spacing,
                               zs[rng.integers(len(zs))], 0.0)
    return body, nucleus, np.clip(granules, 0, 1) * body


def _ellipsoid(y, x, zs, centre, radius, rz, cz, angle):
    """Smooth indicator ``0.5 (1 + tanh((1 − ρ)/0.1))`` of a rotated ellipsoid on (slice, Y, X)."""
    dy, dx = y[:, None] - centre[0], x[None, :] - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    a, b = (c * dx + s * dy) / radius[1], (-s * dx + c * dy) / radius[0]
    rho = np.sqrt(a[None] ** 2 + b[None] ** 2 + ((zs[:, None, None] - cz) / rz) ** 2)
    return 0.5 * (1 + np.tanh((1 - rho) / 0.1))


def led_ring(n_leds: int, na_illumination: float, start_angle: float = 0.0) -> np.ndarray:
    """Annular illumination: ``(L, 2)`` of ``(NA_x, NA_y) = NA_ill (cos θ_j, sin θ_j)``,
    ``θ_j = start_angle + 2πj/L`` (radians). Matched annular IDT uses NA_ill ≈ NA (just below)."""
    theta = start_angle + 2 * np.pi * np.arange(n_leds) / n_leds
    return na_illumination * np.stack((np.cos(theta), np.sin(theta)), axis=-1)


def led_grid(pitch_um: float, distance_um: float, na_max: float, *,
             centre_um: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Brightfield LEDs of a square array (pitch ``pitch_um``, at ``distance_um`` from the
    sample, offset ``centre_um`` = (x, y)) whose ``|NA| <= na_max``: ``(L, 2)`` of (NA_x, NA_y),
    ``NA = (x, y) / sqrt(x² + y² + d²)``."""
    half = int(np.ceil(distance_um * na_max / np.sqrt(1 - na_max ** 2) / pitch_um)) + 1
    k = np.arange(-half, half + 1) * pitch_um
    xy = np.stack(np.meshgrid(k + centre_um[0], k + centre_um[1], indexing="xy"), -1)
    xy = xy.reshape(-1, 2)
    na = xy / np.sqrt((xy ** 2).sum(-1, keepdims=True) + distance_um ** 2)
    return na[np.hypot(na[:, 0], na[:, 1]) <= na_max]


def snap_illumination_na(illumination_na, shape: tuple[int, int], pixel_size_um: float,
                         wavelength_um: float, max_na: float | None = None) -> np.ndarray:
    """Nearest ``(NA_x, NA_y)`` whose frequency ``ν = NA/λ`` lies on the FFT grid of ``shape``.

    ``simulate_idt_images`` uses on-grid illumination so that the real-space plane wave
    ``exp(i2πν·ρ)`` is periodic on the field (no wrap-around discontinuity); pass the snapped
    NA to any model compared with the simulation. With ``max_na`` the nearest grid point with
    ``|NA| <= max_na`` is taken among the four surrounding ones (keeps matched annular
    illumination, NA_ill = NA, in bright field).
    """
    na = np.asarray(illumination_na, dtype=np.float64).reshape(-1, 2)
    step = 1.0 / (np.array([shape[1], shape[0]]) * pixel_size_um) * wavelength_um  # NA units
    if max_na is None:
        return np.round(na / step) * step
    low = np.floor(na / step)
    corners = np.stack([(low + np.array(c)) * step for c in ((0, 0), (0, 1), (1, 0), (1, 1))], 1)
    dist = np.linalg.norm(corners - na[:, None], axis=-1)
    dist[np.linalg.norm(corners, axis=-1) > max_na * (1 + 1e-9)] = np.inf
    if np.isinf(dist.min(1)).any():
        raise ValueError("no on-grid illumination NA within max_na next to a requested LED")
    return corners[np.arange(len(na)), dist.argmin(1)]


def simulate_idt_images(delta_epsilon: np.ndarray, *, z_um, slice_thickness_um,
                        illumination_na, wavelength_um: float, na: float, pixel_size_um: float,
                        n_medium: float, photons: float | None = None,
                        rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Brightfield IDT images ``(L, Y, X)`` float32 (background ≈ 1) by an explicit Born field.

    For each LED ``j`` (ν snapped to the grid, see ``snap_illumination_na``; ``|ν| <= NA/λ``
    required) and slice ``m`` at depth ``z_m`` with thickness ``Δz_m``:

    1. incident field in real space ``U_in(ρ, z_m) = exp(i2π(ν·ρ + η(ν) z_m))``,
       ``η(u) = sqrt((n_m/λ)² − |u|²)`` (``i·sqrt(|u|² − (n_m/λ)²)`` if evanescent);
    2. source ``S_m = k0² Δε_m U_in Δz_m`` (``k0 = 2π/λ``, scattering potential ``V = k0² Δε``);
    3. field at a detector plane ``z_d`` downstream of every slice through the Weyl Green's
       function ``Ĝ(u, z) = i e^{i2πη(u)|z|} / (4πη(u))``: ``Û_d = Σ_m Ĝ(u, z_d − z_m) Ŝ_m``;
    4. objective pupil ``P(u) = 1{|u| <= NA/λ}``, refocus to ``z = 0`` by ``e^{−i2πη(u) z_d}``;
    5. ``I = |U_in(ρ, 0) + U_s(ρ, 0)|²`` (the full square, including ``|U_s|²``), then
       ``Poisson(photons · I) / photons`` if ``photons`` is given.

    Sampling: the intensity spectrum reaches ``2NA/λ``; keep ``pixel_size_um <= λ / (4 NA)`` to
    avoid aliasing. The computation is circular (periodic field), in complex128.
    """
    eps = np.asarray(delta_epsilon, dtype=np.complex128)
    n_slices, ny, nx = eps.shape
    z = np.asarray(z_um, dtype=np.float64).reshape(-1)
    dz = np.broadcast_to(np.asarray(slice_thickness_um, dtype=np.float64), z.shape)
    if z.shape != (n_slices,):
        raise ValueError(f"z_um must have one depth per slice ({n_slices}); got {z.shape}")
    nu = snap_illumination_na(illumination_na, (ny, nx), pixel_size_um, wavelength_um)
    nu = nu / wavelength_um
    if np.any(np.hypot(nu[:, 0], nu[:, 1]) > na / wavelength_um * (1 + 1e-9)):
        raise ValueError("an (on-grid) illumination frequency lies outside the pupil: dark field")
    k0 = 2 * np.pi / wavelength_um
    fy = np.fft.fftfreq(ny, d=pixel_size_um)[:, None]
    fx = np.fft.fftfreq(nx, d=pixel_size_um)[None, :]
    eta = _eta(fy ** 2 + fx ** 2, n_medium / wavelength_um)
    z_det = z.max() + wavelength_um
    green = _weyl_green(eta, np.abs(z_det - z)[:, None, None])               # (M, Y, X)
    inside = np.hypot(fy, fx) <= na / wavelength_um                       # η real there
    focus = np.where(inside, np.exp(-2j * np.pi * eta.real * z_det), 0)
    yy, xx = np.arange(ny)[:, None] * pixel_size_um, np.arange(nx)[None, :] * pixel_size_um
    images = []
    for nu_x, nu_y in nu:
        eta_nu = _eta(nu_x ** 2 + nu_y ** 2, n_medium / wavelength_um)
        tilt = np.exp(2j * np.pi * (nu_x * xx + nu_y * yy))
        u_in = tilt[None] * np.exp(2j * np.pi * eta_nu * z)[:, None, None]
        source = k0 ** 2 * eps * u_in * dz[:, None, None]
        u_det = (green * np.fft.fft2(source)).sum(0)
        u_s = np.fft.ifft2(focus * u_det)
        images.append(np.abs(tilt + u_s) ** 2)
    images = np.stack(images)
    if photons is not None:
        images = np.random.default_rng(rng).poisson(photons * images) / photons
    return images.astype(np.float32)


def _eta(radius_sq, n_over_lambda):
    """``sqrt((n/λ)² − |u|²)``; evanescent values ``i·sqrt(|u|² − (n/λ)²)`` (decaying)."""
    arg = n_over_lambda ** 2 - radius_sq
    return np.where(arg >= 0, np.sqrt(np.abs(arg)) + 0j, 1j * np.sqrt(np.abs(arg)))


def _weyl_green(eta, distance):
    """Angular spectrum of ``e^{ikr}/(4πr)``: ``i e^{i2πη|z|} / (4πη)`` (0 where ``η = 0``)."""
    safe = np.where(np.abs(eta) > 0, eta, 1.0)
    return np.where(np.abs(eta) > 0, 1j * np.exp(2j * np.pi * safe * distance) / (4 * np.pi * safe),
                    0)


def permittivity_from_ri(delta_n, kappa, n_medium: float) -> np.ndarray:
    """``Δε = (n_m + Δn + iκ)² − n_m²`` (complex128), numpy twin of the physics helper."""
    n = n_medium + np.asarray(delta_n, dtype=np.float64) + 1j * np.asarray(kappa, np.float64)
    return n ** 2 - n_medium ** 2
