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


def units(layer) -> list[str]:
    return [str(u) for u in layer.units]


def unit_warnings(viewer, monkeypatch) -> list[str]:
    """What napari's canvas warns about the layers' units when it next draws."""
    from napari._vispy import canvas

    warnings = []
    monkeypatch.setattr(canvas, "show_warning", warnings.append)
    viewer.window._qt_viewer.canvas._update_world_units()
    return warnings


def test_samples_open_with_units_and_hidden_truth(make_napari_viewer, monkeypatch):
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
    assert units(layer) == ["micrometer"] * 3
    np.testing.assert_allclose(viewer.layers["deblur_dehaze"].scale, [0.1, 0.1])
    assert not viewer.layers["deblur_dehaze truth"].visible
    for each in viewer.layers:  # every sample layer in µm, its axes named
        assert units(each)[-2:] == ["micrometer"] * 2, each.name
        assert tuple(each.axis_labels[-2:]) == ("y", "x"), each.name

    # IDT: LED images taken in the focal plane, (LED, z = 0, Y, X): the LED axis has a slider
    # of its own, the depth axis is shared with the TIE planes and the Δn slices
    leds, dn_truth = viewer.layers["idt"], viewer.layers["idt truth: Δn"]
    images, _, idt_truth = load_sample("idt")
    np.testing.assert_array_equal(leds.data[:, 0], images)
    assert tuple(leds.axis_labels) == ("LED", "z", "y", "x")
    assert units(leds) == ["pixel"] + ["micrometer"] * 3
    np.testing.assert_allclose(leds.scale[-2:], [0.25, 0.25])
    assert dn_truth.data.shape == (3, 256, 256) and units(dn_truth) == ["micrometer"] * 3
    np.testing.assert_allclose(dn_truth.translate[0], -2.0)
    assert tuple(viewer.dims.axis_labels) == ("LED", "z", "y", "x")
    assert viewer.layers.extent.units is not None
    assert unit_warnings(viewer, monkeypatch) == []


def test_sample_menu_names_physical_parameters():
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest(PLUGIN)
    names = {sample.key: sample.display_name for sample in manifest.contributions.sample_data}
    assert "NA 0.8" in names["deblur_dehaze"] and "λ 0.52 µm" in names["deblur_dehaze"]
    assert "z −2, 0, 2 µm" in names["tie"] and "λ 0.53 µm" in names["tie"]
    assert "16 LEDs" in names["idt"] and "λ 0.53 µm" in names["idt"]


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


# The WS widget (mean and std layers, equal to the API's, beating Wiener unlike a zeroed
# network) and sampler cancellation: tests/test_napari_inputs.py.


def test_tie_widget_phase_beats_zero_estimate(qtbot, task, notes):
    viewer, widget = task("tie")
    (out,) = run_to_end(qtbot, viewer, widget)
    assert notes["error"] == []
    _, _, truth = load_sample("tie")
    assert out.name == "phase [rad] (tikhonov)"
    assert out.data.shape == truth.shape
    np.testing.assert_allclose(out.scale, [0.2, 0.2])
    assert units(out) == ["micrometer"] * 2 and tuple(out.axis_labels) == ("y", "x")
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
    # its slices on the depth axis (µm), not on the LED images' slider; the truth's colours
    assert tuple(out.axis_labels) == ("z", "y", "x") and units(out) == ["micrometer"] * 3
    assert tuple(viewer.dims.axis_labels) == ("LED", "z", "y", "x")
    assert out.colormap.name == viewer.layers["idt truth: Δn"].colormap.name


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
    assert notes["error"] == ["TIE phase: Wavelength (µm) must lie in [0.2, 2]; got 520"]


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
    values = {"method": "rl", "iterations": 37, "wavelength_um": 0.61, "na": 0.95,
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
    assert fresh.parameters()["iterations"] == "auto"   # the spin box at 0
    validated(DeblurDehazeSettings, **fresh.parameters())
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


# ------------------------------------------------------------------------ layout and screen
DOCKED = [*WIDGETS.values(), "Train diffusion prior"]
SMALL_SCREEN = (1366, 768)
WINDOW_FRAME_PX = 60
"""A desktop's title bar and task bar: what a 768-px screen leaves to the napari window."""


def settle(qtbot, ms=200):
    qtbot.wait(ms)


def test_all_four_widgets_docked_fit_a_1366x768_screen(qtbot, make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*SMALL_SCREEN)
    for name in WIDGETS:
        viewer.open_sample(PLUGIN, name)
    docks = [viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in DOCKED]
    window.resize(*SMALL_SCREEN)
    settle(qtbot)
    height = SMALL_SCREEN[1]
    assert window.minimumSizeHint().height() <= height - WINDOW_FRAME_PX
    assert window.height() <= height and window.width() <= SMALL_SCREEN[0]
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= 400, canvas.width()  # the image keeps most of the width
    for dock, widget in docks:
        assert dock.minimumSizeHint().height() <= 150, (dock.name, dock.minimumSizeHint())
        assert dock.sizeHint().height() <= height, (dock.name, dock.sizeHint())
        for button in (widget.run_button, widget.cancel_button, widget.progress):
            # always in view below the scrolling form, inside the window
            corner = button.native.mapTo(window, button.native.rect().bottomRight())
            assert button.native.isVisible() and window.rect().contains(corner), dock.name
        assert widget.form.native.verticalScrollBar().maximum() > 0  # the form scrolls


def test_a_long_status_line_neither_widens_nor_heightens_the_dock(qtbot, make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*SMALL_SCREEN)
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGETS["idt"])
    settle(qtbot)
    width, minimum = dock.width(), dock.minimumSizeHint().height()
    widget.status.value = "failed — " + "a very long message about what went wrong " * 12
    settle(qtbot)
    assert dock.width() == width and dock.minimumSizeHint().height() == minimum
    assert widget.status.native.toolTip() == widget.status.value  # elided, whole in the tooltip


