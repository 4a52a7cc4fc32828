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


#: HH-band tile side (coefficients, 2 px each) of ``mean_noise_sigma``.
NOISE_BLOCK = 8
#: Intensity groups of tiles ``mean_noise_sigma`` fits its noise line to.
NOISE_GROUPS = 16


def haar_bands(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(LL, HH)`` Haar bands of ``image`` (..., Y, X) cropped to even sides: the 2 × 2 block
    means and the diagonal detail ``(a − b − c + d)/2`` (white noise σ keeps σ there)."""
    y = image[..., : image.shape[-2] // 2 * 2, : image.shape[-1] // 2 * 2]
    a, b, c, d = y[..., 0::2, 0::2], y[..., 1::2, 0::2], y[..., 0::2, 1::2], y[..., 1::2, 1::2]
    return (a + b + c + d) / 4, (a - b - c + d) / 2


def estimate_noise_sigma(image: torch.Tensor) -> torch.Tensor:
    """Per-image white-noise σ of ``image`` (..., Y, X) → (...,) from the HH Haar band."""
    hh = haar_bands(image)[1]
    flat = hh.reshape(*hh.shape[:-2], -1).abs()
    return flat.median(dim=-1).values / _MAD_TO_SIGMA


def mean_noise_sigma(image: torch.Tensor, block: int = NOISE_BLOCK,
                     groups: int = NOISE_GROUPS) -> float:
    """White-noise σ of ``image`` (Y, X) whose variance is the noise variance averaged over the
    image, for noise that grows with the signal (shot noise, ``var = a·I + b``). The median-
    based ``estimate_noise_sigma`` reads the noise of the typical, often dark, pixel: a
    Fourier-domain filter that takes it for the noise of every frequency trusts bright
    regions' high frequencies too much. Here the HH Haar band is cut into ``block``² tiles; the
    tiles, ordered by their mean intensity, form ``groups`` groups, and the line
    ``var = a·I + b`` (``a, b ≥ 0``) is fitted to each group's median intensity and median
    tile variance (medians: a tile's edges, or a few textured tiles, do not count), then
    evaluated at the image's mean intensity."""
    level, hh = haar_bands(image.double())
    by, bx = (min(block, n) for n in hh.shape)
    ny, nx = hh.shape[0] // by * by, hh.shape[1] // bx * bx

    def tiles(band):
        return band[:ny, :nx].reshape(ny // by, by, nx // bx, bx).permute(0, 2, 1, 3).reshape(
            -1, by * bx)

    variance = (tiles(hh).abs().median(dim=-1).values / _MAD_TO_SIGMA) ** 2
    intensity = tiles(level).mean(dim=-1)
    order = torch.argsort(intensity)
    chunks = [c for c in torch.tensor_split(order, min(groups, len(order))) if len(c)]
    means = torch.stack([intensity[c].median() for c in chunks])
    variances = torch.stack([variance[c].median() for c in chunks])
    slope, offset = _nonnegative_line(means, variances)
    return math.sqrt(max(slope * float(level.mean()) + offset, 0.0))


def _nonnegative_line(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Least-squares ``y ≈ a x + b`` with ``a, b ≥ 0`` (the better of the free fit when it is
    admissible, ``b = 0`` and ``a = 0``)."""
    candidates = []
    if float(x.max() - x.min()) > 0:
        a = float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum())
        b = float(y.mean()) - a * float(x.mean())
        if a >= 0 and b >= 0:
            candidates.append((a, b))
    if float(x.square().sum()) > 0:
        candidates.append((max(float((x * y).sum() / x.square().sum()), 0.0), 0.0))
    candidates.append((0.0, float(y.mean())))
    return min(candidates, key=lambda ab: float((ab[0] * x + ab[1] - y).square().sum()))


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
