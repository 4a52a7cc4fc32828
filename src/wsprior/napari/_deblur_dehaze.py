"""Deblur + dehaze dock widget: widefield image(s) → ``wsprior.deblur_dehaze`` → new layer."""
from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox

from .. import api
from ..settings import DeblurDehazeSettings
from ._common import TaskWidget
from ._fields import (Field, auto_field, auto_int_field, float_field, optional_float_field,
                      pixel_size_field)
from ._layers import image_layers, layer_data, output_geometry


class DeblurDehazeWidget(TaskWidget):
    task = "deblur_dehaze"
    model = DeblurDehazeSettings
    title = "Deblur + dehaze"
    input_label = "image (…, Y, X)"
    input_tooltip = "widefield image or a stack of them; leading axes are processed one by one"

    def _add_extra_inputs(self) -> None:
        self.psf = ComboBox(name="psf", label="measured PSF (optional)", nullable=True,
                            value=None, choices=lambda _w: image_layers(self.viewer),
                            tooltip="a 2D PSF layer with the image's pixel size; empty = Airy "
                                    "PSF from NA and wavelength")
        self.psf.changed.connect(self._psf_changed)
        self.form.append(self.psf)

    def _acquisition_fields(self) -> list[Field]:
        fields = [
            float_field("na", "numerical aperture (NA)", 0.8, step=0.05, decimals=3,
                        tooltip="numerical aperture of the objective"),
            float_field("wavelength_um", "wavelength (µm)", 0.52, step=0.01, decimals=3,
                        tooltip="emission wavelength in µm (520 nm = 0.52)"),
            pixel_size_field(0.1),
            self._haze_width_field(),
            auto_field("haze_std", "haze std (image units)",
                       tooltip="haze standard deviation, or 'auto' (estimated)"),
            auto_field("background", "background (image units)",
                       tooltip="constant offset, or 'auto' (estimated)"),
        ]
        if "n_medium" in self.model.model_fields:  # settings that know the immersion medium
            fields.insert(2, optional_float_field(
                "n_medium", "n immersion", tooltip="refractive index of the objective's "
                "immersion medium: 1.0 air, 1.33 water, 1.515 oil; 'auto' = air, for NA "
                "below 1"))
        return fields

    def _haze_width_field(self) -> Field:
        name, label = "haze_sigma_um", "haze width σ (µm)"
        tooltip = "correlation width of the out-of-focus haze"
        if self.model.model_fields[name].default == "auto":
            return auto_field(name, label, tooltip=f"{tooltip}, or 'auto' (fitted to the image)")
        return float_field(name, label, self.model.model_fields[name].default, step=0.5,
                           decimals=2, tooltip=tooltip)

    def _check_fields(self, params: dict) -> None:
        if "n_medium" not in params:
            return
        na, medium, labels = params["na"], params["n_medium"], self.field_labels()
        if medium is None and na >= 1:
            raise ValueError(f"{labels['na']} {na:g} needs an immersion medium: set "
                             f"{labels['n_medium']} (1.33 water, 1.515 oil)")
        if medium is not None and na >= medium:
            raise ValueError(f"{labels['na']} must lie below {labels['n_medium']} "
                             f"({medium:g}); got {na:g}")

    def _method_fields(self) -> list[Field]:
        return [auto_int_field("iterations", "iterations (RL, 0 = auto)", maximum=10000,
                               tooltip="Richardson–Lucy iterations; auto: until the data "
                                       "misfit reaches the noise level (at most 100)")]

    def _update_method_fields(self, method: str) -> None:
        self.fields["iterations"].widget.enabled = method == "rl"
        self.fields["regularization"].widget.enabled = method in ("wiener", "tikhonov")

    def _psf_changed(self, *_args) -> None:
        airy = self.psf.value is None
        for name in ("na", "wavelength_um"):
            if name in self.fields:
                self.fields[name].widget.enabled = airy

    def _check_input(self, layer, params: dict) -> None:
        psf = self.psf.value
        if psf is not None and psf.ndim != 2:
            raise ValueError(f"the measured PSF {psf.name!r} must be one 2D image with the "
                             f"image's pixel size; it has shape {psf.data.shape}")

    def _prepare(self, layer, params):
        psf = None if self.psf.value is None else layer_data(self.psf.value)

        def work(data, progress):
            return api.deblur_dehaze(data, psf=psf, progress=progress, **params)

        def add_layers(result):
            mean = result[0] if isinstance(result, tuple) else result
            geometry = output_geometry(layer, np.ndim(mean), params["pixel_size_um"])
            return self.add_result(result, f"deblurred ({params['method']})", geometry, params,
                                   layer)

        return work, add_layers
