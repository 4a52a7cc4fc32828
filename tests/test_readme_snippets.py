"""The README's Python blocks run top to bottom in one napari console: one namespace, a
``viewer``, and the sample each napari block names opened before it (File → Open Sample).

Speed only (the code is run as written): the Python blocks' ``load_sample`` hands out centre
crops of the samples and ``wsprior.load_prior`` the tests' tiny prior, so that the diffusion
examples take seconds instead of minutes on a CPU. The napari blocks use the full samples.
"""
import re
from pathlib import Path

import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import wsprior  # noqa: E402
import wsprior.napari._sample_data  # noqa: E402,F401  (binds the real load_sample first)
from wsprior.data import samples  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
PLUGIN = "napari-wsprior"
CROP_PX = 48
OPEN_SAMPLE = re.compile(r"File → Open Sample → wsprior → (.+)$", re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def sample_key(block: str) -> str | None:
    """The sample a napari block says to open, by the start of its File → Open Sample name."""
    match = OPEN_SAMPLE.search(block)
    if match is None:
        return None
    from npe2 import PluginManager

    wanted = match.group(1).strip()
    manifest = PluginManager.instance().get_manifest(PLUGIN)
    (key,) = [sample.key for sample in manifest.contributions.sample_data
              if sample.display_name.startswith(wanted)]
    return key


@pytest.fixture
def quick(monkeypatch, tiny_prior):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: threads only contend on a busy CPU
    real = samples.load_sample

    def cropped(name):
        measurement, params, truth = real(name)
        return centre(measurement), params, centre(truth)

    monkeypatch.setattr(samples, "load_sample", cropped)
    monkeypatch.setattr(wsprior, "load_prior", lambda *args, **kwargs: tiny_prior)
    yield
    torch.set_num_threads(threads)


def centre(array):
    y, x = (max((n - CROP_PX) // 2, 0) for n in array.shape[-2:])
    return array[..., y:y + CROP_PX, x:x + CROP_PX]


def test_readme_python_blocks_run_in_order_in_one_console(make_napari_viewer, quick,
                                                          monkeypatch):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 6
    viewer = make_napari_viewer()
    namespace = {"viewer": viewer}
    for number, block in enumerate(blocks, start=1):
        key = sample_key(block)
        if key is not None:
            viewer.open_sample(PLUGIN, key)
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)

    for name in ("deblurred (rl)", "phase [rad] (tikhonov)", "Δn (tikhonov)"):
        layer = viewer.layers[name]
        assert [str(u) for u in layer.units][-2:] == ["micrometer"] * 2, name
    assert viewer.layers.extent.units is not None  # no "Inconsistent units across layers"
    from napari._vispy import canvas

    warned = []
    monkeypatch.setattr(canvas, "show_warning", warned.append)
    viewer.window._qt_viewer.canvas._update_world_units()
    assert warned == []
    assert namespace["mean"].shape == namespace["std"].shape == (CROP_PX, CROP_PX)
    assert namespace["dn"].shape[0] == 3
