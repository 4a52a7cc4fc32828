"""Where IDT data sit among napari's axes. napari lines up the axes of all layers from the last
one, so a Δn stack ``(Zs, Y, X)`` added beside LED images ``(L, Y, X)`` would share their slider.
Here the slice axis always gets an axis of its own:

- LED images ``(…, L, 1, Y, X)`` (the plugin's sample: taken in the focal plane, z = 0) already
  have a depth axis: the slices go there, at their depths in µm;
- LED images ``(…, L, Y, X)``: the result becomes ``(Zs, …, 1, Y, X)``, its slice axis a new first
  axis and the one-plane axis under the LED axis stretched over all LEDs, so that the result
  shows whichever LED image the LED slider picks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.layers import Image

from ._layers import has_length_units, layer_kwargs

MICROMETER = "micrometer"


@dataclass(frozen=True)
class Axis:
    scale: float
    translate: float
    unit: str
    label: str


def led_axis(layer: Image, n_leds: int | None) -> int:
    """-4 for images ``(…, L, 1, Y, X)`` (one LED image per row of the table, in one focal
    plane), else -3."""
    shape = layer.data.shape
    focal_plane = len(shape) >= 4 and shape[-3] == 1 and n_leds not in (None, 1)
    return -4 if focal_plane and shape[-4] == n_leds else -3


def led_images(data, axis: int):
    """``(…, L, Y, X)`` for the api: the focal-plane axis of ``(…, L, 1, Y, X)`` dropped."""
    return data[..., 0, :, :] if axis == -4 else data


def slice_axis(z_um, slice_thickness_um) -> Axis:
    """The depth axis of the slices: their spacing and first depth (µm). napari needs a regular
    grid, so unevenly spaced slices are shown at their mean spacing (their depths are in the
    layer's parameters)."""
    z = np.asarray(z_um, dtype=float)
    if len(z) == 1:
        step = float(np.atleast_1d(slice_thickness_um)[0])
    else:
        step = float((z[-1] - z[0]) / (len(z) - 1))
    return Axis(step, float(z[0]), MICROMETER, "z")


def place_slices(result: np.ndarray, layer: Image, axis: int, depth: Axis,
                 pixel_size_um: float) -> tuple[np.ndarray, dict]:
    """``(data, geometry)`` of an IDT result ``(…, Zs, Y, X)`` computed from ``layer``, whose
    LED axis is ``axis``: data as a view, geometry as ``add_image`` keywords."""
    inputs = _axes(layer)
    lead = inputs[:np.ndim(result) - 3]
    n_leds = layer.data.shape[axis]
    led = inputs[axis]
    spanning = Axis(led.scale * n_leds, led.translate + led.scale * (n_leds - 1) / 2,
                    led.unit, led.label)
    plane = [Axis(pixel_size_um, inputs[k].translate, MICROMETER, name)
             for k, name in ((-2, "y"), (-1, "x"))]
    if axis == -4:
        data, axes = ((np.expand_dims(result, -4), [*lead, spanning, depth, *plane]) if lead
                      else (result, [depth, *plane]))
    else:
        data = np.moveaxis(np.expand_dims(result, -3), -4, 0)
        axes = [depth, *lead, spanning, *plane]
    geometry = dict(scale=tuple(a.scale for a in axes),
                    translate=tuple(a.translate for a in axes),
                    axis_labels=tuple(a.label for a in axes))
    if has_length_units(layer):  # else napari's default units, like the input's
        geometry["units"] = tuple(a.unit for a in axes)
    return data, layer_kwargs(**geometry)


def _axes(layer: Image) -> list[Axis]:
    units = [str(u) for u in getattr(layer, "units", None) or ["pixel"] * layer.ndim]
    labels = list(getattr(layer, "axis_labels", None) or [str(i) for i in range(-layer.ndim, 0)])
    return [Axis(float(s), float(t), u, lab)
            for s, t, u, lab in zip(layer.scale, layer.translate, units, labels)]