# ----------------------------------------------------------------------------------- units
def test_results_beside_every_sample_keep_consistent_units(qtbot, make_napari_viewer, notes,
                                                           monkeypatch):
    viewer = make_napari_viewer()
    for name in WIDGETS:
        viewer.open_sample(PLUGIN, name)
    for name, method in (("deblur_dehaze", "wiener"), ("tie", "tikhonov"), ("idt", "tikhonov")):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGETS[name])
        widget.input.value = viewer.layers[name]
        widget.fields["method"].set(method)
        (out,) = run_to_end(qtbot, viewer, widget)
        assert units(out)[-2:] == ["micrometer"] * 2, out.name
        assert viewer.layers.extent.units is not None, out.name
    assert notes["error"] == []
    assert unit_warnings(viewer, monkeypatch) == []


def test_idt_result_of_a_plain_led_stack_gets_its_own_depth_axis(qtbot, make_napari_viewer,
                                                                 notes):
    viewer = make_napari_viewer()
    images, params, _ = load_sample("idt")
    viewer.add_image(images, name="my leds", scale=(1.0, 0.25, 0.25))  # (L, Y, X), no units
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGETS["idt"])
    widget.set_parameters({k: v for k, v in params.items() if k in widget.fields})
    (out,) = run_to_end(qtbot, viewer, widget)
    assert notes["error"] == []
    assert out.data.shape == (3, 1, 256, 256)  # Δn slices × one plane spanning all 16 LEDs
    assert tuple(out.axis_labels)[0] == "z" and tuple(out.axis_labels)[-2:] == ("y", "x")
    np.testing.assert_allclose(out.scale[:2], [2.0, 16.0])
    np.testing.assert_allclose(out.translate[:2], [-2.0, 7.5])
    viewer.dims.set_point(1, 15)  # the last LED: the result is still shown
    assert not out._slice.empty


def test_idt_permittivity_with_uncertainty_gives_real_imag_and_std_layers(
        qtbot, task, notes, tiny_prior_path):
    viewer, widget = task("idt")
    widget.set_parameters({"method": "ws", "prior": str(tiny_prior_path), "steps": 2,
                           "n_samples": 2, "return_std": True, "components": "permittivity"})
    layers = run_to_end(qtbot, viewer, widget)
    assert notes["error"] == []
    real, imag, std = layers
    assert (real.name, imag.name, std.name) == ("Δε real (ws)", "Δε imag (ws)", "Δε (ws) std")
    leds, params, _ = load_sample("idt")
    mean, spread = api.idt(leds, **{**params, **widget.parameters()})
    for layer, expected in ((real, mean.real), (imag, mean.imag), (std, spread)):
        assert layer.data.shape == (3, 256, 256), layer.name  # not mean and std stacked
        np.testing.assert_allclose(layer.data, expected, rtol=1e-4, atol=1e-7)
    assert float(std.data.min()) >= 0 and float(std.data.max()) > 0
    assert units(real) == ["micrometer"] * 3


