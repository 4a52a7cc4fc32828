"""Choosing regularisation weights without ground truth.

* ``estimate_noise_sigma``: white-noise standard deviation from the finest diagonal wavelet
  band (Donoho's MAD estimator), robust to the image content.
* ``discrepancy_weight``: Morozov's discrepancy principle — the weight ``r`` whose residual
  ``‖A x_r − y‖²`` equals the expected noise energy. Closed-form solvers evaluate the residual
  cheaply, so a bisection on ``log r`` is enough.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

_MAD_TO_SIGMA = 0.6745


def estimate_noise_sigma(image: torch.Tensor) -> torch.Tensor:
    """Per-image white-noise σ of ``image`` (..., Y, X) → (...,) from the HH Haar band."""
    y = image[..., : image.shape[-2] // 2 * 2, : image.shape[-1] // 2 * 2]
    hh = (y[..., 0::2, 0::2] - y[..., 1::2, 0::2] - y[..., 0::2, 1::2] + y[..., 1::2, 1::2]) / 2
    flat = hh.reshape(*hh.shape[:-2], -1).abs()
    return flat.median(dim=-1).values / _MAD_TO_SIGMA


def discrepancy_weight(residual_sq: Callable[[float], float], target_sq: float, *,
                       low: float, high: float, iterations: int = 40) -> float:
    """Return ``r`` in ``[low, high]`` with ``residual_sq(r) ≈ target_sq``.

    ``residual_sq`` must increase with ``r`` (true for Tikhonov). If even ``high`` leaves a
    residual below the target the data are pure noise at that level: ``high`` is returned; if
    ``low`` already exceeds it, ``low``.
    """
    if residual_sq(high) <= target_sq:
        return high
    if residual_sq(low) >= target_sq:
        return low
    lo, hi = math.log(low), math.log(high)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if residual_sq(math.exp(mid)) < target_sq:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))
