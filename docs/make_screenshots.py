"""Screenshots of the napari widgets on the bundled samples → ``docs/images/{task}_widget.png``.

Opens napari, loads each sample through the plugin's File → Open Sample contribution, docks the
task's widget, runs its classical method and saves the main window (widget beside the input and
the result, shown side by side in napari's grid mode). Needs a display; headless:

    xvfb-run -a python docs/make_screenshots.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

PLUGIN = "napari-wsprior"
TASKS = {  # sample key: (widget name, method, output layer, input plane shown (µm or LED))
    "deblur_dehaze": ("Deblur + dehaze", "rl", "deblurred (rl)", None),
    "tie": ("TIE / Laplace phase", "tikhonov", "phase [rad] (tikhonov)", -2.0),  # z = −2 µm
    "idt": ("IDT", "tikhonov", "Δn (tikhonov)", 0.0),  # LED 0 beside the z = 0 µm slice
}
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


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        screenshot(task, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
