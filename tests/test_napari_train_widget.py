"""napari plugin: the prior-training dock widget → a loadable prior, samples, Cancel, bad input.

Needs napari + pytest-qt (the ``test`` extra) and a display (``xvfb-run -a python -m pytest``).
"""
import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import torch  # noqa: E402
from test_napari_widgets import PLUGIN, click  # noqa: E402

import wsprior  # noqa: E402
from wsprior.prior.train import training_state_files  # noqa: E402

WIDGET = "Train diffusion prior"
TIMEOUT_MS = 60_000
TINY = dict(base_channels=8, synthetic_images=6, synthetic_size=32, batch_size=4, patch_size=16,
            n_samples=3, sample_steps=4, device="cpu", seed=1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread (and OpenMP spinning on a busy 2-core machine
    costs seconds per step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trainer(make_napari_viewer):
    """(viewer, widget): the training widget docked from the manifest, with tiny settings."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.set_parameters(TINY)
    return viewer, widget


def run_to_end(qtbot, widget) -> None:
    click(qtbot, widget.run_button)
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_trains_a_loadable_prior_from_phantoms_and_a_layer(qtbot, trainer, notes, tmp_path):
    viewer, widget = trainer
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((2, 40, 40), dtype=np.float32), name="cells")
    widget.layer.value = viewer.layers["cells"]
    output = tmp_path / "priors" / "mine.safetensors"  # the folder does not exist yet
    widget.set_parameters({"steps": 8, "output": str(output)})
    run_to_end(qtbot, widget)

    assert notes["error"] == []
    assert any(str(output) in message for message in notes["info"])
    prior = wsprior.load_prior(output)
    meta = prior.metadata
    assert (meta.kind, meta.steps, meta.patch_size, meta.network.base_channels) == ("ws", 8, 16, 8)
    assert "synthetic" in meta.training_data and "2 planes from napari layer 'cells'" \
        in meta.training_data
    assert meta.training_command.startswith("napari widget, as wsprior train -o")
    assert json.loads(output.with_suffix(".json").read_text())["steps"] == 8

    samples = viewer.layers["prior samples (ws)"]  # side by side, like `wsprior sample`
    assert samples.data.shape == (16, 3 * 16 + 2 * 2) and np.isfinite(samples.data).all()
    assert samples.metadata["wsprior_prior"] == str(output)
    assert samples.metadata["wsprior_samples"] == 3
    assert tuple(samples.axis_labels) == ("y", "x")
    assert widget.progress.value == widget.progress.max
    assert widget.status.value.startswith("done in") and "mine.safetensors" in widget.status.value


def test_cancel_stops_within_a_few_steps_and_writes_no_prior(qtbot, trainer, notes, tmp_path):
    viewer, widget = trainer
    output = tmp_path / "cancelled.safetensors"
    widget.set_parameters({"steps": 1_000_000, "output": str(output)})  # hours if not cancelled
    before = len(viewer.layers)
    click(qtbot, widget.run_button)
    qtbot.waitUntil(lambda: "loss" in widget.status.value, timeout=TIMEOUT_MS)  # training
    click(qtbot, widget.cancel_button)
    qtbot.waitUntil(lambda: not widget.running, timeout=5_000)
    qtbot.wait(100)  # any late signal would have arrived

    assert not output.exists() and not output.with_suffix(".json").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written checkpoint either
    state, _, log = training_state_files(output)
    if state.exists():  # a periodic resume state is fine, but never one that claims the end
        assert wsprior.load_prior(state).metadata.steps < 1_000_000
    else:  # nothing to resume: no loss log of the cancelled steps either
        assert not log.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert len(viewer.layers) == before
    assert notes["error"] == [] and any("cancelled" in m for m in notes["info"])
    assert "cancelled" in widget.status.value and "no prior written" in widget.status.value
    assert widget.run_button.enabled and not widget.cancel_button.enabled


@pytest.mark.parametrize("change, message", [
    ({"patch_size": 20}, "multiple of 8"),
    ({"output": "{tmp}/a_file.txt/prior.safetensors"}, "a_file.txt is not a folder"),
    ({"output": "{tmp}/prior.pt"}, "must end in .safetensors"),
    ({"synthetic": False}, "Training data: tick"),
    ({"learning_rate": "fast"}, "Train diffusion prior: Learning rate: expected a number"),
    ({"device": "cuda"}, "Train diffusion prior: Device is 'cuda' but this computer has no CUDA"),
])
def test_bad_parameter_is_a_notification_and_writes_nothing(qtbot, trainer, notes, tmp_path,
                                                            change, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    viewer, widget = trainer
    (tmp_path / "a_file.txt").write_text("not a folder")
    widget.set_parameters({"steps": 2, "output": str(tmp_path / "prior.safetensors")})
    for name, value in change.items():  # as typed: text goes into the widget unparsed
        widget.fields[name].widget.value = value.format(tmp=tmp_path) \
            if isinstance(value, str) else value
    click(qtbot, widget.run_button)
    qtbot.wait(50)
    assert not widget.running
    assert len(notes["error"]) == 1 and message in notes["error"][0], notes["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt"]
    assert len(viewer.layers) == 0


def test_cancel_after_a_saved_state_keeps_the_log_of_its_steps(qtbot, trainer, notes, tmp_path,
                                                              monkeypatch):
    from wsprior.napari import _train

    _, widget = trainer
    output = tmp_path / "partial.safetensors"
    widget.set_parameters({"steps": 1_000_000, "output": str(output)})
    config = widget.training_config(widget.parameters())
    monkeypatch.setattr(_train, "TrainConfig", lambda **values: config.model_copy(
        update={"checkpoint_every": 3}))  # a state every 3 steps
    click(qtbot, widget.run_button)
    qtbot.waitUntil(lambda: "step 5/" in widget.status.value or "step 6/" in widget.status.value
                    or "step 7/" in widget.status.value, timeout=TIMEOUT_MS)
    click(qtbot, widget.cancel_button)
    qtbot.waitUntil(lambda: not widget.running, timeout=5_000)
    state, _, log = training_state_files(output)
    saved = wsprior.load_prior(state).metadata.steps
    steps = [int(row.split(",")[0]) for row in log.read_text().splitlines()[1:]]
    assert saved % 3 == 0 and steps == list(range(1, saved + 1))
    assert "kept for resume" in widget.status.value


def test_eta_is_smoothed_and_the_samples_take_the_training_layer_s_pixel(
        qtbot, trainer, notes, tmp_path):
    viewer, widget = trainer
    viewer.add_image(np.random.default_rng(0).random((2, 40, 40), dtype=np.float32),
                     name="cells", scale=(1, 0.065, 0.065), units=("pixel", "µm", "µm"))
    widget.layer.value = viewer.layers["cells"]
    widget.set_parameters({"steps": 6, "output": str(tmp_path / "p.safetensors")})
    seen, report = [], widget._on_progress

    def recorded(*args):
        report(*args)
        seen.append(widget.status.value)

    widget._on_progress = recorded
    run_to_end(qtbot, widget)
    assert notes["error"] == []
    etas = [text.split("ETA ")[1] for text in seen if "ETA " in text]
    assert etas[:2] == ["…", "…"] and all(":" in eta for eta in etas[2:6]), etas
    samples = viewer.layers["prior samples (ws)"]
    np.testing.assert_allclose(samples.scale, [0.065, 0.065])
    assert [str(u) for u in samples.units] == ["micrometer"] * 2


def test_resume_continues_and_unticking_it_starts_over(qtbot, trainer, notes, tmp_path):
    _, widget = trainer
    output = tmp_path / "resumable.safetensors"
    widget.set_parameters({"steps": 3, "n_samples": 0, "output": str(output)})
    run_to_end(qtbot, widget)
    assert "step 3" in widget.state_info.value
    log = training_state_files(output)[2]

    widget.set_parameters({"steps": 5})  # resume is ticked by default
    run_to_end(qtbot, widget)
    assert [row.split(",")[0] for row in log.read_text().splitlines()[1:]] == list("12345")

    widget.set_parameters({"kind": "conventional"})  # not the kind of the saved state
    click(qtbot, widget.run_button)
    assert not widget.running and "untick 'resume'" in notes["error"][-1]

    widget.set_parameters({"resume": False, "steps": 2})
    assert widget.state_info.value.startswith("discards")
    run_to_end(qtbot, widget)
    assert len(notes["error"]) == 1
    assert [row.split(",")[0] for row in log.read_text().splitlines()[1:]] == ["1", "2"]
    meta = wsprior.load_prior(output).metadata
    assert (meta.kind, meta.steps) == ("conventional", 2)


def test_fine_tunes_from_a_prior_with_its_architecture(qtbot, trainer, notes, tmp_path,
                                                       tiny_prior_path):
    _, widget = trainer
    output = tmp_path / "tuned.safetensors"
    widget.set_parameters({"steps": 2, "n_samples": 0, "output": str(output),
                           "base_channels": 16, "init_from": str(tiny_prior_path)})
    assert not widget.fields["base_channels"].widget.enabled  # the prior fixes the width
    run_to_end(qtbot, widget)

    assert notes["error"] == []
    start, meta = wsprior.load_prior(tiny_prior_path).metadata, wsprior.load_prior(output).metadata
    assert meta.network == start.network and meta.steps == start.steps + 2
    assert str(tiny_prior_path) in meta.initialized_from
    assert f"--init-from {tiny_prior_path}" in meta.training_command

    widget.set_parameters({"kind": "haze", "output": str(tmp_path / "other.safetensors")})
    click(qtbot, widget.run_button)
    assert not widget.running and "kind must match" in notes["error"][-1]


def test_real_micrographs_are_trained_on_and_recorded_with_their_licences(qtbot, trainer, notes,
                                                                         tmp_path):
    viewer, widget = trainer
    output = tmp_path / "real.safetensors"
    widget.set_parameters({"steps": 2, "real": True, "n_samples": 0, "output": str(output)})
    run_to_end(qtbot, widget)
    assert notes["error"] == []
    metadata = wsprior.load_prior(output).metadata
    assert "real images" in metadata.training_data and "--data synthetic real" in \
        metadata.training_command
    assert all(source["licence"] for source in metadata.training_sources)


def test_missing_real_micrographs_are_a_notification(qtbot, trainer, notes, tmp_path,
                                                     monkeypatch):
    from wsprior.data import specimens

    monkeypatch.setattr(specimens, "VENDORED_DIR", tmp_path / "installed_wheel_has_none")
    viewer, widget = trainer
    widget.set_parameters({"steps": 2, "real": True, "output": str(tmp_path / "p.safetensors")})
    click(qtbot, widget.run_button)
    qtbot.wait(50)
    assert not widget.running
    assert len(notes["error"]) == 1 and "real training images are missing" in notes["error"][0]
    assert not (tmp_path / "p.safetensors").exists()
