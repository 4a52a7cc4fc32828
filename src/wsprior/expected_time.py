"""How long a reconstruction will take, said before it starts.

The job runs once on a small centre crop of its first image (twice: the first run carries
one-time work, loading the prior), and the second run's time is scaled by the ratio of the
job's pixels to the crop's. Every part of a reconstruction (parameter estimation, the classical
solve, the network's evaluations) grows about linearly with the pixels, and the crop measures
them on this device with this method and these settings.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

CALIBRATION_PX = 128


def expected_seconds(run: Callable, data, params: dict, core_ndim: int) -> float:
    """Seconds ``run(data, **params)`` should take; ``core_ndim``: the axes of one image
    (2: a plane, 3: a stack or LED series), the leading ones counted as images."""
    lead = data.shape[:-core_ndim]
    first = np.asarray(data[(0,) * len(lead)])
    crop = _centre_crop(first, CALIBRATION_PX)
    settings = {k: v for k, v in params.items() if k not in ("progress", "tile_size")}
    run(crop, **settings)
    start = time.perf_counter()
    run(crop, **settings)
    seconds = time.perf_counter() - start
    pixels = math.prod(data.shape[-2:]) * math.prod(lead)
    return seconds * pixels / math.prod(crop.shape[-2:])


def describe_seconds(seconds: float) -> str:
    """'about 40 s', 'about 3 min', 'about 2.5 h'."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def _centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    ny, nx = image.shape[-2:]
    y0, x0 = max(0, (ny - size) // 2), max(0, (nx - size) // 2)
    return np.ascontiguousarray(image[..., y0:y0 + size, x0:x0 + size])
