"""File → Open Sample: the three bundled datasets as layers in µm, with the ground truth as a
hidden second layer. The acquisition parameters travel in ``layer.metadata["wsprior_parameters"]``
so the widgets prefill them when the layer is chosen as input."""
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
                  axis_labels=labels, visible=visible, colormap=colormap,
                  metadata={"wsprior_sample": task, **stored})
    if units is not None:
        kwargs["units"] = units
    return data, layer_kwargs(**kwargs), "image"


def deblur_dehaze():
    image, params, truth = load_sample("deblur_dehaze")
    px = float(params["pixel_size_um"])
    geometry = dict(scale=(px, px), units=(MICROMETER, MICROMETER), labels=("y", "x"))
    # the truth first, so that the measurement is on top and the widgets' default input
    return [_layer(truth, "deblur_dehaze truth", "deblur_dehaze", params, visible=False, metadata=False,
                   **geometry),
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


def idt():
    images, params, truth = load_sample("idt")
    px = float(params["pixel_size_um"])
    dz, z0 = _depth_axis(params["z_um"])
    # No napari units here: the LED axis is no length, and napari warns when the units of the
    # layers disagree; the scales are in µm all the same.
    return [_layer(truth, "idt truth: Δn", "idt", params, scale=(dz, px, px), translate=(z0, 0.0, 0.0),
                   visible=False, metadata=False, units=None, labels=("z", "y", "x"),
                   colormap="viridis"),
            _layer(images, "idt", "idt", params, scale=(1.0, px, px), units=None,
                   labels=("LED", "y", "x"))]
