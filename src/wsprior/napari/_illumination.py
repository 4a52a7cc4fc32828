"""The IDT widget's illumination table: (L, 2) illumination NAs (NA_x, NA_y), one row per LED
image, read from .csv/.txt/.npy or YAML/JSON and checked."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from .. import io

TABLE_FILTER = "*.csv *.txt *.npy *.yaml *.yml *.json"


def read_illumination_table(path: str | Path) -> np.ndarray:
    """(L, 2) illumination NAs (NA_x, NA_y) from .csv/.txt/.npy, or from YAML/JSON holding
    either the table itself or a parameter file with an ``illumination_na`` entry."""
    path = Path(path)
    table = None
    if path.suffix.lower() in (".yaml", ".yml", ".json") and path.exists():
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ValueError(f"{path.name} is not valid YAML: {error}") from None
        if isinstance(values, dict):
            if "illumination_na" not in values:
                raise ValueError(f"{path.name} holds no 'illumination_na' entry")
            table = values["illumination_na"]
    if table is None:
        table = io.read_table(path)
    return check_table(table, path.name)


def check_table(table, source: str) -> np.ndarray:
    try:
        table = np.asarray(table, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: illumination NAs must be numbers") from None
    if table.ndim != 2 or table.shape[1] != 2 or len(table) == 0:
        raise ValueError(f"{source}: illumination NAs must be an (L, 2) table of (NA_x, NA_y); "
                         f"got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError(f"{source}: illumination NAs contain NaN or inf")
    return table
