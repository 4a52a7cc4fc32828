"""Layer helpers of the task widgets: input choices, the pixel size and stored parameters of a
layer, and the scale (µm) / units of result layers."""
from __future__ import annotations

import functools
import inspect

import numpy as np
from napari.layers import Image


def image_layers(viewer, task: str | None = None) -> list[tuple[str, Image]]:
    """Choices for an input-layer combo box: the viewer's Image layers, newest first, measurements
    made for ``task`` (the plugin's samples) ahead of the others."""
    layers = [layer for layer in reversed(viewer.layers) if isinstance(layer, Image)]
    if task is not None:
        layers.sort(key=lambda layer: layer_task(layer) != task)
    return [(layer.name, layer) for layer in layers]


def layer_data(layer: Image) -> np.ndarray:
    """The full-resolution data of ``layer`` as numpy (read in the worker thread)."""
    if layer.rgb:
        raise ValueError(f"layer {layer.name!r} is RGB; split it into channels first")
    data = layer.data[0] if layer.multiscale else layer.data
    return np.asarray(data)


def pixel_size_from_layer(layer: Image) -> float | None:
    """The x pixel size in µm from the layer's scale: converted when the layer has length units
    (µm, nm, …); read as µm when it has none (napari's default 'pixel') but a scale other than 1;
    None for the default scale 1."""
    scale = float(layer.scale[-1])
    if has_length_units(layer):
        return float((scale * layer.units[-1]).to("micrometer").magnitude)
    return scale if scale != 1.0 else None


def layer_task(layer: Image) -> str | None:
    """The task whose measurement this layer holds, when the plugin made it (sample data)."""
    metadata = layer.metadata if isinstance(layer.metadata, dict) else {}
    return metadata.get("wsprior_task")


def layer_parameters(layer: Image, task: str) -> dict:
    """Acquisition parameters stored with a ``task`` measurement (the plugin's sample data)."""
    if layer_task(layer) != task:
        return {}
    values = layer.metadata.get("wsprior_parameters")
    return dict(values) if isinstance(values, dict) else {}


@functools.cache
def _image_keywords() -> frozenset[str]:
    return frozenset(inspect.signature(Image.__init__).parameters)


def layer_kwargs(**kwargs) -> dict:
    """Drop keyword arguments the installed napari's Image layer does not know (``units`` and
    ``axis_labels`` arrived in napari 0.6)."""
    optional = ("units", "axis_labels")
    return {k: v for k, v in kwargs.items() if k not in optional or k in _image_keywords()}


def has_length_units(layer: Image | None) -> bool:
    """Whether the layer's x axis carries a physical length unit (napari ≥ 0.6 ``units``)."""
    units = getattr(layer, "units", None)
    if not units:
        return False
    try:
        (1 * units[-1]).to("micrometer")
    except Exception:  # noqa: BLE001 -- 'pixel' and other non-length units
        return False
    return True


def output_geometry(layer: Image | None, out_ndim: int, pixel_size_um: float, *,
                    third_axis: tuple[float, float, str, str] | None = None) -> dict:
    """``scale``/``translate`` (and ``units``/``axis_labels``) for a result ``(..., [Z,] Y, X)``.

    The last two axes have the scale ``pixel_size_um`` (µm) and the input's offset;
    ``third_axis`` = (scale, translate, label, unit) describes a depth axis; leading (batch)
    axes keep the input layer's scale. Units are set only when the input layer has length units
    itself: napari warns about layers whose units disagree, so a result of a plain (pixel-unit)
    layer keeps napari's default units while its scale is still in µm.
    """
    n_space = 3 if third_axis else 2
    lead = out_ndim - n_space
    ndim = layer.ndim if layer is not None else 0
    in_units = [str(u) for u in getattr(layer, "units", None) or ["pixel"] * ndim]
    in_labels = list(getattr(layer, "axis_labels", None) or [f"axis {i}" for i in range(ndim)])
    scale, translate, units, labels = [], [], [], []
    if layer is not None and 0 < lead <= ndim:
        scale += [float(v) for v in layer.scale[:lead]]
        translate += [float(v) for v in layer.translate[:lead]]
        units += in_units[:lead]
        labels += in_labels[:lead]
    else:
        scale += [1.0] * lead
        translate += [0.0] * lead
        units += ["pixel"] * lead
        labels += [f"axis {i}" for i in range(lead)]
    if third_axis:
        scale.append(third_axis[0])
        translate.append(third_axis[1])
        labels.append(third_axis[2])
        units.append(third_axis[3])
    scale += [pixel_size_um, pixel_size_um]
    translate += ([float(v) for v in layer.translate[-2:]] if layer is not None else [0.0, 0.0])
    units += ["micrometer", "micrometer"]
    labels += ["y", "x"]
    geometry = dict(scale=tuple(scale), translate=tuple(translate), axis_labels=tuple(labels))
    if has_length_units(layer):
        geometry["units"] = tuple(units)
    return layer_kwargs(**geometry)
