"""Parameter fields of the task widgets: one magicgui widget per settings field, with its unit
in the label and the conversions between widget text and settings value; and the method list.

Field names are exactly those of the ``wsprior.settings`` models, which are also the API keyword
names and the CLI ``--config`` YAML schema.
"""
from __future__ import annotations

import re
import typing
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label,
                              LineEdit, SpinBox, Widget)

from .. import api

CLASSICAL_METHODS = ("wiener", "tikhonov", "rl")
"""Methods that need no diffusion prior; every other method name uses the prior options."""

METHOD_ALIASES = {"deblur_dehaze": {"tikhonov": "wiener"}}
"""Method names the API accepts for the same solver: the widget offers one of them (deblur +
dehaze: 'tikhonov' is the whitened Tikhonov filter that 'wiener' names)."""

METHOD_NOTES = {"deblur_dehaze": {"wiener": "whitened Tikhonov"}}


# ----------------------------------------------------------------------------------- methods
def method_choices(task: str, model) -> tuple[list[tuple[str, str]], str]:
    """``[(label, method), ...]`` for every method the settings model accepts (one name per
    solver), labelled when it uses the diffusion prior or is not in this version, and the
    default method.

    The default is the first available *classical* method, so that Run works on the samples
    without a trained prior; the diffusion methods are one click away in the list."""
    aliases = METHOD_ALIASES.get(task, {})
    names = [name for name in typing.get_args(model.model_fields["method"].annotation)
             if name not in aliases]
    available = api.available_methods(task)
    notes = METHOD_NOTES.get(task, {})

    def label(name: str) -> str:
        if name not in available:
            return f"{name}  (not in this version)"
        if is_diffusion(name):
            return f"{name}  (diffusion prior)"
        return f"{name}  ({notes[name]})" if name in notes else name

    runnable = [name for name in names if name in available]
    default = next((name for name in runnable if not is_diffusion(name)), runnable[0])
    return [(label(name), name) for name in names], default


def canonical_method(task: str, method: str) -> str:
    """The name the widget offers for ``method`` (an alias maps to its solver's name)."""
    return METHOD_ALIASES.get(task, {}).get(method, method)


def is_diffusion(method: str) -> bool:
    return method not in CLASSICAL_METHODS


# ------------------------------------------------------------------------------ text fields
def parse_auto(text: str, name: str):
    """``"auto"`` (or empty) → ``"auto"``; otherwise a number."""
    text = str(text).strip()
    if text.lower() in ("", "auto"):
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be 'auto' or a number; got {text!r}") from None


