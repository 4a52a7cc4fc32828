"""The samplers' default budgets, the WS schedule that ends at a noise level, and the expected
duration said before a job starts. (How fast and how good the budgets are is measured in
benchmarks/speed.py, never here.)"""
import math

import numpy as np
import pytest
import torch

import wsprior
from wsprior import expected_time
from wsprior.data.blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair
from wsprior.prior.diffusion_prior import DiffusionPrior
from wsprior.prior.sde import VPSDE
from wsprior.solvers import posterior
from wsprior.solvers.posterior import DEFAULT_SAMPLES, DEFAULT_STEPS, WARM_START_T, schedule
from wsprior.solvers.ws import FINAL_NOISE, WS_SAMPLES, WS_STEPS, WS_STEPS_BY_TASK

OPTICS = dict(na=0.8, wavelength_um=0.52, pixel_size_um=0.1)


@pytest.fixture(scope="module")
def image():
    measurement, _ = simulate_deblur_dehaze_pair((64, 64), WidefieldAcquisition(), seed=3)
    return measurement


@pytest.fixture
def evaluations(monkeypatch):
    """The list of the network's forward passes (their batch sizes) during the test."""
    calls = []
    original = DiffusionPrior.noise_prediction

    def counted(prior, x, t):
        calls.append(x.reshape(-1, *x.shape[-2:]).shape[0])
        return original(prior, x, t)
    monkeypatch.setattr(DiffusionPrior, "noise_prediction", counted)
    return calls


@pytest.mark.parametrize("options, expected", [
    (dict(method="ws"), WS_SAMPLES * WS_STEPS),
    (dict(method="ws", n_samples=3), 3 * WS_STEPS),
    (dict(method="ws", steps=2), WS_SAMPLES * 2),
    (dict(method="ws", start_from_noise=True), DEFAULT_SAMPLES * DEFAULT_STEPS),
    (dict(method="ddnm"), DEFAULT_SAMPLES * DEFAULT_STEPS),
])
def test_default_budgets_are_the_network_evaluations_made(image, tiny_prior, evaluations,
                                                          options, expected):
    wsprior.deblur_dehaze(image, prior=tiny_prior, **options, **OPTICS)
    assert len(evaluations) == expected
    assert WS_SAMPLES * WS_STEPS * 4 <= DEFAULT_SAMPLES * DEFAULT_STEPS   # ≥ 4× fewer


def test_idt_takes_its_own_ws_step_count(tiny_prior, evaluations):
    """IDT's default ws budget is 2 × 6 (``WS_STEPS_BY_TASK``); an explicit ``steps`` wins."""
    from wsprior.data.idt import led_ring

    rng = np.random.default_rng(0)
    images = 1 + 0.01 * rng.standard_normal((8, 48, 48))
    optics = dict(illumination_na=led_ring(8, 0.3), wavelength_um=0.53, na=0.4,
                  pixel_size_um=0.3, n_medium=1.33, z_um=[0.0], slice_thickness_um=1.0)
    wsprior.idt(images, prior=tiny_prior, **optics)
    assert WS_STEPS_BY_TASK["idt"] == 6 and len(evaluations) == WS_SAMPLES * 6
    evaluations.clear()
    wsprior.idt(images, prior=tiny_prior, steps=3, **optics)
    assert len(evaluations) == WS_SAMPLES * 3


def test_ws_schedule_runs_log_snr_uniform_from_the_warm_start_to_the_final_noise():
    sde = VPSDE()
    times = schedule(sde, WS_STEPS, True, "cpu", FINAL_NOISE).double()
    assert len(times) == WS_STEPS + 1 and bool((times[1:] < times[:-1]).all())
    assert abs(float(times[0]) - WARM_START_T) < 1e-5
    ratio = sde.sigma(times) / sde.alpha(times)
    assert abs(float(ratio[-1]) - FINAL_NOISE) < 1e-4 * FINAL_NOISE
    log_snr = -torch.log(ratio)
    np.testing.assert_allclose(torch.diff(log_snr).numpy(), float(log_snr[1] - log_snr[0]),
                               rtol=1e-4)
    earlier = schedule(sde, WS_STEPS, True, "cpu")       # no final noise: down to t_min
    assert abs(float(earlier[-1]) - sde.config.t_min) < 1e-6


def test_antithetic_draws_are_negated_noise_at_every_step(image, tiny_prior, monkeypatch):
    """Both samples of a pair draw the same fields with opposite signs, draw by draw."""
    fields = {}
    draw = posterior.PositionalNoise.__call__

    def recorded(self, like):
        out = draw(self, like)
        fields.setdefault(self.sign, []).append(out.clone())
        return out
    monkeypatch.setattr(posterior.PositionalNoise, "__call__", recorded)
    wsprior.deblur_dehaze(image, method="ws", prior=tiny_prior, n_samples=2, **OPTICS)
    assert len(fields[1.0]) == len(fields[-1.0]) == 1 + WS_STEPS
    for plus, minus in zip(fields[1.0], fields[-1.0]):
        assert float(plus.abs().max()) > 0
        torch.testing.assert_close(minus, -plus)


class FakeClock:
    """``perf_counter`` of a machine that needs ``cost`` seconds per pixel, plus ``start_up``
    on the first run."""

    def __init__(self, cost: float, start_up: float):
        self.now, self.cost, self.start_up, self.runs = 0.0, cost, start_up, 0

    def run(self, data, **params):
        self.now += self.cost * math.prod(data.shape[-2:]) + (self.start_up if not self.runs
                                                               else 0.0)
        self.runs += 1
        return data


@pytest.mark.parametrize("shape, core", [((512, 512), 2), ((3, 600, 700), 2),
                                         ((2, 3, 300, 200), 3), ((50, 40), 2)])
def test_expected_seconds_scale_the_crop_run_to_the_job_without_start_up_work(
        monkeypatch, shape, core):
    clock = FakeClock(cost=2e-6, start_up=5.0)
    monkeypatch.setattr(expected_time.time, "perf_counter", lambda: clock.now)
    seconds = expected_time.expected_seconds(clock.run, np.zeros(shape, np.float32),
                                             {"method": "ws", "progress": print}, core)
    images = math.prod(shape[:-core])
    assert clock.runs == 2
    assert seconds == pytest.approx(2e-6 * images * math.prod(shape[-2:]), rel=1e-9)


def test_expected_seconds_are_said_in_words():
    words = expected_time.describe_seconds
    assert (words(0.3), words(42), words(600), words(3 * 3600)) == (
        "under a second", "about 42 s", "about 10 min", "about 3.0 h")
