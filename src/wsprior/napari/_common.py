"""Plumbing shared by the plugin's dock widgets. ``RunnerWidget``: parameter fields, the
background worker with progress/ETA and cancellation, notifications instead of tracebacks.
``TaskWidget`` (the three reconstruction widgets) adds input-layer selection and Save/Load of
parameters in the CLI's YAML schema.

No physics here: a task widget declares its fields (``_fields``), says how to call its
``wsprior.api`` function and how to turn the result into layers (``_layers``).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from magicgui.widgets import ComboBox, Container, ProgressBar, PushButton
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject, Signal

from .. import io
from ..settings import STOCHASTICITY_METHODS
from ._eta import EtaEstimate
from ._fields import (Field, auto_field, bool_field, button_row, canonical_method,
                      choice_field, header, int_field, is_diffusion, method_choices,
                      prior_field, seed_field)
from ._layers import image_layers, layer_data, layer_parameters, pixel_size_from_layer
from ._layout import ScrollForm, StatusLine
from ._messages import check_settings, sentence
from ._preflight import check_compute

_PROGRESS_STEPS = 1000
_log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised from the progress callback inside the worker when the user pressed Cancel."""


# ----------------------------------------------------------------------------------- worker
class _ProgressRelay(QObject):
    """Carries (done, total, note) from the worker thread to the GUI thread (queued connection)."""
    progressed = Signal(int, int, str)


@dataclass
class _Outcome:
    result: object = None
    error: BaseException | None = None


