"""Where the prior's training images come from: synthetic phantoms (the default), real images
that packages ship in their wheels (``"real"``: ``REAL_TRAINING_SOURCES``) and/or the user's
TIFF stacks and folders, served as augmented random patches scaled to [-1, 1].

Every source image is scaled by its own robust range (0.1 / 99.9 percentiles) so fluorescence
intensities, phases in rad and refractive-index contrasts share one prior; the solvers map their
physical estimates into that range and back.

The real training images are disjoint from both parts of the robustness benchmark
(``robustness.SOURCES_BY_PART``) and from ``HELD_OUT_SOURCES``: those micrographs and the
benchmark's validation images are the priors' held-out validation content; its test images are
never seen.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.nn import functional as F

from .. import io
from . import specimens
from .blur_haze import gaussian_haze
from .idt import volume_phantom
from .phantoms import fluorescence_phantom
from .tie import phase_phantom

SYNTHETIC_KINDS = ("fluorescence", "phase", "refractive_index")
#: Real images the priors train on (names in ``specimens.SOURCES``, each with its licence):
#: fluorescence and EM micrographs, then natural scenes and a terrain for smooth large scales.
REAL_TRAINING_SOURCES = (
    "spotiflow_terra", "spotiflow_hybiss", "mahotas_nuclear", "skan_retic", "bbbc007_A9_p10d",
    "bbbc007_A9_p7d", "bbbc007_20P1_POS0007_D_1UL", "bbbc007_20P1_POS0008_D_1UL",
    "chelsea", "coffee", "rocket", "jacksboro_fault_dem")
#: Micrographs kept out of training: the priors' real-image validation content, with the
#: robustness benchmark's validation images.
HELD_OUT_SOURCES = ("bbbc007_17P1_POS0007_D_1UL", "bbbc007_17P1_POS0011_D_1UL", "blobs")


def synthetic_images(count: int, size: int, seed: int, kinds=SYNTHETIC_KINDS) -> np.ndarray:
    """``count`` phantoms (count, size, size) in [-1, 1], cycling through ``kinds`` at random
    pixel sizes (so structures appear at many scales)."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        pixel = float(np.exp(rng.uniform(np.log(0.08), np.log(0.4))))
        if kind == "fluorescence":
            image = fluorescence_phantom((size, size), pixel, rng)
        elif kind == "phase":
            image = phase_phantom((size, size), pixel, rng)
        else:
            image = volume_phantom(1, (size, size), pixel, rng)[0][0]
        images.append(to_unit_range(image))
    return np.stack(images).astype(np.float32)


def haze_fields(count: int, size: int, seed: int, sigma_px=(4.0, 40.0)) -> np.ndarray:
    """Training data of the haze prior: Gaussian random fields of random width, scaled to [-1, 1]."""
    rng = np.random.default_rng(seed)
    return np.stack([to_unit_range(gaussian_haze(
        (size, size), float(np.exp(rng.uniform(*np.log(sigma_px)))), 1.0, rng))
        for _ in range(count)]).astype(np.float32)


def real_images(names=REAL_TRAINING_SOURCES) -> list[np.ndarray]:
    """The real training images in [-1, 1] (dark-on-bright ones inverted, so structure is
    bright like fluorescence, phase and Δn). Refuses the robustness benchmark's images."""
    from .robustness import source_names

    kept_out = set(source_names()) | set(HELD_OUT_SOURCES)
    for name in names:
        if name in kept_out:
            raise ValueError(f"{name!r} is a robustness benchmark image or a held-out "
                             "validation image and must not be trained on")
    check_real_images(names)
    images = []
    for name in names:
        grey = specimens.load_source(name)
        images.append(to_unit_range(1 - grey if specimens.SOURCES[name].invert else grey))
    return images


def check_real_images(names=REAL_TRAINING_SOURCES) -> None:
    """ValueError unless every real training image is on this machine: the micrographs are
    vendored in a source checkout (``benchmarks/data/training``), not in the installed wheel."""
    missing = [name for name in names if not specimens.source_path(name).is_file()]
    if missing:
        raise ValueError(f"data 'real': {len(missing)} of the real training images are missing "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); they "
                         f"ship with a source checkout of napari-wsprior (benchmarks/data/"
                         f"training), not with the installed package")


def describe_sources(names=REAL_TRAINING_SOURCES) -> list[dict]:
    """Where each real training image comes from and its licence (for the prior's metadata)."""
    return [dict(name=name, package=specimens.SOURCES[name].package,
                 file=specimens.SOURCES[name].file, licence=specimens.SOURCES[name].licence)
            for name in names]


