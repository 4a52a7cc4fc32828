"""Parameter errors in a widget's own words: the settings model's checks, reported with the
labels the user sees ("Numerical aperture (NA) must lie in (0, 1.7]; got 2") instead of the API's
field names and pydantic's wording."""
from __future__ import annotations

from pydantic import ValidationError

_BOUNDS = {"gt": ("(", ">"), "ge": ("[", "≥"), "lt": (")", "<"), "le": ("]", "≤")}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def check_settings(model, params: dict, labels: dict[str, str], across=None) -> None:
    """Validate ``params`` against ``model``; a ValueError names each bad field by its label.

    When only a rule across fields failed (the model's own check, worded with the API's
    names), ``across(params)`` may raise the widget's wording of it instead."""
    try:
        model(**params)
    except ValidationError as error:
        items = error.errors()
        if across is not None and not any(_field_names(item) for item in items):
            across(params)
        raise ValueError("; ".join(describe(item, model, labels) for item in items)) from None


def _field_names(item: dict) -> list[str]:
    return [part for part in item["loc"] if isinstance(part, str)]


def describe(item: dict, model, labels: dict[str, str]) -> str:
    """One pydantic error item as a sentence about the widget field it concerns."""
    names = _field_names(item)
    message = item["msg"].removeprefix("Value error, ")
    if not names:  # a check across fields: its message already reads as a sentence
        return sentence(message)
    name = names[0]
    label = labels.get(name, name.replace("_", " "))
    kind = item["type"]
    if kind in _RANGE_ERRORS and name in model.model_fields:
        message = value_range(model.model_fields[name])
    elif kind == "too_short":
        message = f"needs at least {item['ctx']['min_length']} values"
    elif kind == "missing":
        return sentence(f"{label} is required")
    elif kind == "literal_error":
        message = f"must be one of {item['ctx']['expected']}"
    return sentence(f"{label} {message}; got {format_value(item['input'])}")


def value_range(field) -> str:
    """``must lie in (0, 1.7]`` from a field's numeric bounds (or ``must be > 0`` for one)."""
    bounds = {}
    for constraint in field.metadata:
        for key in _BOUNDS:
            value = getattr(constraint, key, None)
            if value is not None:
                bounds[key] = value
    low = next(((k, bounds[k]) for k in ("gt", "ge") if k in bounds), None)
    high = next(((k, bounds[k]) for k in ("lt", "le") if k in bounds), None)
    if low and high:
        return (f"must lie in {_BOUNDS[low[0]][0]}{low[1]:g}, "
                f"{high[1]:g}{_BOUNDS[high[0]][0]}")
    key, value = low or high
    return f"must be {_BOUNDS[key][1]} {value:g}"


def format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
