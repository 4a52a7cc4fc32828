"""Screenshots of the napari widgets on the bundled samples → ``docs/images/{task}_widget.png``,
``docs/images/train_widget.png`` and ``docs/images/all_widgets_1366x768.png``.

Opens napari, loads each sample through the plugin's File → Open Sample contribution, docks the
task's widget, runs its classical method and saves the main window (widget beside the input and
the result, shown side by side in napari's grid mode, with the scale bar in µm). The training
widget trains a small prior (3000 steps: minutes on a CPU) and shows samples drawn from it. The
last one docks all four widgets in a 1366 × 768 window. Needs a display; headless:

    xvfb-run -a -s "-screen 0 1366x768x24" python docs/make_screenshots.py [FOLDER] \
        [deblur_dehaze|tie|idt|train|all ...]
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
TASKS = {  # sample key: (widget name, method, output layer, depth shown (µm))
    "deblur_dehaze": ("Deblur + dehaze", "rl", "deblurred (rl)", None),
    "tie": ("TIE / Laplace phase", "tikhonov", "phase [rad] (tikhonov)", -2.0),  # z = −2 µm
    "idt": ("IDT", "tikhonov", "Δn (tikhonov)", 0.0),  # LED 1 (in focus) beside Δn at z = 0
}
TRAIN_WIDGET = "Train diffusion prior"
SMALL_PRIOR = dict(kind="ws", base_channels=16, synthetic_images=96, synthetic_size=64,
                   steps=3000, batch_size=16, patch_size=32, learning_rate=1e-3, n_samples=4,
                   sample_steps=50, device="auto")
WINDOW = (1800, 1000)
SMALL_SCREEN = (1366, 768)


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
        if plane is not None:  # the depth axis, shared by the stack and the result
            viewer.dims.set_point(list(viewer.dims.axis_labels).index("z"), plane)
        viewer.layers.selection.active = viewer.layers[output]
        grid = getattr(viewer.canvas, "grid", None) or viewer.grid  # napari ≥ 0.9: canvas.grid
        grid.enabled = True  # measurement and result side by side (the truth stays hidden)
        scale_bar(viewer).visible = True  # in µm: the layers carry napari units
        viewer.reset_view()
        settle()
        tidy_for_screenshot()
        path = folder / f"{task}_widget.png"
        viewer.screenshot(str(path), canvas_only=False)
        print(f"wrote {path} ({widget.status.value})")
        return path
    finally:
        viewer.close()


def scale_bar(viewer):
    """The scale-bar overlay (napari ≥ 0.9: ``viewer.canvas.overlays``; ``viewer.scale_bar``
    before, deprecated since)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    bar = getattr(overlays, "scale_bar", None)
    return viewer.scale_bar if bar is None else bar


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
    import torch

    torch.set_num_threads(1)  # a network this small trains fastest on one thread
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


def fit_view(viewer, layer) -> None:
    """Centre and zoom the 2D view on ``layer`` (reset_view fits all layers, hidden ones too)."""
    low, high = layer.extent.world[:, -2:]
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.camera.center = tuple((low + high) / 2)
    viewer.camera.zoom = 0.95 * min(canvas.height() / (high - low)[0],
                                    canvas.width() / (high - low)[1])


def all_widgets_screenshot(folder: Path) -> Path:
    """All four widgets docked in a 1366 × 768 window beside the three samples and a
    deblurred image: the forms scroll, Run and the status line stay in view."""
    viewer = napari.Viewer(title="napari-wsprior: all widgets at 1366 × 768")
    try:
        window = viewer.window._qt_window
        window.resize(*SMALL_SCREEN)
        for sample in TASKS:
            viewer.open_sample(PLUGIN, sample)
        docked = [viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]
                  for name, *_ in TASKS.values()]
        docked.append(viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN_WIDGET)[1])
        window.resize(*SMALL_SCREEN)
        deblur = docked[0]
        deblur.input.value = viewer.layers["deblur_dehaze"]
        deblur.fields["method"].widget.value = "rl"
        deblur.run()
        wait(lambda: not deblur.running)
        for layer in viewer.layers:
            layer.visible = layer.name == "deblurred (rl)"
        scale_bar(viewer).visible = True
        settle()
        fit_view(viewer, viewer.layers["deblurred (rl)"])
        settle()
        tidy_for_screenshot()
        settle(0.2)
        path = folder / "all_widgets_1366x768.png"
        viewer.screenshot(str(path), canvas_only=False)
        heights = ", ".join(f"{w.title} {w.native.parentWidget().height()} px" for w in docked)
        print(f"wrote {path}: window {window.width()} × {window.height()} px "
              f"(minimum {window.minimumSizeHint().height()} px high); docks {heights}")
        return path
    finally:
        viewer.close()


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "images"
    names = argv[2:] or [*TASKS, "train", "all"]
    folder.mkdir(parents=True, exist_ok=True)
    makers = {"train": train_screenshot, "all": all_widgets_screenshot}
    for name in names:
        makers[name](folder) if name in makers else screenshot(name, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
