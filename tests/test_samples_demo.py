"""Bundled sample data: readable, parameters in the API's schema, and `wsprior demo` end to end."""
import pytest

from wsprior import cli
from wsprior.data.samples import SAMPLE_NAMES, load_sample
from wsprior.demo import run_demo


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_has_measurement_parameters_and_truth(name):
    measurement, params, truth = load_sample(name)
    assert measurement.ndim >= 2 and truth.ndim >= 2
    assert measurement.shape[-2:] == truth.shape[-2:]
    assert measurement.shape[-1] <= 512 and params["pixel_size_um"] > 0


def test_demo_writes_results_figure_and_beats_the_baselines(tmp_path, monkeypatch):
    rows = run_demo(tmp_path)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert "| ws |" in (tmp_path / "metrics.md").read_text().replace("  ", " ")
    for name in ("deblur_dehaze_wiener", "deblur_dehaze_rl", "tie_tikhonov", "idt_tikhonov",
                 "deblur_dehaze_ws", "tie_ws", "idt_ws"):
        assert (tmp_path / f"{name}.tif").exists()
    called = []   # the CLI runs the same job (not run twice here: the WS sampler takes a minute)
    monkeypatch.setattr("wsprior.demo.run_demo", lambda out, device: called.append((out, device)))
    assert cli.main(["demo", "-o", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    assert called == [(tmp_path / "cli", "cpu")]
    by_method = {(r["task"], r["method"]): r for r in rows}
    raw = by_method[("deblur_dehaze", "input (raw)")]["PSNR_dB"]
    assert by_method[("deblur_dehaze", "wiener")]["PSNR_dB"] > raw + 5
    assert by_method[("deblur_dehaze", "rl")]["PSNR_dB"] > raw + 5
    zero_tie = by_method[("tie", "zero estimate")]["phase_RMSE_rad"]
    assert by_method[("tie", "tikhonov")]["phase_RMSE_rad"] < 0.5 * zero_tie
    zero_idt = by_method[("idt", "zero estimate")]["dn_RMSE"]
    assert by_method[("idt", "tikhonov")]["dn_RMSE"] < 0.6 * zero_idt


def test_unknown_sample_name_is_a_clear_error():
    with pytest.raises(ValueError, match="sample must be one of"):
        load_sample("confocal")
