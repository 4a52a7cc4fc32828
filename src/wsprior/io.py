"""TIFF and parameter-file I/O with physical units, and atomic writes (never a half-written file)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import yaml


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"input file {str(path)!r} does not exist")
    try:
        return tifffile.imread(path)
    except (tifffile.TiffFileError, ValueError) as error:
        raise ValueError(f"input file {str(path)!r} is not a readable TIFF: {error}") from None


def write_image(path: str | Path, data: np.ndarray, *, pixel_size_um: float | None = None,
                axes: str | None = None, description: str | None = None) -> Path:
    """Write ``data`` as TIFF with the pixel size in the ImageJ/TIFF resolution tags (µm),
    through a temporary file renamed into place only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data)
    imagej = data.dtype in (np.uint8, np.uint16, np.float32) and data.ndim <= 6
    metadata = {"unit": "um"} if imagej else {}
    if axes and imagej:
        metadata["axes"] = axes
    kwargs = {"imagej": imagej, "metadata": metadata or None}
    if pixel_size_um:
        kwargs["resolution"] = (1 / pixel_size_um, 1 / pixel_size_um)
        if not imagej:
            kwargs["resolutionunit"] = "MICROMETER"
    if description and not imagej:
        kwargs["description"] = description
    fd, tmp = tempfile.mkstemp(suffix=".tif", dir=path.parent, prefix=f".{path.stem}.")
    os.close(fd)
    try:
        tifffile.imwrite(tmp, data, **kwargs)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: str | Path) -> Path:
    """``path`` made absolute, once its folder is known to be writable: the nearest existing
    folder above it (the writers create the missing ones) must accept files. Raises ValueError
    before any work rather than an OSError after it."""
    path = Path(path).expanduser().absolute()
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        why = "is not a folder" if not folder.is_dir() else "is not writable"
        where = "" if folder == path.parent else f" into {path.parent}"
        raise ValueError(f"cannot write {path.name}{where}: {folder} {why}")
    if path.is_dir() and path.suffix.lower() != ".zarr":  # a zarr store is a folder
        raise ValueError(f"cannot write {path}: it is a folder")
    return path


def read_parameters(path: str | Path) -> dict:
    """Parameters from YAML (or JSON, a YAML subset) with the API's names."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of parameter: value")
    return values


def write_parameters(path: str | Path, values: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_plain(values), sort_keys=False))
    return path


def read_table(path: str | Path) -> np.ndarray:
    """An (N, 2) numeric table (e.g. illumination NAs) from .npy, .csv/.txt or YAML."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"table file {str(path)!r} does not exist")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix in (".yaml", ".yml", ".json"):
        return np.asarray(yaml.safe_load(path.read_text()), dtype=float)
    return np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
