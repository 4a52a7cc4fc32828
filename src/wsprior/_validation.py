"""Input checks that fail early with a message naming the parameter and the accepted range.

Every public entry point validates here, before any tensor is built, so a user never sees a
traceback from deep inside torch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def positive(name: str, value, unit: str = "") -> float:
    """Return ``value`` as float, or raise if it is not a finite number > 0."""
    value = _as_float(name, value)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0{_unit(unit)}; got {value!r}")
    return value


def in_range(name: str, value, low: float, high: float, unit: str = "",
             low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as float, or raise if it lies outside [low, high] (or the open variant)."""
    value = _as_float(name, value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        lb, hb = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {lb}{low:g}, {high:g}{hb}{_unit(unit)}; got {value!r}")
    return value


def numerical_aperture(name: str, na, n_medium: float) -> float:
    """An objective/illumination NA must lie in (0, n_medium)."""
    return in_range(name, na, 0.0, n_medium, low_open=True, high_open=True)


def image_array(name: str, array, min_ndim: int, what: str):
    """Check an image-like array: enough trailing axes, non-empty, finite (numpy only: dask is
    checked lazily per chunk, torch via numpy view)."""
    shape = tuple(getattr(array, "shape", ()))
    if len(shape) < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions {what}; "
                         f"got shape {shape}")
    if any(s == 0 for s in shape):
        raise ValueError(f"{name} must not be empty; got shape {shape}")
    dtype = getattr(array, "dtype", None)
    if dtype is not None and not _is_numeric(dtype):
        raise ValueError(f"{name} must hold real numbers; got dtype {dtype}")
    if _is_eager(array) and not bool(np.isfinite(_as_numpy(array)).all()):
        raise ValueError(f"{name} contains NaN or Inf values; replace or mask them first")
    return array


def finite_chunk(name: str, block: np.ndarray) -> np.ndarray:
    """Per-chunk finiteness check used on lazy (dask) inputs."""
    if not np.isfinite(block).all():
        raise ValueError(f"{name} contains NaN or Inf values; replace or mask them first")
    return block


def length_matches(name: str, values: Sequence, expected: int, other: str) -> None:
    if len(values) != expected:
        raise ValueError(f"{name} must have one entry per {other} ({expected}); got {len(values)}")


def choice(name: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def _as_float(name: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None


def _unit(unit: str) -> str:
    return f" ({unit})" if unit else ""


def _is_numeric(dtype) -> bool:
    try:
        return np.issubdtype(np.dtype(str(dtype).replace("torch.", "")), np.number) or \
            np.dtype(str(dtype).replace("torch.", "")) == np.bool_
    except TypeError:
        return True


def _is_eager(array) -> bool:
    return not hasattr(array, "dask")


def _as_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return np.asarray(array)
