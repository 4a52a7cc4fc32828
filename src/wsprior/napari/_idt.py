"""IDT dock widget: brightfield images under oblique LED illumination → ``wsprior.idt`` → Δn
(or Δε) slices as new layers, on a depth axis of their own (``_idt_axes``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import FileEdit, LineEdit

from .. import api
from ..settings import IdtSettings
from ._common import TaskWidget
from ._fields import (Field, choice_field, float_field, format_floats,
                      illumination_wavelength_field, list_field, parse_floats, pixel_size_field)
from ._idt_axes import led_axis, led_images, place_slices, slice_axis
from ._illumination import TABLE_FILTER, check_table, read_illumination_table
from ._layout import note
from ._sample_data import IDT_COLORMAP

COMPONENTS = [("Δn = n − n_medium", "ri"), ("Δε = n² − n_medium² (real and imaginary layers)",
                                             "permittivity")]


class IdtWidget(TaskWidget):
    task = "idt"
    model = IdtSettings
    title = "IDT"
    input_label = "LED images (…, L, Y, X)"
    input_tooltip = ("one brightfield image per LED, in the order of the illumination table "
                     "(the sample's (L, 1, Y, X): LED images in the focal plane)")

    def _add_extra_inputs(self) -> None:
        self._table: np.ndarray | None = None
        self._table_source = ""
        self.table_file = FileEdit(name="illumination_na", label="illumination NA table",
                                   mode="r", filter=TABLE_FILTER,
                                   tooltip="(L, 2) table of (NA_x, NA_y) per image: .csv, .txt, "
                                           ".npy, or YAML (a list, or a parameter file)")
        self.table_info = note("table_info", "LEDs", "no table loaded")
        self.table_file.changed.connect(self._table_file_changed)
        self.form.append(self.table_file)
        self.form.append(self.table_info)
        self.fields["illumination_na"] = Field(self.table_file, self._get_table, self._set_table)

    def _acquisition_fields(self) -> list[Field]:
        return [
            illumination_wavelength_field(),
            float_field("na", "numerical aperture (NA)", 0.4, step=0.05, decimals=3,
                        tooltip="numerical aperture of the objective (below n medium)"),
            pixel_size_field(0.25),
            float_field("n_medium", "n medium", 1.33, step=0.01, decimals=3,
                        tooltip="refractive index of the medium around the sample"),
            list_field("z_um", "slice depths z (µm)", [-2.0, 0.0, 2.0],
                       tooltip="depth of each reconstructed slice, 0 = focal plane"),
            _thickness_field(),
            choice_field("components", "output", COMPONENTS, "ri",
                         tooltip="Δn: refractive-index contrast to the medium, one layer; "
                                 "Δε: permittivity contrast, a layer for its real part "
                                 "(phase-like) and one for its imaginary part (absorption)"),
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
            raise ValueError("load the illumination NA table (one row NA_x, NA_y per LED "
                             "image) first")
        return self._table.tolist()

    def _set_table(self, value) -> None:
        if isinstance(value, (str, Path)):
            self.load_table(value)
            return
        self._table = check_table(value, "illumination NA table")
        self._table_source = "from parameters"
        self._show_table()

    def _n_leds(self) -> int | None:
        return None if self._table is None else len(self._table)

    def _image_count(self, layer) -> int | None:
        return layer.data.shape[led_axis(layer, self._n_leds())] if layer.ndim >= 3 else None

    def _show_table(self) -> None:
        table = self._table
        radius = np.hypot(table[:, 0], table[:, 1])
        text = (f"{len(table)} LEDs loaded {self._table_source} "
                f"(NA_ill {radius.min():.3g}–{radius.max():.3g})")
        layer = self.input.value
        count = None if layer is None else self._image_count(layer)
        if count is not None and count != len(table):
            text += f" — but {layer.name!r} has {count} images"
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

    # -- checks -------------------------------------------------------------------------------
    def _check_fields(self, params: dict) -> None:
        labels, n_medium = self.field_labels(), params["n_medium"]
        if not 0 < params["na"] < n_medium:
            raise ValueError(f"{labels['na']} must lie between 0 and n medium "
                             f"({n_medium:g}); got {params['na']:g}")
        largest = float(np.hypot(*np.asarray(params["illumination_na"]).T).max())
        if largest >= n_medium:
            raise ValueError(f"the illumination NA table reaches NA {largest:g}, which must be "
                             f"below n medium ({n_medium:g})")
        if len(params["z_um"]) == 1 and params["slice_thickness_um"] is None:
            raise ValueError(f"a single slice depth needs a {labels['slice_thickness_um']} "
                             f"('auto' takes the spacing of several depths)")

    def check_parameters(self, params: dict) -> None:
        super().check_parameters(params)
        self._check_thickness(params)

    def _check_thickness(self, params: dict) -> None:
        """One positive thickness, or one per slice depth (the api's rule, checked before the
        run and worded by the fields)."""
        thickness = params["slice_thickness_um"]
        if thickness is None:
            return
        labels, values = self.field_labels(), np.atleast_1d(thickness)
        label = labels["slice_thickness_um"]
        if not np.all(values > 0):
            raise ValueError(f"{label} must be > 0; got {format_floats(values)}")
        count = len(params["z_um"])
        if len(values) not in (1, count):
            raise ValueError(f"{label} needs one value, or one per slice depth ({count} in "
                             f"{labels['z_um']}); got {len(values)} values")

    def _check_input(self, layer, params: dict) -> None:
        count, rows = self._image_count(layer), len(params["illumination_na"])
        if count is None:
            raise ValueError(f"{layer.name!r} is one 2D image; IDT needs one image per LED "
                             f"({rows} in the illumination NA table)")
        if count != rows:
            raise ValueError(f"{layer.name!r} holds {count} images but the illumination NA "
                             f"table has {rows} rows: the LED images need one image per row")

    def input_data(self, layer):
        return led_images(super().input_data(layer), led_axis(layer, self._n_leds()))

    # -- run ----------------------------------------------------------------------------------
    def _prepare(self, layer, params):
        depth = slice_axis(params["z_um"], params["slice_thickness_um"])
        axis = led_axis(layer, self._n_leds())
        method = params["method"]

        def work(data, progress):
            return api.idt(data, progress=progress, **params)

        def add(array, name, **kwargs):
            array = np.asarray(array, dtype=np.float32)
            data, geometry = place_slices(array, layer, axis, depth, params["pixel_size_um"])
            return self.add_image(data, name, geometry, params, layer, **kwargs)

        def add_layers(result):
            mean, std = result if isinstance(result, tuple) else (result, None)
            if params["components"] == "permittivity":
                quantity, parts = "Δε", {"real": np.real(mean), "imag": np.imag(mean)}
            else:
                quantity, parts = "Δn", {"": mean}
            added = [add(values, " ".join(filter(None, (quantity, part, f"({method})"))),
                         colormap=IDT_COLORMAP) for part, values in parts.items()]
            if std is not None:  # per pixel over the samples (of complex Δε: of |Δε − mean|)
                added.append(add(std, f"{quantity} ({method}) std", colormap="magma"))
            return added

        return work, add_layers


def _thickness_field() -> Field:
    widget = LineEdit(name="slice_thickness_um", label="slice thickness (µm)", value="auto",
                      tooltip="Δz of each slice; 'auto' = spacing of the slice depths "
                              "(required for a single slice); one value or one per slice")

    def get():
        text = widget.value.strip()
        if text.lower() in ("", "auto"):
            return None
        values = parse_floats(text, widget.label)
        return values[0] if len(values) == 1 else values

    def set_value(value):
        widget.value = "auto" if value is None else format_floats(value)
    return Field(widget, get, set_value)
