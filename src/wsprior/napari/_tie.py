"""TIE / Laplace phase dock widget: defocus stack → ``wsprior.tie_phase`` → phase layer (rad)."""
from __future__ import annotations

import numpy as np

from .. import api
from ..settings import TieSettings
from ._common import TaskWidget
from ._fields import (Field, float_field, illumination_wavelength_field, list_field,
                      pixel_size_field)
from ._layers import output_geometry


class TieWidget(TaskWidget):
    task = "tie"
    model = TieSettings
    title = "TIE phase"
    input_label = "defocus stack (…, Z, Y, X)"
    input_tooltip = "intensity images at the defocus positions z; leading axes are batches"

    def _acquisition_fields(self) -> list[Field]:
        return [
            list_field("z_um", "plane defocus z (µm)", [-2.0, 0.0, 2.0],
                       tooltip="defocus of each plane of the stack, in stack order, e.g. "
                               "'-2, 0, 2' (any number ≥ 2, any spacing)"),
            illumination_wavelength_field(),
            pixel_size_field(0.2),
            float_field("n_medium", "n medium", 1.33, step=0.01, decimals=3,
                        tooltip="refractive index of the immersion / mounting medium"),
        ]

    def _on_input_changed(self, layer) -> None:
        try:
            self._check_input(layer, {"z_um": self.fields["z_um"].get()})
        except ValueError as problem:
            self.status.value = str(problem)
        else:
            self.status.value = "ready"

    def _check_input(self, layer, params: dict) -> None:
        count, label = len(params["z_um"]), self.fields["z_um"].label
        if layer.ndim < 3:
            raise ValueError(f"{layer.name!r} is one 2D image: TIE needs a stack of at least "
                             f"2 planes at different defocus")
        planes = layer.data.shape[-3]
        if planes != count:
            raise ValueError(f"the stack {layer.name!r} has {planes} planes but {label} lists "
                             f"{count} values: the stack needs one plane per defocus value")

    def _prepare(self, layer, params):
        def work(data, progress):
            return api.tie_phase(data, progress=progress, **params)

        def add_layers(result):
            mean = result[0] if isinstance(result, tuple) else result
            geometry = output_geometry(layer, np.ndim(mean), params["pixel_size_um"])
            return self.add_result(result, f"phase [rad] ({params['method']})", geometry, params,
                                   layer)

        return work, add_layers
