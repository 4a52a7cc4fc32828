"""napari plugin: sample data → dock widget → Run → result layer, through the npe2 manifest.

Needs napari + pytest-qt (the ``test`` extra) and a display (``xvfb-run -a python -m pytest``).
"""
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qtpy.QtCore import Qt  # noqa: E402

from wsprior import api, cli, io, metrics  # noqa: E402
from wsprior.data.samples import load_sample, sample_dir  # noqa: E402
from wsprior.napari._deblur_dehaze import DeblurDehazeWidget  # noqa: E402
from wsprior.settings import DeblurDehazeSettings, TieSettings, validated  # noqa: E402

PLUGIN = "napari-wsprior"
WIDGETS = {"deblur_dehaze": "Deblur + dehaze", "tie": "TIE / Laplace phase", "idt": "IDT"}
SOLVE_TIMEOUT_MS = 60_000


@pytest.fixture
def task(make_napari_viewer):
    """``task(name)`` → (viewer, widget): the sample opened via File → Open Sample's
    contribution and the task's dock widget added from the manifest."""
    def open_task(name):
        viewer = make_napari_viewer()
        viewer.open_sample(PLUGIN, name)
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGETS[name])
        assert widget.input.value is viewer.layers[name]
        return viewer, widget
    return open_task


def click(qtbot, button):
    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)


def run_to_end(qtbot, viewer, widget, *, expect_eta=False):
    before = len(viewer.layers)
    click(qtbot, widget.run_button)
    if expect_eta:  # the api's progress callback reaches the GUI thread while it runs
        qtbot.waitUntil(lambda: "ETA" in widget.status.value, timeout=SOLVE_TIMEOUT_MS)
    qtbot.waitUntil(lambda: not widget.running, timeout=SOLVE_TIMEOUT_MS)
    return list(viewer.layers)[before:]


def test_samples_open_with_units_and_hidden_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in WIDGETS:
        viewer.open_sample(PLUGIN, name)
    measurement, params, truth = load_sample("tie")
    layer, truth_layer = viewer.layers["tie"], viewer.layers["tie truth: phase [rad]"]
    np.testing.assert_array_equal(layer.data, measurement)
    np.testing.assert_allclose(layer.scale, [2.0, 0.2, 0.2])
    np.testing.assert_allclose(layer.translate, [-2.0, 0.0, 0.0])
    assert layer.visible and not truth_layer.visible
    np.testing.assert_array_equal(truth_layer.data, truth)
    assert [str(u) for u in layer.units] == ["micrometer"] * 3
    np.testing.assert_allclose(viewer.layers["deblur_dehaze"].scale, [0.1, 0.1])
    np.testing.assert_allclose(viewer.layers["idt"].scale[-2:], [0.25, 0.25])
    assert viewer.layers["idt truth: Δn"].data.shape == (3, 256, 256)
    assert not viewer.layers["deblur_dehaze truth"].visible


def test_deblur_widget_rl_improves_psnr_with_progress(qtbot, task, notes):
    viewer, widget = task("deblur_dehaze")
    widget.fields["method"].widget.value = "rl"
    widget.fields["iterations"].widget.value = 25
    (out,) = run_to_end(qtbot, viewer, widget, expect_eta=True)
    assert notes["error"] == []
    image, _, truth = load_sample("deblur_dehaze")
    assert out.name == "deblurred (rl)"
    assert out.data.shape == image.shape
    np.testing.assert_allclose(out.scale, [0.1, 0.1])
    assert [str(u) for u in out.units] == ["micrometer"] * 2
    gain = metrics.psnr(truth, out.data) - metrics.psnr(truth, image)
    assert gain > 5, gain
    assert widget.progress.value == widget.progress.max


