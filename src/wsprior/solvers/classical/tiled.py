"""The classical solvers as tile operators (``wsprior.tiling.TileOperator``).

Each operator splits its solver into what tiling needs:

* ``estimate`` – every number the solver would choose from the data of the whole plane
  (regularisation weight, white-noise σ, haze level, offsets, normalisation), once per plane;
* ``halo`` – the reach of the solver's filter at those numbers, measured on the filter
  (``wsprior.halo``); ``halo_floor`` – the smallest reach any estimate can give;
* ``__call__`` – the solver on a batch of windows with those numbers fixed (or, given no
  numbers, the untiled solver on whole planes).

``workspace_bytes`` is the solver's peak memory for one window, from the peak-RSS increase of
one solve on 512²-2048² images (CPU, float32, one thread; see the constants), used to size tiles,
batches and the parameter-estimation window.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from ...halo import filter_halo
from ... import tiling
from ...physics.idt import permittivity_to_ri
from ...physics.optics import embed_centered
from . import deconvolution
from .deconvolution import FIXED, deconvolution_parameters, richardson_lucy_fixed, whitened_filters
from .idt import AUTO_REGULARIZATION_BAND, idt_tikhonov, idt_tikhonov_transfer
from .tie import regularization_band, tie_regularization, tie_tikhonov, tikhonov_transfer

# Peak bytes per pixel of the solver's padded grid (measured: 110-120 B per image pixel for the
# Wiener solve, its parameter estimate and RL; 235 B for TIE with 3 planes; 240-260 B per LED image
# for IDT with 8 LEDs and 2 slices), rounded up.
_DEBLUR_BYTES_PER_PIXEL = 80    # padded grid ≈ 1.56 × the image
_TIE_BYTES_PER_PIXEL = 60       # the mirror-extended 2Y × 2X grid, plus 4 B per input plane
_IDT_BYTES_PER_PIXEL = 170      # per LED image; padded grid ≈ 1.56 × the image
#: IDT's filter is costly to evaluate (an eigendecomposition per frequency, ~20 s at 512² on
#: 2 cores), so its halo is measured on grids of at most this edge and a wider kernel counts as
#: non-local. Measured on 256² and 512² grids, the kernel fills the grid at every weight of the
#: automatic band (the pupil edges make the filter discontinuous): IDT is solved by whole planes.
IDT_HALO_GRID = 128

Box = tuple[int, int, int, int]


class DeblurTiles:
    """Whitened Wiener (``method="wiener"``/``"tikhonov"``) or Richardson–Lucy (``"rl"``)."""
    boundary = "reflect"          # whitened_deconvolution mirror-pads with torch "reflect"
    dtype = np.float32
    prefers_whole_planes = False

    def __init__(self, psf: torch.Tensor, settings):
        self.psf = psf.float().cpu()
        self.rl = settings.method == "rl"
        self.iterations = settings.iterations
        self.common = dict(pixel_size_um=settings.pixel_size_um,
                           haze_sigma_um=settings.haze_sigma_um)
        self.automatic = dict(haze_std=settings.haze_std, background=settings.background,
                              regularization="auto" if self.rl else settings.regularization)

    def out_channels(self, channels: int) -> None:
        return None

    def workspace_bytes(self, shape: tuple[int, int], channels: int) -> int:
        padded = [n + 2 * max(k, n // 8) for n, k in zip(shape, self.psf.shape)]
        return _DEBLUR_BYTES_PER_PIXEL * padded[0] * padded[1] * channels

    def estimate(self, planes: torch.Tensor) -> list[dict]:
        return [deconvolution_parameters(plane[0], self.psf.to(plane), **self.common,
                                         **self.automatic, richardson_lucy=self.rl,
                                         iterations=self.iterations)
                for plane in planes]

    def halo_floor(self, limit: int) -> None:
        return None  # the reach depends on the estimated spectra

    def halo(self, params: dict, limit: int) -> tuple[int | None, int | None]:
        """Wiener: the object filter's reach. Richardson–Lucy: the haze-background filter's reach
        plus that of the iterations (the Landweber filter ``H* Σ_{j<k} (1 − |H|²)^j``, the
        linearisation of ``k`` RL steps), since the iterations read the background."""
        psf = _Key(self.psf)
        numbers = {k: float(params[k]) for k in FIXED}
        pixel = self.common["pixel_size_um"]
        if not self.rl:
            return _whitened_halo(psf, 0, limit, pixel, **numbers)
        haze = _whitened_halo(psf, 1, limit, pixel, **numbers)
        steps = _landweber_halo(psf, int(params["iterations"]), limit)
        return tuple(None if a is None or b is None else a + b for a, b in zip(haze, steps))

    def __call__(self, windows: torch.Tensor, params: Sequence[dict] | None,
                 where: Sequence) -> torch.Tensor:
        if params is None:
            return torch.stack([self.whole_plane(w[0])[None] for w in windows])
        psf = self.psf.to(windows)
        return torch.stack([self._solve(w[0], psf, p, place.inside)[None]
                            for w, p, place in zip(windows, params, where)])

    def whole_plane(self, plane: torch.Tensor, progress=None) -> torch.Tensor:
        """The untiled solve of one plane (Y, X), its numbers estimated as a tiled run estimates
        them (on the centre ``ESTIMATE_EDGE``² of larger planes): tiled = untiled."""
        edge = tuple(min(n, tiling.ESTIMATE_EDGE) for n in plane.shape)
        crop = tiling.centre_slices(tuple(plane.shape), edge)
        numbers = self.estimate(plane[crop][None, None])[0]
        return self._solve(plane, self.psf.to(plane), numbers, None, progress)

    def _solve(self, window, psf, params: dict, box: Box | None, progress=None) -> torch.Tensor:
        if not self.rl:
            return deconvolution.wiener_deblur(window, psf, numbers=params,
                                               pixel_size_um=self.common["pixel_size_um"])
        # A window holds its context already: the neighbours', or the mirror continuation
        # beyond the image border that the untiled solve pads with.
        return richardson_lucy_fixed(window, psf, params, pad=box is None,
                                     pixel_size_um=self.common["pixel_size_um"],
                                     progress=progress)


class TieTiles:
    """Tikhonov TIE. Its kernel (inverse Laplacian) is usually wider than the plane at the
    automatic weight, so whole planes are planned; a large fixed weight makes it local."""
    boundary = "symmetric"        # tie_tikhonov mirror-extends with the edge pixel repeated
    dtype = np.float32

    def __init__(self, settings):
        self.prefers_whole_planes = settings.regularization == "auto"
        self.regularization = settings.regularization
        self.z_um = list(settings.z_um)
        self.optics = dict(wavelength_um=settings.wavelength_um,
                           pixel_size_um=settings.pixel_size_um, n_medium=settings.n_medium)

    def out_channels(self, channels: int) -> None:
        return None

    def workspace_bytes(self, shape: tuple[int, int], channels: int) -> int:
        return (_TIE_BYTES_PER_PIXEL * 4 + 4 * channels) * shape[0] * shape[1]

    def estimate(self, planes: torch.Tensor) -> list[dict]:
        if self.regularization == "auto":
            weights = tie_regularization(planes, self.z_um,
                                         pixel_size_um=self.optics["pixel_size_um"]).tolist()
        else:
            weights = [float(self.regularization)] * len(planes)
        means = planes.mean(dim=(-3, -2, -1)).tolist()
        return [dict(regularization=r, mean_intensity=m) for r, m in zip(weights, means)]

    def halo_floor(self, limit: int) -> tuple[int | None, int | None]:
        """The most regularised admissible weight has the shortest kernel: the fixed weight, or
        the top of the automatic clamp band (``regularization_band``, independent of shape)."""
        pixel = self.optics["pixel_size_um"]
        if self.regularization != "auto":
            return _tie_halo(pixel, float(self.regularization), limit)
        return _tie_halo(pixel, regularization_band((1, 1), pixel)[1], limit)

    def halo(self, params: dict, limit: int) -> tuple[int | None, int | None]:
        return _tie_halo(self.optics["pixel_size_um"], float(params["regularization"]), limit)

    def __call__(self, windows: torch.Tensor, params: Sequence[dict] | None,
                 where: Sequence) -> torch.Tensor:
        if params is None:
            return tie_tikhonov(windows, self.z_um, regularization=self.regularization,
                                **self.optics)[:, None]
        return torch.stack([
            tie_tikhonov(w, self.z_um, regularization=p["regularization"],
                         mean_intensity=p["mean_intensity"], remove_mean=False, **self.optics)[None]
            for w, p in zip(windows, params)])


class IdtTiles:
    """Tikhonov IDT. The transfer functions end at the pupil edges, so the filter's kernel is
    non-local (see ``IDT_HALO_GRID``) and whole planes are solved."""
    boundary = "reflect"          # idt_tikhonov mirror-pads with torch "reflect"
    prefers_whole_planes = True

    def __init__(self, settings):
        self.settings = settings
        self.dtype = np.float32 if settings.components == "ri" else np.complex64
        self.optics = dict(illumination_na=np.asarray(settings.illumination_na),
                           wavelength_um=settings.wavelength_um, na=settings.na,
                           pixel_size_um=settings.pixel_size_um, n_medium=settings.n_medium,
                           z_um=settings.z_um, slice_thickness_um=settings.slice_thickness_um)

    def out_channels(self, channels: int) -> int:
        return len(self.settings.z_um)

    def workspace_bytes(self, shape: tuple[int, int], channels: int) -> int:
        padded = [n + 2 * (min(shape) // 8) for n in shape]
        return _IDT_BYTES_PER_PIXEL * padded[0] * padded[1] * channels

    def estimate(self, planes: torch.Tensor) -> list[dict]:
        backgrounds = planes.mean(dim=(-2, -1)).tolist()
        if self.settings.regularization == "auto":
            _, weights = idt_tikhonov(planes, **self.optics, return_regularization=True)
        else:
            weights = [float(self.settings.regularization)] * len(planes)
        return [dict(regularization=r, background=b) for r, b in zip(weights, backgrounds)]

    def halo_floor(self, limit: int) -> tuple[int | None, int | None]:
        weight = self.settings.regularization
        return self.halo({"regularization": AUTO_REGULARIZATION_BAND[1] if weight == "auto"
                          else weight}, limit)

    def halo(self, params: dict, limit: int) -> tuple[int | None, int | None]:
        return _idt_halo(_Key(self.optics), float(params["regularization"]),
                         min(limit, IDT_HALO_GRID))

    def __call__(self, windows: torch.Tensor, params: Sequence[dict] | None,
                 where: Sequence) -> torch.Tensor:
        if params is None:
            eps = idt_tikhonov(windows, **self.optics, regularization=self.settings.regularization)
        else:
            eps = torch.cat([idt_tikhonov(w[None], **self.optics, background=[p["background"]],
                                          regularization=p["regularization"])
                             for w, p in zip(windows, params)])
        if self.settings.components == "ri":
            return permittivity_to_ri(eps, self.settings.n_medium)
        return eps


class _Key:
    """A hashable stand-in for tensors and dicts of arrays (halo caches key on it)."""

    def __init__(self, value):
        self.value = value
        self._digest = _plain(value)

    def __hash__(self) -> int:
        return hash(self._digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Key) and self._digest == other._digest


def _plain(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.dtype != object:
        return (value.shape, str(value.dtype), value.tobytes())
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_plain(v) for v in value)
    return value


# Halos are cached per process by the numbers that shape the filter: every block of a stack, and
# every call with the same optics, reuses them.
@functools.lru_cache(maxsize=64)
def _whitened_halo(psf: _Key, which: int, limit: int, pixel_size_um: float,
                   **numbers) -> tuple[int | None, int | None]:
    """Reach of the Wiener deconvolution's object (``which=0``) or haze (1) filter."""
    return filter_halo(lambda shape: whitened_filters(psf.value, shape, pixel_size_um=pixel_size_um,
                                                      numbers=numbers)[which],
                       limit=limit, start=2 * max(psf.value.shape))  # the grid must hold the PSF