def parse_floats(text: str, name: str) -> list[float]:
    """``"-2, 0, 2"`` (commas, spaces or semicolons; '−' accepted) → ``[-2.0, 0.0, 2.0]``."""
    parts = [p for p in re.split(r"[,;\s]+", str(text).replace("−", "-").strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{name}: expected numbers separated by commas; got {text!r}") from None
    if not values:
        raise ValueError(f"{name}: give at least one value")
    return values


def format_floats(values) -> str:
    return ", ".join(f"{float(v):g}" for v in np.atleast_1d(values))


@dataclass
class Field:
    """One parameter: its widget, the conversions between widget and settings value, and the
    label that messages about it use (the widget's own label by default)."""
    widget: Widget
    get: Callable[[], object]
    set: Callable[[object], None]
    label: str = ""

    def __post_init__(self):
        self.label = self.label or self.widget.label


def float_field(name, label, value, *, step=0.01, decimals=3, minimum=0.0, maximum=1e5,
                tooltip=None) -> Field:
    # Loose bounds on purpose: the settings model is the one authority on ranges, and its error
    # ("wavelength_um: ≤ 2 (got 520)") explains a unit mistake that silent clamping would hide.
    widget = FloatSpinBox(name=name, label=label, value=value, min=minimum, max=maximum,
                          step=step, tooltip=tooltip)
    widget.native.setDecimals(decimals)

    def set_value(v):
        widget.value = float(v)
    return Field(widget, lambda: float(widget.value), set_value)


def pixel_size_field(value: float) -> Field:
    """The sample-plane pixel size (µm), shared by every reconstruction widget."""
    return float_field("pixel_size_um", "pixel size (µm)", value, step=0.005, decimals=4,
                       tooltip="sample-plane pixel size (camera pixel / magnification)")


def illumination_wavelength_field() -> Field:
    """The illumination wavelength (µm) of the phase widgets (TIE, IDT)."""
    return float_field("wavelength_um", "wavelength (µm)", 0.53, step=0.01, decimals=3,
                       tooltip="illumination wavelength in µm (530 nm = 0.53)")


def int_field(name, label, value, *, minimum=0, maximum=1_000_000, zero_is_none=False,
              tooltip=None) -> Field:
    widget = SpinBox(name=name, label=label, value=value, min=minimum, max=maximum,
                     tooltip=tooltip)

    def get():
        return None if zero_is_none and widget.value == 0 else int(widget.value)

    def set_value(v):
        widget.value = 0 if v is None else int(v)
    return Field(widget, get, set_value)


def auto_int_field(name, label, *, maximum=1_000_000, tooltip=None) -> Field:
    """A whole number from 1, or 'auto' at 0 (the label says so, as the sampler fields do)."""
    widget = SpinBox(name=name, label=label, value=0, min=0, max=maximum, tooltip=tooltip)

    def set_value(v):
        widget.value = 0 if v in (None, "auto") else int(v)
    return Field(widget, lambda: "auto" if widget.value == 0 else int(widget.value), set_value)


def auto_field(name, label, *, tooltip=None) -> Field:
    widget = LineEdit(name=name, label=label, value="auto", tooltip=tooltip)

    def set_value(v):
        widget.value = "auto" if v in (None, "auto") else f"{float(v):g}"
    return Field(widget, lambda: parse_auto(widget.value, label), set_value)


def optional_float_field(name, label, *, tooltip=None) -> Field:
    """A number, or 'auto' (empty) for None: the library chooses."""
    widget = LineEdit(name=name, label=label, value="auto", tooltip=tooltip)

    def get():
        value = parse_auto(widget.value, label)
        return None if value == "auto" else value

    def set_value(v):
        widget.value = "auto" if v in (None, "auto") else f"{float(v):g}"
    return Field(widget, get, set_value)


def scientific_field(name, label, value, *, tooltip=None) -> Field:
    """A float typed as text, for values spanning decades (``2e-4``)."""
    widget = LineEdit(name=name, label=label, value=f"{value:g}", tooltip=tooltip)

    def get():
        text = str(widget.value).strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{label}: expected a number such as 2e-4; got {text!r}") from None

    def set_value(v):
        widget.value = f"{float(v):g}"
    return Field(widget, get, set_value)


def list_field(name, label, values, *, tooltip=None) -> Field:
    widget = LineEdit(name=name, label=label, value=format_floats(values), tooltip=tooltip)

    def set_value(v):
        widget.value = format_floats(v)
    return Field(widget, lambda: parse_floats(widget.value, label), set_value)


def choice_field(name, label, choices, value, *, tooltip=None) -> Field:
    widget = ComboBox(name=name, label=label, choices=choices, value=value, tooltip=tooltip)

    def set_value(v):
        widget.value = v
    return Field(widget, lambda: widget.value, set_value)


def bool_field(name, label, value=False, *, tooltip=None) -> Field:
    widget = CheckBox(name=name, text=label, value=value, tooltip=tooltip)

    def set_value(v):
        widget.value = bool(v)
    return Field(widget, lambda: bool(widget.value), set_value, label=label)


def prior_field() -> Field:
    widget = FileEdit(name="prior", label="prior file (.safetensors)", mode="r",
                      filter="*.safetensors",
                      tooltip="diffusion-prior checkpoint; empty = the shipped default prior")

    def get():
        text = widget.line_edit.value.strip()
        return text if text and text != "default" else "default"

    def set_value(v):
        widget.line_edit.value = "" if v in (None, "default") else str(v)
    return Field(widget, get, set_value)


def path_field(name, label, *, mode="r", filter=None, tooltip=None) -> Field:
    """A file or folder (``mode`` "r", "w" or "d"); empty text → None."""
    widget = FileEdit(name=name, label=label, mode=mode, filter=filter, tooltip=tooltip)

    def get():
        return widget.line_edit.value.strip() or None

    def set_value(v):
        widget.line_edit.value = "" if v is None else str(v)
    return Field(widget, get, set_value)


def seed_field(value: int, *, tooltip: str) -> Field:
    return int_field("seed", "seed", value, maximum=2**31 - 1, tooltip=tooltip)


def header(text: str) -> Label:
    return Label(value=f"<b>{text}</b>")


def button_row(name: str, label: str, *widgets) -> Container:
    row = Container(widgets=list(widgets), layout="horizontal", labels=False, name=name)
    row.margins = (0, 0, 0, 0)
    row.label = label  # (Container ignores a label keyword)
    return row