def test_deblur_widget_ws_with_tiny_prior_gives_mean_and_std_layers(qtbot, task, notes,
                                                                   tiny_prior_path):
    viewer, widget = task("deblur_dehaze")
    widget.fields["method"].set("ws")
    widget.fields["prior"].set(str(tiny_prior_path))
    widget.fields["steps"].set(5)
    widget.fields["n_samples"].set(2)
    widget.fields["return_std"].set(True)
    layers = run_to_end(qtbot, viewer, widget)
    assert notes["error"] == []
    image, _, truth = load_sample("deblur_dehaze")
    mean, std = layers
    assert mean.name == "deblurred (ws)" and std.name == "deblurred (ws) std"
    assert mean.data.shape == std.data.shape == image.shape
    np.testing.assert_allclose(std.scale, [0.1, 0.1])
    assert float(std.data.mean()) > 0
    gain = metrics.psnr(truth, mean.data) - metrics.psnr(truth, image)
    assert gain > 3, gain


def test_tie_widget_phase_beats_zero_estimate(qtbot, task, notes):
    viewer, widget = task("tie")
    (out,) = run_to_end(qtbot, viewer, widget)
    assert notes["error"] == []
    _, _, truth = load_sample("tie")
    assert out.name == "phase [rad] (tikhonov)"
    assert out.data.shape == truth.shape
    np.testing.assert_allclose(out.scale, [0.2, 0.2])
    error = metrics.zero_mean_rmse(truth, out.data)
    assert error < 0.5 * metrics.zero_mean_rmse(truth, np.zeros_like(truth)), error


def test_idt_widget_table_from_file_and_delta_n(qtbot, task, notes, tmp_path):
    viewer, widget = task("idt")
    images, params, truth = load_sample("idt")
    table = tmp_path / "leds.csv"
    np.savetxt(table, np.asarray(params["illumination_na"]), delimiter=",")
    widget.table_file.value = table
    assert widget.table_info.value.startswith("16 LEDs loaded from leds.csv"), widget.table_info.value
    (out,) = run_to_end(qtbot, viewer, widget)
    assert notes["error"] == []
    assert out.name == "Δn (tikhonov)"
    assert out.data.shape == truth.shape == (3, 256, 256)
    np.testing.assert_allclose(out.scale, [2.0, 0.25, 0.25])
    np.testing.assert_allclose(out.translate, [-2.0, 0.0, 0.0])
    error = metrics.zero_mean_rmse(truth, out.data)
    assert error < 0.5 * metrics.zero_mean_rmse(truth, np.zeros_like(truth)), error


def test_idt_table_with_wrong_shape_is_reported(task, notes, tmp_path):
    _, widget = task("idt")
    bad = tmp_path / "bad.txt"
    np.savetxt(bad, np.ones((4, 3)))
    widget.table_file.value = bad
    assert notes["error"] and "(L, 2)" in notes["error"][-1]
    assert widget.table_info.value.startswith("16 LEDs loaded from parameters")


def test_cancel_stops_promptly_and_adds_no_layer(qtbot, task, notes):
    viewer, widget = task("deblur_dehaze")
    widget.fields["method"].widget.value = "rl"
    widget.fields["iterations"].widget.value = 10000  # minutes of work if not cancelled
    before = len(viewer.layers)
    click(qtbot, widget.run_button)
    assert widget.running and widget.cancel_button.enabled and not widget.run_button.enabled
    qtbot.waitUntil(lambda: 0 < widget.progress.value, timeout=SOLVE_TIMEOUT_MS)
    start = time.perf_counter()
    click(qtbot, widget.cancel_button)
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert time.perf_counter() - start < 5
    qtbot.wait(100)  # any late signal would have arrived
    assert len(viewer.layers) == before
    assert notes["error"] == [] and any("cancelled" in m for m in notes["info"])
    assert "no layer added" in widget.status.value
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    # and the widget runs again afterwards
    widget.fields["method"].widget.value = "wiener"
    (out,) = run_to_end(qtbot, viewer, widget)
    assert out.name == "deblurred (wiener)"