@functools.lru_cache(maxsize=64)
def _landweber_halo(psf: _Key, iterations: int, limit: int) -> tuple[int | None, int | None]:
    return filter_halo(lambda shape: _landweber(psf.value, shape, iterations), limit=limit,
                       start=2 * max(psf.value.shape))


@functools.lru_cache(maxsize=64)
def _tie_halo(pixel_size_um: float, regularization: float, limit: int):
    return filter_halo(lambda shape: tikhonov_transfer(shape, pixel_size_um, regularization),
                       limit=limit)


@functools.lru_cache(maxsize=16)
def _idt_halo(optics: _Key, regularization: float, limit: int):
    return filter_halo(lambda shape: idt_tikhonov_transfer(shape, **optics.value,
                                                           regularization=regularization),
                       limit=limit)


def _landweber(psf: torch.Tensor, shape: tuple[int, int], iterations: int) -> torch.Tensor:
    """``H* Σ_{j<k} (1 − |H|²)^j = H* (1 − (1 − |H|²)^k) / |H|²`` (``k H*`` where ``H → 0``)."""
    otf = torch.fft.fft2(embed_centered(psf.double(), shape))
    power = otf.abs() ** 2
    safe = torch.where(power > 1e-12, power, torch.ones_like(power))
    gain = torch.where(power > 1e-12, (1 - (1 - safe) ** iterations) / safe,
                       torch.full_like(power, float(iterations)))
    return otf.conj() * gain


_CLASSICAL = {"deblur_dehaze": ("wiener", "tikhonov", "rl"), "tie": ("tikhonov",),
              "idt": ("tikhonov",)}


def classical_tiles(task: str, settings, psf: torch.Tensor | None = None):
    """The tile operator of ``task``'s classical ``settings.method``; ``None`` for other methods
    (the diffusion samplers bring their own)."""
    if settings.method not in _CLASSICAL[task]:
        return None
    if task == "deblur_dehaze":
        return DeblurTiles(psf, settings)
    return TieTiles(settings) if task == "tie" else IdtTiles(settings)
