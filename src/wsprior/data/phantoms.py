"""Cell-like fluorescence phantoms: textured nuclei, membranes, filaments and puncta.

Values are relative fluorophore densities in [0, 1] on a dark (0) background, as after camera
offset subtraction. Sizes are in µm and converted with the pixel size, so a phantom looks the
same at any sampling.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, special


def fluorescence_phantom(shape: tuple[int, int], pixel_size_um: float,
                         rng: np.random.Generator) -> np.ndarray:
    """A (Y, X) float32 image of a few cells: nuclei with chromatin texture, membrane outlines,
    cytoskeletal filaments and bright puncta."""
    ny, nx = shape
    image = np.zeros(shape, dtype=np.float64)
    area_um2 = ny * nx * pixel_size_um ** 2
    for _ in range(max(1, round(area_um2 / 250.0))):
        image = np.maximum(image, _cell(shape, pixel_size_um, rng))
    image += _filaments(shape, pixel_size_um, rng, count=max(2, round(area_um2 / 60.0)))
    image += _puncta(shape, pixel_size_um, rng, count=max(5, round(area_um2 / 8.0)))
    image = ndimage.gaussian_filter(image, 0.5)  # fluorophores are not pixel-sharp
    return (image / image.max()).astype(np.float32)


def _coordinates(shape, pixel_size_um):
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    return y * pixel_size_um, x * pixel_size_um


def _cell(shape, px, rng) -> np.ndarray:
    """One cell: ellipse outline (membrane), dim cytoplasm, textured nucleus."""
    y, x = _coordinates(shape, px)
    cy, cx = rng.uniform(0, shape[0] * px), rng.uniform(0, shape[1] * px)
    a, b = rng.uniform(6, 11), rng.uniform(5, 9)  # µm semi-axes
    angle = rng.uniform(0, np.pi)
    dy, dx = y - cy, x - cx
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / a
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / b
    radius = np.sqrt(u ** 2 + v ** 2)
    membrane = np.exp(-((radius - 1.0) * min(a, b) / 0.25) ** 2)
    cytoplasm = 0.15 * (radius < 1.0)
    nucleus_r = np.sqrt((u / 0.45) ** 2 + (v / 0.5) ** 2)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 0.6 / px)
    texture = 0.6 + 0.4 * texture / (np.abs(texture).max() + 1e-12)
    nucleus = 0.7 * texture * special.expit((1.0 - nucleus_r) * 12)   # no exp overflow far out
    return np.maximum(membrane * rng.uniform(0.6, 1.0), cytoplasm + nucleus)


def _filaments(shape, px, rng, count: int) -> np.ndarray:
    """Thin smooth curves (random walks with persistence), ~0.2 µm wide."""
    canvas = np.zeros(shape)
    for _ in range(count):
        length_um = rng.uniform(10, 30)
        steps = int(length_um / (0.5 * px)) + 1
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.6 * px, steps))
        y = rng.uniform(0, shape[0]) + np.cumsum(np.sin(heading)) * 0.5
        x = rng.uniform(0, shape[1]) + np.cumsum(np.cos(heading)) * 0.5
        keep = (y >= 0) & (y < shape[0]) & (x >= 0) & (x < shape[1])
        np.add.at(canvas, (y[keep].astype(int), x[keep].astype(int)), rng.uniform(0.3, 0.7))
    return np.minimum(ndimage.gaussian_filter(canvas, 0.1 / px) * 2.0, 1.0)


def _puncta(shape, px, rng, count: int) -> np.ndarray:
    """Diffraction-size bright spots (vesicles) of varying brightness."""
    canvas = np.zeros(shape)
    ys = rng.integers(0, shape[0], count)
    xs = rng.integers(0, shape[1], count)
    canvas[ys, xs] = rng.uniform(0.3, 1.0, count)
    sigma = 0.12 / px
    return ndimage.gaussian_filter(canvas, sigma) * (2 * np.pi * sigma ** 2)