def test_bad_wavelength_is_a_notification_not_a_layer(qtbot, task, notes):
    viewer, widget = task("tie")
    widget.fields["wavelength_um"].widget.value = 520  # nm typed into a µm field
    before = len(viewer.layers)
    click(qtbot, widget.run_button)
    qtbot.wait(50)
    assert not widget.running and len(viewer.layers) == before
    assert len(notes["error"]) == 1 and "wavelength_um" in notes["error"][0]
    assert "520" in notes["error"][0]


def test_method_list_marks_diffusion_methods_and_toggles_their_fields(qtbot, task, notes):
    viewer, widget = task("tie")
    combo = widget.fields["method"].widget
    assert set(combo.choices) == set(TieSettings.model_fields["method"].annotation.__args__)
    assert set(combo.choices) == set(api.available_methods("tie"))
    assert combo.value == "tikhonov"  # the classical default runs without a trained prior
    labels = {combo.native.itemData(i): combo.native.itemText(i) for i in range(combo.native.count())}
    assert "diffusion prior" in labels["ws"] and "diffusion prior" not in labels["tikhonov"]
    assert not any("not in this version" in label for label in labels.values())
    combo.value = "ws"
    assert widget.fields["steps"].widget.enabled and not widget.fields["regularization"].widget.enabled
    combo.value = "tikhonov"
    assert not widget.fields["steps"].widget.enabled and widget.fields["regularization"].widget.enabled
    combo.value = "ws"
    widget.fields["stochasticity"].set(0)
    assert widget.parameters()["stochasticity"] == 0
    assert widget.fields["start_from_noise"].widget.enabled
    combo.value = "dps"   # deterministic by construction: the field resets and is disabled
    assert widget.parameters()["stochasticity"] == "auto"
    assert not widget.fields["stochasticity"].widget.enabled


def test_pixel_size_prefilled_from_layer_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGETS["deblur_dehaze"])
    viewer.add_image(np.zeros((64, 64), np.float32), name="cells", scale=(65, 65),
                     units=("nm", "nm"))
    widget.input.value = viewer.layers["cells"]
    assert widget.fields["pixel_size_um"].get() == pytest.approx(0.065)
    viewer.add_image(np.zeros((64, 64), np.float32), name="plain", scale=(0.2, 0.2))  # no units
    widget.input.value = viewer.layers["plain"]
    assert widget.fields["pixel_size_um"].get() == pytest.approx(0.2)


def test_yaml_roundtrip_and_cli_schema(task, notes, tmp_path):
    viewer, widget = task("deblur_dehaze")
    values = {"method": "rl", "iterations": 37, "wavelength_um": 0.61, "na": 1.2,
              "pixel_size_um": 0.0645, "haze_sigma_um": 5.0, "haze_std": 0.05,
              "regularization": 0.002, "tile_size": 256, "device": "cpu", "steps": 50}
    widget.set_parameters(values)
    saved = widget.parameters()
    path = widget.save_parameters(tmp_path / "params.yaml")
    written = io.read_parameters(path)
    assert written == saved and {k: written[k] for k in values} == values
    validated(DeblurDehazeSettings, **written)  # the CLI's --config schema

    fresh = DeblurDehazeWidget(viewer)  # a second, undocked instance with the defaults
    assert fresh.parameters() != saved
    fresh.load_parameters(path)
    assert fresh.parameters() == saved

    path.write_text(path.read_text() + "wavelength_nm: 520\n")
    with pytest.raises(ValueError, match="unknown parameter"):
        fresh.load_parameters(path)


def test_tie_yaml_runs_in_the_cli(task, notes, tmp_path):
    _, widget = task("tie")
    widget.fields["method"].widget.value = "tikhonov"
    path = widget.save_parameters(tmp_path / "tie.yaml")
    validated(TieSettings, **io.read_parameters(path))
    out = tmp_path / "phase.tif"
    assert cli.main(["tie", str(sample_dir() / "tie.tif"), "-o", str(out), "--config", str(path)]) == 0
    assert io.read_image(out).shape == (384, 384)