class _OnFirstShow(QObject):
    """Calls ``callback`` once, when ``watched`` is first shown (napari's style applied)."""

    def __init__(self, watched, callback):
        super().__init__(watched)
        self._callback = callback
        watched.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Show:
            watched.removeEventFilter(self)
            self._callback()
        return False


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class RunnerWidget(Container):
    """Base of the plugin's dock widgets: named parameter fields in a scrolling form, and below
    it Run / Cancel, a progress bar with ETA and a status line that stay in view. Subclasses set
    ``title``, add their fields to ``self.form``, call ``_add_run_controls`` and implement
    ``_prepare_run``."""

    title: str = ""
    discard_result_on_cancel: bool = True
    """Drop a result that arrives after Cancel (True for in-memory results; a widget whose work
    has already written files says False and reports what was written)."""

    def __init__(self, napari_viewer):
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self.viewer = napari_viewer
        self.worker = None
        self._cancel = threading.Event()
        self._relay = None
        self._started = 0.0
        self._eta = EtaEstimate()
        self.fields: dict[str, Field] = {}
        self.form = ScrollForm(name="form")
        self.append(self.form)
        _OnFirstShow(self.native, self._fit_to_style)

    # -- subclass hooks -----------------------------------------------------------------------
    def _prepare_run(self):
        """Validate the parameters (raise ValueError) and return ``(work, finish, what)``:
        ``work(progress)`` runs in the worker thread and calls the library, ``finish(result)``
        runs in the GUI thread and returns the layers it added, ``what`` is the running status."""
        raise NotImplementedError

    def _done_note(self, added: list) -> str:
        return f"added {', '.join(repr(a.name) for a in added)}"

    def _not_done_note(self) -> str:
        """What a cancelled or failed run left behind."""
        return "no layer added"

    # -- parameters ---------------------------------------------------------------------------
    def _add(self, field: Field) -> None:
        self.fields[field.widget.name] = field
        self.form.append(field.widget)

    def parameters(self) -> dict:
        """Current parameters with the API / CLI-YAML names (raises ValueError on bad text)."""
        return {name: field.get() for name, field in self.fields.items()}

    def set_parameters(self, values: dict) -> None:
        for name, value in values.items():
            if name in self.fields:
                self.fields[name].set(value)

    def field_labels(self) -> dict[str, str]:
        """Each parameter's label as the widget shows it (for messages)."""
        return {name: field.label for name, field in self.fields.items()}

    def _announce(self, message: str) -> None:
        show_info(f"{self.title}: {message}")

    def _report_error(self, message: str) -> None:
        """A notification that names this widget and speaks in whole sentences."""
        show_error(f"{self.title}: {sentence(message)}")

    def _fit_to_style(self) -> None:
        self.form.align_labels()
        self.form.fit_width_to_content()

    def _guarded(self, action) -> bool:
        try:
            action()
            return True
        except ValueError as error:
            self._report_error(str(error))
            return False
        except OSError as error:  # a file that cannot be read or written: a message, no traceback
            where = f"{error.filename}: " if error.filename else ""
            self._report_error(f"{where}{error.strerror or error}")
            return False

    # -- layer list ---------------------------------------------------------------------------
    def _follow_layers(self) -> None:
        """Refresh the layer choices whenever the viewer's layer list changes."""
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.moved):
            event.connect(self._layers_changed)

    def _layers_changed(self, event=None) -> None:
        try:
            self.reset_choices()
        except RuntimeError:  # the widget's Qt side was deleted (dock closed): stop listening
            for emitter in (self.viewer.layers.events.inserted,
                            self.viewer.layers.events.removed, self.viewer.layers.events.moved):
                emitter.disconnect(self._layers_changed)

    # -- run / cancel -------------------------------------------------------------------------
    def _add_run_controls(self) -> None:
        """Below the form, always in view: Run, Cancel and the progress bar in one row, then the
        status line."""
        self.run_button = PushButton(text="Run", name="run")
        self.cancel_button = PushButton(text="Cancel", name="cancel", enabled=False)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.progress = ProgressBar(name="progress", value=0, min=0, max=_PROGRESS_STEPS,
                                    label="progress")
        self.status = StatusLine()
        row = button_row("run_row", "", self.run_button, self.cancel_button, self.progress)
        row.margins = (6, 0, 6, 0)
        self.append(row)
        self.native.layout().addWidget(self.status.native)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def run(self, *_args) -> None:
        """Validate in the GUI thread (immediate feedback), then work in a worker thread."""
        if self.running:
            return
        prepared = []
        if not self._guarded(lambda: prepared.append(self._prepare_run())):
            self.status.value = "not started — see the notification"
            return
        self._start(*prepared[0])

    def cancel(self, *_args) -> None:
        if self.running:
            self._cancel.set()
            self.cancel_button.enabled = False
            self.status.value = "cancelling…"

    def _start(self, work, finish, what: str) -> None:
        cancel = self._cancel
        cancel.clear()
        relay = _ProgressRelay()
        relay.progressed.connect(self._on_progress)
        discard_late_result = self.discard_result_on_cancel

        def progress(done: int, total: int, note: str = "") -> None:
            if cancel.is_set():
                raise Cancelled
            relay.progressed.emit(int(done), int(total), note)

        def job() -> _Outcome:
            # Never raises: expected failures (bad data, cancellation) come back as values and
            # are reported in the GUI thread as notifications, not tracebacks.
            try:
                if cancel.is_set():
                    raise Cancelled
                result = work(progress)
                if discard_late_result and cancel.is_set():
                    raise Cancelled
                return _Outcome(result=result)
            except Exception as error:  # noqa: BLE001
                return _Outcome(error=error)

        self._relay = relay
        self.worker = create_worker(job, _start_thread=False)
        self.worker.returned.connect(lambda outcome: self._on_returned(outcome, finish))
        self.worker.finished.connect(self._on_finished)
        self._started = time.perf_counter()
        self._eta = EtaEstimate()
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.native.setRange(0, 0)  # busy indicator until the first progress report
        self.status.value = what
        self.worker.start()

    def _on_progress(self, done: int, total: int, note: str) -> None:
        if not self.running or total <= 0 or self._cancel.is_set():
            return
        fraction = min(max(done / total, 0.0), 1.0)
        self.progress.native.setRange(0, _PROGRESS_STEPS)
        self.progress.value = int(round(fraction * _PROGRESS_STEPS))
        now = time.perf_counter()
        left = self._eta.update(done, total, now)
        eta = "…" if left is None else format_seconds(left)
        count = f" · {note}" if note else f" ({done}/{total})"  # a note may count its own way
        elapsed = format_seconds(now - self._started)
        self.status.value = (f"{100 * fraction:.0f} %{count} · elapsed {elapsed} · ETA {eta}"
                             if fraction < 1 else f"finishing… {elapsed}")

    def _on_returned(self, outcome: _Outcome, finish) -> None:
        elapsed = format_seconds(time.perf_counter() - self._started)
        error = outcome.error
        if error is None and self._cancel.is_set() and self.discard_result_on_cancel:
            error = Cancelled()
        self.progress.native.setRange(0, _PROGRESS_STEPS)
        self.progress.value = 0
        if isinstance(error, Cancelled):
            self.status.value = f"cancelled after {elapsed}; {self._not_done_note()}"
            show_info(f"{self.title}: cancelled")
            return
        if error is not None:
            if isinstance(error, ValueError):  # bad input: the api's message says it all
                message = str(error)
            else:  # unexpected: the notification stays short, the log keeps the traceback
                message = f"{type(error).__name__}: {error}"
                _log.error("%s failed", self.title, exc_info=error)
            self.status.value = f"failed — see the notification; {self._not_done_note()}"
            self._report_error(message)
            return
        try:
            added = finish(outcome.result)
        except ValueError as failure:
            self._report_error(str(failure))
            return
        self.progress.value = _PROGRESS_STEPS
        self.status.value = f"done in {elapsed}: {self._done_note(added)}"

    def _on_finished(self) -> None:
        self.worker = None
        self._relay = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False


