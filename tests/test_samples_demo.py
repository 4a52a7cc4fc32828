"""Bundled sample data: readable, parameters in the API's schema, and `wsprior demo` end to end.

The demo runs on centre crops of the samples here: what only this test checks is the demo's
own plumbing (every method run and written, the figure, a metrics table that matches the
written results, the CLI entry point). The reconstruction quality of the classical solvers and
the shipped priors on these samples is tested elsewhere (test_napari_widgets.py on the full
samples, test_shipped_priors.py on crops, against the classical solution and a zeroed network).
"""
import re

import numpy as np
import pytest

import wsprior
from wsprior import cli, demo, io
from wsprior.data.samples import SAMPLE_NAMES, load_sample

CROPS = {"deblur_dehaze": 96, "tie": 96, "idt": 64}


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_has_measurement_parameters_and_truth(name):
    measurement, params, truth = load_sample(name)
    assert measurement.ndim >= 2 and truth.ndim >= 2
    assert measurement.shape[-2:] == truth.shape[-2:]
    assert measurement.shape[-1] <= 512 and params["pixel_size_um"] > 0


def _cropped_sample(name):
    measurement, params, truth = load_sample(name)
    size = CROPS[name]
    ny, nx = measurement.shape[-2:]
    window = (..., slice((ny - size) // 2, (ny + size) // 2), slice((nx - size) // 2, (nx + size) // 2))
    return np.ascontiguousarray(measurement[window]), params, np.ascontiguousarray(truth[window])


def _table_rows(path) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_demo_writes_every_method_its_figure_and_a_table_of_what_it_wrote(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(demo, "load_sample", _cropped_sample)
    rows = demo.run_demo(tmp_path, device="cpu")
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    table = _table_rows(tmp_path / "metrics.md")
    assert len(table) == len(rows) == sum(1 + len(m) for m in demo.METHODS.values())
    runners = {"deblur_dehaze": wsprior.deblur_dehaze, "tie": wsprior.tie_phase,
               "idt": wsprior.idt}
    for task, methods in demo.METHODS.items():
        measurement, params, truth = _cropped_sample(task)
        task_rows = {row["method"]: row for row in rows if row["task"] == task}
        baseline = next(v for k, v in task_rows.items() if k not in methods)
        for method in methods:
            written = io.read_image(tmp_path / f"{task}_{method}.tif")
            if method != "ws":   # what it wrote is the API's result for the sample's parameters
                expected = runners[task](measurement, method=method, device="cpu", **params)
                np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
            # and the table scores what it wrote
            scores = demo._score(task, truth, written)
            for key, value in scores.items():
                assert task_rows[method][key] == pytest.approx(value, rel=1e-6)
            line = next(r for r in table if r[:2] == [task, method])
            assert any(re.fullmatch(r"-?[\d.]+(e-?\d+)?", cell) for cell in line[2:])
            # every method beats doing nothing (the raw input / a zero estimate)
            key, value = next(iter(scores.items()))
            better = value > baseline[key] if key == "PSNR_dB" else value < baseline[key]
            assert better, (task, method, value, baseline[key])


def test_demo_command_runs_the_demo_with_its_options(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr("wsprior.demo.run_demo", lambda out, device: called.append((out, device)))
    assert cli.main(["demo", "-o", str(tmp_path / "cli"), "--device", "cpu"]) == 0
    assert called == [(tmp_path / "cli", "cpu")]


def test_unknown_sample_name_is_a_clear_error():
    with pytest.raises(ValueError, match="sample must be one of"):
        load_sample("confocal")