# -------------------------------------------------------------------------------- messages
@pytest.mark.parametrize("name, change, expected", [
    ("deblur_dehaze", {"na": 2.0}, "Deblur + dehaze: Numerical aperture (NA) must lie in "
                                   "(0, 1.7]; got 2"),
    ("idt", {"na": 1.5}, "IDT: Numerical aperture (NA) must lie between 0 and n medium "
                         "(1.33); got 1.5"),
    ("tie", {"z_um": [-2.0, 2.0]}, "TIE phase: The stack 'tie' has 3 planes but plane defocus "
                                   "z (µm) lists 2 values: the stack needs one plane per "
                                   "defocus value"),
    ("tie", {"method": "ws", "prior": "/nowhere/mine.safetensors"},
     "TIE phase: Prior file (.safetensors): /nowhere/mine.safetensors does not exist"),
    ("idt", {"slice_thickness_um": -1.0}, "IDT: Slice thickness (µm) must be > 0; got -1"),
    ("idt", {"slice_thickness_um": [1.0, 2.0]},
     "IDT: Slice thickness (µm) needs one value, or one per slice depth (3 in slice depths z "
     "(µm)); got 2 values"),
])
def test_errors_use_the_widget_s_words_before_the_run(qtbot, task, notes, name, change,
                                                      expected):
    viewer, widget = task(name)
    widget.set_parameters(change)
    before = len(viewer.layers)
    click(qtbot, widget.run_button)
    qtbot.wait(50)
    assert not widget.running and len(viewer.layers) == before
    (message,) = notes["error"]
    assert message.startswith(expected), message
    for internal in ("axis -3", "parameters:", "na must", "_um", "n_medium"):
        assert internal not in message, message


def test_cuda_without_a_gpu_is_reported_before_the_run(qtbot, task, notes, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _, widget = task("tie")
    widget.fields["device"].set("cuda")
    click(qtbot, widget.run_button)
    assert not widget.running
    assert notes["error"][0].startswith("TIE phase: Device is 'cuda' but this computer has no "
                                        "CUDA GPU"), notes["error"]


def test_files_that_cannot_be_written_or_read_are_messages_not_tracebacks(task, notes, tmp_path,
                                                                          monkeypatch):
    _, widget = task("tie")
    target = tmp_path / "read_only" / "tie.yaml"
    target.parent.mkdir()
    with monkeypatch.context() as patch:  # a folder the user may not write to (tests run as root)
        patch.setattr(io.os, "access", lambda path, mode: False)
        assert not widget._guarded(lambda: widget.save_parameters(target))
    assert notes["error"] == [f"TIE phase: Cannot write tie.yaml: {target.parent} is not "
                              f"writable"]
    assert list(target.parent.iterdir()) == []

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied", str(target))
    monkeypatch.setattr(io, "read_parameters", denied)  # e.g. a file of another user
    assert not widget._guarded(lambda: widget.load_parameters(target))
    assert notes["error"][-1] == f"TIE phase: {target}: Permission denied"
    widget.save_parameters(tmp_path / "new folder" / "tie.yaml")  # its folder is created
    assert (tmp_path / "new folder" / "tie.yaml").is_file()


def test_deblur_offers_one_of_wiener_and_tikhonov(task, tmp_path, notes):
    _, widget = task("deblur_dehaze")
    combo = widget.fields["method"].widget
    assert "wiener" in combo.choices and "tikhonov" not in combo.choices
    path = tmp_path / "old.yaml"
    path.write_text("method: tikhonov\n")  # the same solver's other name loads as wiener
    widget.load_parameters(path)
    assert widget.parameters()["method"] == "wiener"


def test_seed_and_idt_output_have_tooltips(task):
    _, widget = task("idt")
    assert "same seed" in widget.fields["seed"].widget.tooltip
    assert "Δn" in widget.fields["components"].widget.tooltip


def test_eta_waits_for_a_few_steps_and_ignores_a_slow_start_and_a_slow_step():
    from wsprior.napari._eta import EtaEstimate

    eta = EtaEstimate()
    # start-up (prior loading, warm start) took 30 s, then steps of 1 s each
    estimates = [eta.update(done, 48, 30.0 + done) for done in range(1, 12)]
    assert estimates[:2] == [None, None]
    assert all(abs(e - (48 - done)) < 1e-9 for done, e in enumerate(estimates[2:], start=3))
    training = EtaEstimate()
    for step in range(1, 101):  # 100 steps of 1 s, then one of 6 s (a checkpoint written)
        steady = training.update(step, 10_000, float(step))
    slow = training.update(101, 10_000, 106.0)
    assert abs(steady - 9_900) < 1e-6 and slow < 1.15 * steady


def test_deblur_asks_for_the_immersion_medium_of_an_oil_objective(qtbot, task, notes):
    if "n_medium" not in DeblurDehazeSettings.model_fields:
        pytest.skip("these settings have no immersion medium")
    _, widget = task("deblur_dehaze")
    widget.set_parameters({"na": 1.4})
    click(qtbot, widget.run_button)
    widget.set_parameters({"n_medium": 1.33})
    click(qtbot, widget.run_button)
    assert not widget.running
    assert notes["error"] == [
        "Deblur + dehaze: Numerical aperture (NA) 1.4 needs an immersion medium: set "
        "n immersion (1.33 water, 1.515 oil)",
        "Deblur + dehaze: Numerical aperture (NA) must lie below n immersion (1.33); got 1.4"]
