"""File → Open Sample: the three bundled datasets as layers in µm (scale and napari units), with
the ground truth as a hidden second layer. The acquisition parameters travel in
``layer.metadata["wsprior_parameters"]`` so the widgets prefill them when the layer is chosen as
input.

napari lines up the axes of all layers from the last one; the units of an axis must agree
across layers. So every depth axis (the TIE planes, the IDT slices) is the third-last axis, in
µm, and the IDT images, taken in the focal plane, are ``(LED, z = 0, Y, X)``: their LED axis
comes before the depth axis and has a slider of its own."""
from __future__ import annotations

import numpy as np

from ..data.samples import load_sample
from ._layers import layer_kwargs

MICROMETER = "micrometer"


def _depth_axis(z_um) -> tuple[float, float]:
    """(scale, translate) of a depth axis when the planes are evenly spaced, else unit steps."""
    z = np.asarray(z_um, dtype=float)
    steps = np.diff(z)
    if len(z) > 1 and np.allclose(steps, steps[0]) and steps[0] > 0:
        return float(steps[0]), float(z[0])
    return 1.0, 0.0


def _layer(data, name, task, params, *, scale, translate=None, units, labels, visible=True,
           metadata=True, colormap="gray"):
    stored = {"wsprior_task": task, "wsprior_parameters": params} if metadata else {}
    kwargs = dict(name=name, scale=scale, translate=translate or (0.0,) * len(scale),
                  axis_labels=labels, units=units, visible=visible, colormap=colormap,
                  metadata={"wsprior_sample": task, **stored})
    return data, layer_kwargs(**kwargs), "image"


def deblur_dehaze():
    image, params, truth = load_sample("deblur_dehaze")
    px = float(params["pixel_size_um"])
    geometry = dict(scale=(px, px), units=(MICROMETER, MICROMETER), labels=("y", "x"))
    # the truth first, so that the measurement is on top and the widgets' default input
    return [_layer(truth, "deblur_dehaze truth", "deblur_dehaze", params, visible=False,
                   metadata=False, **geometry),
            _layer(image, "deblur_dehaze", "deblur_dehaze", params, **geometry)]


def tie():
    stack, params, truth = load_sample("tie")
    px = float(params["pixel_size_um"])
    dz, z0 = _depth_axis(params["z_um"])
    return [_layer(truth, "tie truth: phase [rad]", "tie", params, scale=(px, px), visible=False,
                   metadata=False, units=(MICROMETER, MICROMETER), labels=("y", "x")),
            _layer(stack, "tie", "tie", params, scale=(dz, px, px), translate=(z0, 0.0, 0.0),
                   units=(MICROMETER if dz != 1.0 or z0 else "pixel", MICROMETER, MICROMETER),
                   labels=("z", "y", "x"))]


IDT_COLORMAP = "viridis"
"""Δn of the IDT sample's truth and of every IDT result."""


def idt():
    images, params, truth = load_sample("idt")
    px = float(params["pixel_size_um"])
    dz, z0 = _depth_axis(params["z_um"])
    space = (MICROMETER, MICROMETER, MICROMETER)
    return [_layer(truth, "idt truth: Δn", "idt", params, scale=(dz, px, px),
                   translate=(z0, 0.0, 0.0), visible=False, metadata=False, units=space,
                   labels=("z", "y", "x"), colormap=IDT_COLORMAP),
            _layer(images[:, np.newaxis], "idt", "idt", params, scale=(1.0, dz, px, px),
                   units=("pixel", *space), labels=("LED", "z", "y", "x"))]
