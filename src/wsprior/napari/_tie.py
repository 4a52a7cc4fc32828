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
        planes = layer.data.shape[-3] if layer.ndim >= 3 else 1
        try:
            count = len(self.fields["z_um"].get())
        except ValueError:
            return
        if layer.ndim < 3:
            self.status.value = f"{layer.name!r} is 2D: TIE needs a stack of ≥ 2 defocus planes"
        elif planes != count:
            self.status.value = f"{layer.name!r} has {planes} planes but {count} z positions"
        else:
            self.status.value = "ready"

    def _prepare(self, layer, params):
        def work(data, progress):
            return api.tie_phase(data, progress=progress, **params)

        def add_layers(result):
            mean = result[0] if isinstance(result, tuple) else result
            geometry = output_geometry(layer, np.ndim(mean), params["pixel_size_um"])
            return self.add_result(result, f"phase [rad] ({params['method']})", geometry, params,
                                   layer)

        return work, add_layers