class TaskWidget(RunnerWidget):
    """Base of the three task widgets. Subclasses set ``task``, ``model``, ``title`` and
    implement ``_acquisition_fields`` and ``_prepare``; optionally ``_add_extra_inputs``,
    ``_method_fields``, ``_update_method_fields``, ``_on_input_changed``, ``_check_fields``,
    ``_check_input`` and ``input_data``."""

    task: str = ""
    model = None
    input_label: str = "input"
    input_tooltip: str = ""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        form = self.form

        self.input = ComboBox(name="input", label=self.input_label,
                              choices=lambda _w: image_layers(self.viewer, self.task),
                              tooltip=self.input_tooltip)
        self.input.changed.connect(self._input_changed)
        form.append(self.input)
        self._add_extra_inputs()

        form.append(header("Acquisition"))
        for field in self._acquisition_fields():
            self._add(field)

        form.append(header("Method"))
        self._add(self._method_field())
        for field in self._method_fields():
            self._add(field)
        self._add(auto_field("regularization", "regularization",
                             tooltip="classical solver weight; 'auto' = discrepancy principle"))

        form.append(header("Diffusion prior"))
        self._add(prior_field())
        self._add(int_field("steps", "steps per sample (0 = auto)", 0, maximum=1000,
                            zero_is_none=True, tooltip="sampler steps of each sample (network "
                            "evaluations); 0 = auto: 5 for ws (6 for IDT), 12 for the other "
                            "samplers"))
        self._add(auto_field("guidance", "guidance λ",
                             tooltip="data-consistency weight, or 'auto'"))
        self._add(int_field("n_samples", "samples (0 = auto)", 0, maximum=256,
                            zero_is_none=True, tooltip="posterior samples averaged into the "
                            "result; 0 = auto: 2 for ws, 4 for the other samplers"))
        self._add(bool_field("return_std", "uncertainty (std layer)",
                             tooltip="also add the per-pixel standard deviation over samples"))
        self._add(seed_field(0, tooltip="random seed of the sampler's noise: the same seed "
                                        "gives the same result; change it to draw other "
                                        "posterior samples"))
        self._add(bool_field("start_from_noise", "start from noise (t = 1)",
                             tooltip="start from structured noise instead of the classical "
                                     "solution diffused to t = 0.5 (needs more steps)"))
        self._add(auto_field("stochasticity", "stochasticity (0-1)",
                             tooltip="fresh noise per step (ws, ddnm, joint): 0 = deterministic, "
                                     "1 = ancestral; 'auto' = 0.85"))

        form.append(header("Compute"))
        self._add(choice_field("device", "device", ["auto", "cpu", "cuda"], "auto",
                               tooltip="auto = cuda if available, else cpu"))
        self._add(int_field("tile_size", "tile size (px, 0 = whole)", 0, maximum=65536,
                            zero_is_none=True, tooltip="tile edge in pixels for large images"))
        save = PushButton(text="Save…", name="save",
                          tooltip="save the parameters as YAML for wsprior's --config")
        load = PushButton(text="Load…", name="load", tooltip="load parameters from a YAML file")
        save.changed.connect(self._save_dialog)
        load.changed.connect(self._load_dialog)
        form.append(button_row("parameter_row", "parameters (YAML)", save, load))

        self._add_run_controls()
        self.fields["method"].widget.changed.connect(self._method_changed)
        self._method_changed()
        self._follow_layers()
        self._input_changed()

    def _method_field(self) -> Field:
        choices, default = method_choices(self.task, self.model)
        field = choice_field("method", "method", choices, default,
                             tooltip="classical methods need no prior and take seconds; "
                                     "'(diffusion prior)' methods use the prior options below "
                                     "and take about 12 s per 512² plane on a 2-core CPU")
        set_choice = field.set
        field.set = lambda value: set_choice(canonical_method(self.task, value))
        return field

    # -- subclass hooks -----------------------------------------------------------------------
    def _add_extra_inputs(self) -> None:
        """Further input selectors (e.g. a PSF layer)."""

    def _acquisition_fields(self) -> list[Field]:
        raise NotImplementedError

    def _method_fields(self) -> list[Field]:
        return []

    def _prepare(self, layer: Image, params: dict):
        """Return ``(work, add_layers)``: ``work(data, progress)`` runs in the worker and calls
        the api; ``add_layers(result)`` runs in the GUI thread."""
        raise NotImplementedError

    def _on_input_changed(self, layer: Image) -> None:
        """Prefill from the selected layer (beyond pixel size and stored parameters)."""

    def _check_fields(self, params: dict) -> None:
        """Rules across fields, in the widget's words: called when the settings model's own
        check of them failed (it words them with the API's names)."""

    def _check_input(self, layer: Image, params: dict) -> None:
        """Does the input layer's shape fit the parameters? (ValueError in the widget's words)"""

    def input_data(self, layer: Image):
        """The array handed to the api (read in the worker thread)."""
        return layer_data(layer)

    # -- parameters ---------------------------------------------------------------------------
    def check_parameters(self, params: dict) -> None:
        """Validate against the settings model (the API's and CLI's own check), reporting each
        problem with the label of its field."""
        check_settings(self.model, params, self.field_labels(), across=self._check_fields)

    def save_parameters(self, path: str | Path) -> Path:
        """Write the parameters as a YAML usable with ``wsprior <task> --config``."""
        params = self.parameters()
        self.check_parameters(params)
        return io.write_parameters(io.check_writable(path), params)

    def load_parameters(self, path: str | Path) -> dict:
        """Read a YAML in the CLI schema, check it, and set the widgets."""
        path = Path(path)
        values = io.read_parameters(path)
        unknown = sorted(set(values) - set(self.model.model_fields))
        if unknown:
            raise ValueError(f"{path.name}: unknown parameter(s) {', '.join(unknown)} for "
                             f"{self.title}; expected names from "
                             f"{', '.join(self.model.model_fields)}")
        values = self._resolve_loaded(values, path.parent)
        if "method" in values:
            values["method"] = canonical_method(self.task, values["method"])
        try:
            current = self.parameters()
        except ValueError:
            current = {}
        self.check_parameters({**current, **values})
        self.set_parameters(values)
        return values

    def _resolve_loaded(self, values: dict, folder: Path) -> dict:
        return values

    def _save_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog
        path, _ = QFileDialog.getSaveFileName(self.native, f"Save {self.title} parameters",
                                              f"{self.task}.yaml", "YAML (*.yaml *.yml)")
        if path:
            self._guarded(lambda: (self.save_parameters(path), show_info(f"saved {path}")))

    def _load_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog
        path, _ = QFileDialog.getOpenFileName(self.native, f"Load {self.title} parameters", "",
                                              "YAML (*.yaml *.yml *.json)")
        if path:
            self._guarded(lambda: self.load_parameters(path))

    # -- input layer --------------------------------------------------------------------------
    def _input_changed(self, *_args) -> None:
        layer = self.input.value
        if layer is None or "tile_size" not in self.fields:  # not built yet
            return
        stored = {k: v for k, v in layer_parameters(layer, self.task).items()
                  if k in self.fields}
        if stored:
            self._guarded(lambda: self.set_parameters(stored))
        size = pixel_size_from_layer(layer)
        if size is not None and "pixel_size_um" in self.fields:
            self.fields["pixel_size_um"].set(size)
        self._on_input_changed(layer)

    def _method_changed(self, *_args) -> None:
        method = self.fields["method"].get()
        diffusion = is_diffusion(method)
        for name in ("prior", "steps", "guidance", "n_samples", "return_std", "seed",
                     "start_from_noise"):
            self.fields[name].widget.enabled = diffusion
        if not diffusion:  # a classical solver gives no uncertainty
            self.fields["return_std"].set(False)
        ddim = method in STOCHASTICITY_METHODS
        if not ddim:
            self.fields["stochasticity"].set("auto")
        self.fields["stochasticity"].widget.enabled = ddim
        self.fields["regularization"].widget.enabled = not diffusion
        self._update_method_fields(method)

    def _update_method_fields(self, method: str) -> None:
        """Enable the method-specific fields (subclasses)."""

    # -- run ----------------------------------------------------------------------------------
    def run(self, *_args) -> None:
        if not self.running and self.input.value is None:
            self._report_error(f"choose the {self.input_label} layer first (File → Open "
                               f"Sample → wsprior for an example)")
            return
        super().run()

    def _prepare_run(self):
        layer = self.input.value
        params = self.parameters()
        self.check_parameters(params)
        self._check_input(layer, params)
        check_compute(params, self.field_labels())
        work, add_layers = self._prepare(layer, params)
        return (lambda progress: work(self.input_data(layer), progress), add_layers,
                f"running {params['method']} on {layer.name!r}…")

    # -- helpers for subclasses ---------------------------------------------------------------
    def add_image(self, data, name: str, geometry: dict, params: dict, source: Image, **kwargs):
        # the parameters go with the result (reproducibility); it is no input of this task
        metadata = {"wsprior_result_of": self.task, "wsprior_parameters": params,
                    "wsprior_source": source.name}
        return self.viewer.add_image(data, name=name, metadata=metadata, **geometry, **kwargs)

    def add_result(self, result, name: str, geometry: dict, params: dict, source: Image, *,
                   colormap: str = "gray") -> list:
        """Add ``result`` — or ``(mean, std)`` when the api returns an uncertainty — as layers."""
        if isinstance(result, tuple) and len(result) == 2:
            mean, std = result
            return [self.add_image(mean, name, geometry, params, source, colormap=colormap),
                    self.add_image(std, f"{name} std", geometry, params, source,
                                   colormap="magma")]
        return [self.add_image(result, name, geometry, params, source, colormap=colormap)]