def tiff_images(paths: list[str | Path]) -> list[np.ndarray]:
    """2D planes of the given TIFF files and folders of TIFFs, each scaled to [-1, 1]."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
        else:
            files.append(path)
    if not files:
        raise ValueError(f"no TIFF files found in {', '.join(map(str, paths))}")
    return [plane for file in files for plane in array_planes(io.read_image(file))]


def array_planes(data) -> list[np.ndarray]:
    """The 2D planes of a (..., Y, X) array, each scaled to [-1, 1]."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim < 2:
        raise ValueError(f"training images need at least 2 axes (Y, X); got shape {data.shape}")
    return [to_unit_range(plane) for plane in data.reshape(-1, *data.shape[-2:])]


def to_unit_range(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, [0.1, 99.9])
    return np.clip(2 * (image - low) / max(high - low, 1e-12) - 1, -1, 1).astype(np.float32)


def fingerprint(images: list[np.ndarray] | np.ndarray) -> str:
    """SHA-256 of the training images (recorded in the checkpoint metadata)."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(np.ascontiguousarray(image, dtype=np.float32).tobytes())
    return digest.hexdigest()


class Augmentation(BaseModel):
    """Random changes to every training patch besides flips and 90° rotations. Ranges are
    (low, high), drawn log-uniformly (``offset`` uniformly); (1, 1) and (0, 0) switch one off."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    view_scale: tuple[float, float] = Field(
        (0.5, 4.0), description="image pixels per patch pixel: > 1 a downsampled view of a "
        "larger region (context at the field scale), < 1 a magnified one (smoother structure); "
        "capped by the image's size")
    gamma: tuple[float, float] = Field((0.67, 1.5), description="intensity gamma on [0, 1]")
    offset: tuple[float, float] = Field((0.0, 0.2), description="pedestal: [0, 1] → [o, 1]")

    @model_validator(mode="after")
    def _ordered(self):
        for name, smallest in (("view_scale", 0.1), ("gamma", 0.1)):
            low, high = getattr(self, name)
            if not smallest <= low <= high <= 10:
                raise ValueError(f"{name} must be an increasing (low, high) pair in [{smallest}, 10]")
        if not 0 <= self.offset[0] <= self.offset[1] < 1:
            raise ValueError("offset must be an increasing (low, high) pair in [0, 1)")
        return self


NO_AUGMENTATION = Augmentation(view_scale=(1, 1), gamma=(1, 1), offset=(0, 0))


class PatchSampler:
    """Random square patches, as (B, 1, P, P) tensors in [-1, 1]: a random image (chosen in
    proportion to its pixel count), a random view of it (``Augmentation``), a random flip and
    90° rotation, a random gamma and pedestal."""

    def __init__(self, images: list[np.ndarray] | np.ndarray, patch_size: int, seed: int,
                 augmentation: Augmentation = NO_AUGMENTATION):
        smallest = patch_size * min(augmentation.view_scale[0], 1.0)
        self.images = [img for img in images if min(img.shape) >= smallest]
        if not self.images:
            raise ValueError(f"no training image is at least {patch_size}×{patch_size} pixels")
        areas = np.array([img.size for img in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.patch_size = patch_size
        self.augmentation = augmentation
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch_size: int) -> torch.Tensor:
        indices = self.rng.choice(len(self.images), size=batch_size, p=self.weights)
        return torch.stack([self._patch(self.images[i]) for i in indices])

    def _patch(self, image: np.ndarray) -> torch.Tensor:
        p, a = self.patch_size, self.augmentation
        side = int(np.clip(round(p * self._log_uniform(a.view_scale)), 2, min(image.shape)))
        y = self.rng.integers(0, image.shape[0] - side + 1)
        x = self.rng.integers(0, image.shape[1] - side + 1)
        patch = torch.from_numpy(np.ascontiguousarray(image[y:y + side, x:x + side]))[None, None]
        if side != p:
            patch = F.interpolate(patch, size=(p, p), mode="bicubic", antialias=side > p,
                                  align_corners=False).clamp(-1, 1)
        patch = torch.rot90(patch[0], k=int(self.rng.integers(4)), dims=(-2, -1))
        if self.rng.random() < 0.5:
            patch = patch.flip(-1)
        unit = ((patch + 1) / 2).clamp(0, 1) ** self._log_uniform(a.gamma)
        offset = self.rng.uniform(*a.offset)
        return 2 * (offset + (1 - offset) * unit) - 1

    def _log_uniform(self, bounds: tuple[float, float]) -> float:
        return float(np.exp(self.rng.uniform(*np.log(bounds))))
