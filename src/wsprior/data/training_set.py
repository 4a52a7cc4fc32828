"""Where the prior's training images come from: synthetic phantoms (the default) and/or the
user's TIFF stacks and folders, served as random patches scaled to [-1, 1].

Every source image is scaled by its own robust range (0.1 / 99.9 percentiles) so fluorescence
intensities, phases in rad and refractive-index contrasts share one prior; the solvers map their
physical estimates into that range and back.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .. import io
from .blur_haze import gaussian_haze
from .idt import volume_phantom
from .phantoms import fluorescence_phantom
from .tie import phase_phantom

SYNTHETIC_KINDS = ("fluorescence", "phase", "refractive_index")


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


class PatchSampler:
    """Random square patches with random flips and 90° rotations, as (B, 1, P, P) tensors."""

    def __init__(self, images: list[np.ndarray] | np.ndarray, patch_size: int, seed: int):
        self.images = [img for img in images if min(img.shape) >= patch_size]
        if not self.images:
            raise ValueError(f"no training image is at least {patch_size}×{patch_size} pixels")
        self.patch_size = patch_size
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch_size: int) -> torch.Tensor:
        p = self.patch_size
        patches = []
        for index in self.rng.integers(0, len(self.images), batch_size):
            image = self.images[index]
            y = self.rng.integers(0, image.shape[0] - p + 1)
            x = self.rng.integers(0, image.shape[1] - p + 1)
            patch = np.rot90(image[y:y + p, x:x + p], k=int(self.rng.integers(4)))
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            patches.append(np.ascontiguousarray(patch))
        return torch.from_numpy(np.stack(patches))[:, None]
