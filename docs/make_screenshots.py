"""Screenshots of the napari widgets on the bundled samples → ``docs/images/{task}_widget.png``
and ``docs/images/train_widget.png``.

Opens napari, loads each sample through the plugin's File → Open Sample contribution, docks the
task's widget, runs its classical method and saves the main window (widget beside the input and
the result, shown side by side in napari's grid mode). The training widget trains a small prior
(3000 steps: minutes on a CPU) and shows samples drawn from it. Needs a display; headless:

    xvfb-run -a python docs/make_screenshots.py [FOLDER] [deblur_dehaze|tie|idt|train ...]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication, QLineEdit

PLUGIN = "napari-wsprior"
TASKS = {  # sample key: (widget name, method, output layer, input plane shown (µm or LED))
    "deblur_dehaze": ("Deblur + dehaze", "rl", "deblurred (rl)", None),
    "tie": ("TIE / Laplace phase", "tikhonov", "phase [rad] (tikhonov)", -2.0),  # z = −2 µm
    "idt": ("IDT", "tikhonov", "Δn (tikhonov)", 0.0),  # LED 0 beside the z = 0 µm slice
}
TRAIN_WIDGET = "Train diffusion prior"
SMALL_PRIOR = dict(kind="ws", base_channels=16, synthetic_images=96, synthetic_size=64,
                   steps=3000, batch_size=16, patch_size=32, learning_rate=1e-3, n_samples=4,
                   sample_steps=50, device="auto")
WINDOW = (1800, 1000)


def wait(condition, timeout_s: float = 300.0) -> None:
    app = QApplication.instance()
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the reconstruction did not finish in time")
        app.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def screenshot(task: str, folder: Path) -> Path:
    widget_name, method, output, plane = TASKS[task]
    viewer = napari.Viewer(title=f"napari-wsprior: {widget_name}")
    try:
        viewer.window.resize(*WINDOW)
        viewer.open_sample(PLUGIN, task)
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, widget_name)
        widget.fields["method"].widget.value = method
        widget.run()
        wait(lambda: not widget.running)
        if output not in viewer.layers:
            raise RuntimeError(f"{task}: no {output!r} layer; status: {widget.status.value}")
        if plane is not None:  # the first axis is shared by the stack and the result
            viewer.dims.set_point(0, plane)
        viewer.layers.selection.active = viewer.layers[output]
        grid = getattr(viewer.canvas, "grid", None) or viewer.grid  # napari ≥ 0.9: canvas.grid
        grid.enabled = True  # measurement and result side by side (the truth stays hidden)
        viewer.reset_view()
        settle()
        path = folder / f"{task}_widget.png"
        viewer.screenshot(str(path), canvas_only=False)
        print(f"wrote {path} ({widget.status.value})")
        return path
    finally:
        viewer.close()


def tidy_for_screenshot() -> None:
    """Hide napari's notification toasts (they cover the canvas) and text selections (focus
    moves to a field, which selects its text, when Run is disabled during the run)."""
    for widget in QApplication.allWidgets():
        if type(widget).__name__ == "NapariQtNotification":
            widget.hide()
        elif isinstance(widget, QLineEdit):
            widget.deselect()


def train_screenshot(folder: Path) -> Path:
    """The training widget after a small run on synthetic phantoms, with samples drawn from the
    new prior on the canvas."""
    viewer = napari.Viewer(title=f"napari-wsprior: {TRAIN_WIDGET}")
    output = Path(tempfile.gettempdir()) / "wsprior-docs" / "ws_small.safetensors"
    shutil.rmtree(output.parent, ignore_errors=True)  # a fresh run, not a resumed one
    try:
        viewer.window.resize(*WINDOW)
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN_WIDGET)
        widget.set_parameters({**SMALL_PRIOR, "output": str(output)})
        widget.run()
        wait(lambda: not widget.running, timeout_s=3600)
        samples = "prior samples (ws)"
        if samples not in viewer.layers:
            raise RuntimeError(f"training: no {samples!r} layer; status: {widget.status.value}")
        viewer.reset_view()
        settle()
        tidy_for_screenshot()
        settle(0.2)
        path = folder / "train_widget.png"
        viewer.screenshot(str(path), canvas_only=False)
        print(f"wrote {path} ({widget.status.value})")
        return path
    finally:
        viewer.close()


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "images"
    names = argv[2:] or [*TASKS, "train"]
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        train_screenshot(folder) if name == "train" else screenshot(name, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
