"""IDT dock widget: brightfield images under oblique LED illumination → ``wsprior.idt`` → Δn
(or Δε) slices as a new layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from magicgui.widgets import FileEdit, Label, LineEdit

from .. import api, io
from ..settings import IdtSettings
from ._common import TaskWidget
from ._fields import (Field, choice_field, float_field, format_floats,
                      illumination_wavelength_field, list_field, parse_floats, pixel_size_field)
from ._layers import output_geometry

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
    return _check_table(table, path.name)


def _check_table(table, source: str) -> np.ndarray:
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


class IdtWidget(TaskWidget):
    task = "idt"
    model = IdtSettings
    title = "IDT"
    input_label = "LED images (…, L, Y, X)"
    input_tooltip = "one brightfield image per LED, in the order of the illumination table"

    def _add_extra_inputs(self) -> None:
        self._table: np.ndarray | None = None
        self._table_source = ""
        self.table_file = FileEdit(name="illumination_na", label="illumination NA table",
                                   mode="r", filter=TABLE_FILTER,
                                   tooltip="(L, 2) table of (NA_x, NA_y) per image: .csv, .txt, "
                                           ".npy, or YAML (a list, or a parameter file)")
        self.table_info = Label(name="table_info", label="LEDs", value="no table loaded")
        self.table_file.changed.connect(self._table_file_changed)
        self.append(self.table_file)
        self.append(self.table_info)
        self.fields["illumination_na"] = Field(self.table_file, self._get_table, self._set_table)

    def _acquisition_fields(self) -> list[Field]:
        return [
            illumination_wavelength_field(),
            float_field("na", "NA (objective)", 0.4, step=0.05, decimals=3,
                        tooltip="numerical aperture of the objective (< n medium)"),
            pixel_size_field(0.25),
            float_field("n_medium", "n medium", 1.33, step=0.01, decimals=3,
                        tooltip="refractive index of the medium around the sample"),
            list_field("z_um", "slice depths z (µm)", [-2.0, 0.0, 2.0],
                       tooltip="depth of each reconstructed slice, 0 = focal plane"),
            _thickness_field(),
            choice_field("components", "output",
                         [("Δn = n − n_medium", "ri"), ("Δε = n² − n_medium² (complex)",
                                                        "permittivity")], "ri"),
        ]

    # -- illumination table -------------------------------------------------------------------
    def load_table(self, path: str | Path) -> np.ndarray:
        table = read_illumination_table(path)
        self._table, self._table_source = table, f"from {Path(path).name}"
        self._show_table()
        return table

    def _table_file_changed(self, *_args) -> None:
        text = self.table_file.line_edit.value.strip()
        if text:
            self._guarded(lambda: self.load_table(text))

    def _get_table(self) -> list[list[float]]:
        if self._table is None:
            raise ValueError("illumination_na: load the table of illumination NAs (one row "
                             "NA_x, NA_y per LED image) first")
        return self._table.tolist()

    def _set_table(self, value) -> None:
        if isinstance(value, (str, Path)):
            self.load_table(value)
            return
        self._table = _check_table(value, "illumination_na")
        self._table_source = "from parameters"
        self._show_table()

    def _show_table(self) -> None:
        table = self._table
        radius = np.hypot(table[:, 0], table[:, 1])
        text = (f"{len(table)} LEDs loaded {self._table_source} "
                f"(NA_ill {radius.min():.3g}–{radius.max():.3g})")
        layer = self.input.value
        if layer is not None and layer.ndim >= 3 and layer.data.shape[-3] != len(table):
            text += f" — but {layer.name!r} has {layer.data.shape[-3]} images"
        self.table_info.value = text

    def _on_input_changed(self, layer) -> None:
        if self._table is not None:
            self._show_table()

    def _resolve_loaded(self, values: dict, folder: Path) -> dict:
        table = values.get("illumination_na")
        if isinstance(table, str):  # a path, as the CLI accepts: relative to the YAML first
            candidate = folder / table
            values = dict(values, illumination_na=read_illumination_table(
                candidate if candidate.exists() else table).tolist())
        return values

    # -- run ----------------------------------------------------------------------------------
    def _prepare(self, layer, params):
        z = np.asarray(params["z_um"], dtype=float)
        thickness = params["slice_thickness_um"]
        if len(z) > 1 and np.allclose(np.diff(z), np.diff(z)[0]):
            depth = (float(np.diff(z)[0]), float(z[0]), "z", "micrometer")
        elif len(z) == 1:
            depth = (float(np.atleast_1d(thickness)[0]), float(z[0]), "z", "micrometer")
        else:  # unevenly spaced slices: napari needs a regular grid; depths in the metadata
            depth = (1.0, 0.0, "slice", "pixel")
        method = params["method"]

        def work(data, progress):
            return api.idt(data, progress=progress, **params)

        def add_layers(result):
            if params["components"] == "permittivity":
                geometry = output_geometry(layer, np.ndim(result), params["pixel_size_um"],
                                           third_axis=depth)
                return [self.add_image(np.real(result).astype(np.float32),
                                       f"Δε real ({method})", geometry, params, layer),
                        self.add_image(np.imag(result).astype(np.float32),
                                       f"Δε imag ({method})", geometry, params, layer)]
            mean = result[0] if isinstance(result, tuple) else result
            geometry = output_geometry(layer, np.ndim(mean), params["pixel_size_um"],
                                       third_axis=depth)
            return self.add_result(result, f"Δn ({method})", geometry, params, layer)

        return work, add_layers


def _thickness_field() -> Field:
    widget = LineEdit(name="slice_thickness_um", label="slice thickness (µm)", value="auto",
                      tooltip="Δz of each slice; 'auto' = spacing of the slice depths "
                              "(required for a single slice); one value or one per slice")

    def get():
        text = widget.value.strip()
        if text.lower() in ("", "auto"):
            return None
        values = parse_floats(text, "slice_thickness_um")
        return values[0] if len(values) == 1 else values

    def set_value(value):
        widget.value = "auto" if value is None else format_floats(value)
    return Field(widget, get, set_value)

