"""The shipped priors' reconstruction quality on small crops of the bundled samples.

Every diffusion method is judged against the classical solution it starts from (Wiener for
deblur + dehaze, Tikhonov for TIE and IDT), with the tolerance it is allowed stated per method,
and each run has its control: the same run with the network's prediction zeroed
(``conftest.network_zeroed``), which must miss the bar the shipped prior clears. The tiny prior
trained in the test session cannot carry these tests: on deblur + dehaze its dps, score_ald and
joint runs are 1-3 dB *worse* than their Wiener warm start (128² simulated image, 20 steps).

Numbers quoted below were measured on these crops with the shipped priors (8750 training
steps), default settings (4 samples × 12 steps, seed 0).
"""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest

import wsprior
from conftest import network_zeroed
from test_deconvolution import band_error, haze_only_highpass
from wsprior import metrics
from wsprior.data.samples import load_sample

DEBLUR_CROP, TIE_CROP, IDT_CROP = 96, 96, 64


def centre_crop(array: np.ndarray, size: int) -> np.ndarray:
    ny, nx = array.shape[-2:]
    y0, x0 = (ny - size) // 2, (nx - size) // 2
    return np.ascontiguousarray(array[..., y0:y0 + size, x0:x0 + size])


def _cached_runs(solve):
    """``run(method, zeroed=False)``: ``solve(method)`` with the shipped prior, once per key."""
    cache = {}

    def run(method: str, zeroed: bool = False):
        if (method, zeroed) not in cache:
            with network_zeroed() if zeroed else contextlib.nullcontext():
                cache[method, zeroed] = solve(method)
        return cache[method, zeroed]
    return run


# -- deblur + dehaze ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deblur():
    image, params, truth = load_sample("deblur_dehaze")
    image, truth = centre_crop(image, DEBLUR_CROP), centre_crop(truth, DEBLUR_CROP)
    optics = {k: params[k] for k in ("na", "wavelength_um", "pixel_size_um")}
    wiener = wsprior.deblur_dehaze(image, method="wiener", **params)
    return SimpleNamespace(
        image=image, truth=truth, wiener=wiener,
        psnr=lambda estimate: metrics.psnr(truth, estimate),
        band=lambda estimate: band_error(truth, estimate, **optics),
        run=_cached_runs(lambda method: wsprior.deblur_dehaze(image, method=method,
                                                              prior="default", **params)))


#: The least PSNR gain over the Wiener warm start (dB) on the 96² crop; negative: the tolerance a
#: sampler may fall behind its warm start. Measured with the classical solvers of commit
#: c9ca104 (Wiener 18.07 dB) / of the lead's repair in progress (Wiener 21.39 dB): ws +3.5 /
#: +0.6, ddnm +1.6 / 0.0, joint +1.5 / +0.04, dps +2.8 / +1.2, score_ald −3.4 / −5.4 (one
#: Langevin step per noise level with 48 network evaluations stays far behind: README); with
#: the network zeroed −1.9 / −2.6, −0.6 / −2.8, −0.8 / −2.4, −6.8 / −10.2, −6.4 / −9.0.
#: (On the 128² crop dps was 1.8 dB *below* the c9ca104 Wiener: its gain here is this crop's.)
GAIN_OVER_WIENER_DB = {"ws": 0.0, "ddnm": -0.3, "joint": -0.3, "dps": 0.0, "score_ald": -6.0}


@pytest.mark.parametrize("method", GAIN_OVER_WIENER_DB)
def test_deblur_samplers_beat_their_wiener_start_and_the_zeroed_network_does_not(deblur, method):
    bar = deblur.psnr(deblur.wiener) + GAIN_OVER_WIENER_DB[method]
    out = deblur.run(method)
    assert out.shape == deblur.image.shape and out.dtype == np.float32
    assert deblur.psnr(out) > bar, (deblur.psnr(out), bar)
    assert deblur.psnr(deblur.run(method, zeroed=True)) < bar


#: Deblurring bar: the error in the band ½-¾ of the OTF cut-off 2NA/λ may exceed the Wiener
#: warm start's by 15 % at most. Measured (raw input 0.737; Wiener 0.584 at c9ca104 / 0.596
#: with the repair in progress): ws 0.53 / 0.48, ddnm 0.59 / 0.54, joint 0.63 / 0.53; zeroed
#: network 0.85 / 0.70, 0.77 / 0.70, 0.98 / 0.72 (bar 0.672 / 0.685); the haze-only
#: high-pass 0.737.
BAND_TOLERANCE = 1.15
NOT_DEBLURRING = pytest.mark.xfail(strict=True, reason=(
    "does not deblur: its band error ½-¾ of the cut-off is the raw input's (dps 0.74, "
    "score_ald 0.73 vs raw 0.737 and Wiener 0.584 on this crop; dps 0.82 vs Wiener 0.55 on the "
    "128² crop): its PSNR gain is haze removal. Reported with issue 23."))


@pytest.mark.parametrize("method", ["ws", "ddnm", "joint",
                                    pytest.param("dps", marks=NOT_DEBLURRING),
                                    pytest.param("score_ald", marks=NOT_DEBLURRING)])
def test_deblur_samplers_restore_the_band_above_half_the_cutoff(deblur, method):
    bar = BAND_TOLERANCE * deblur.band(deblur.wiener)
    assert deblur.band(deblur.run(method)) < bar, (deblur.band(deblur.run(method)), bar)
    assert deblur.band(deblur.run(method, zeroed=True)) > bar


def test_haze_only_highpass_fails_the_sampler_deblur_bar(deblur):
    """Removing the haze alone leaves the band untouched: its band error is the raw input's
    (0.737), 26 % above Wiener's (0.584) and 10 % above the bar (1.15 × Wiener's = 0.672).
    (In PSNR it beat this crop's Wiener by 2.9 dB, 20.99 vs 18.07 dB, before the classical
    solvers' repair: PSNR is no deblurring bar.)"""
    baseline = haze_only_highpass(deblur.image)
    assert deblur.band(baseline) > BAND_TOLERANCE * deblur.band(deblur.wiener)
    assert deblur.band(baseline) == pytest.approx(deblur.band(deblur.image), rel=0.01)


# -- TIE phase ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tie():
    stack, params, truth = load_sample("tie")
    stack, truth = centre_crop(stack, TIE_CROP), centre_crop(truth, TIE_CROP)
    return SimpleNamespace(
        error=lambda estimate: metrics.zero_mean_rmse(truth, estimate),
        tikhonov=wsprior.tie_phase(stack, method="tikhonov", **params),
        run=_cached_runs(lambda method: wsprior.tie_phase(stack, method=method, prior="default",
                                                          **params)))


def test_tie_ddnm_beats_tikhonov_and_the_zeroed_network_does_not(tie):
    """Bar: 10 % below Tikhonov's phase error. Measured 0.77× (seed 1: 0.74×); zeroed 2.0×."""
    bar = 0.9 * tie.error(tie.tikhonov)
    assert tie.error(tie.run("ddnm")) < bar
    assert tie.error(tie.run("ddnm", zeroed=True)) > bar


def test_tie_ws_is_no_worse_than_its_tikhonov_start(tie):
    """Bar: within 5 % of Tikhonov's error (measured 0.995×). This checks the data handling
    only: the zeroed network gives the same result (next test)."""
    out = tie.run("ws")
    assert abs(float(out.mean())) < 1e-5
    assert tie.error(out) < 1.05 * tie.error(tie.tikhonov)


@pytest.mark.xfail(strict=True, reason=(
    "TIE ws ignores the network: with the shipped prior and with its prediction zeroed the phase "
    "differs by < 0.002 rad (RMSE 0.995× Tikhonov's both; also the tiny prior). The whitened "
    "data step's precision |H|²/N (~1e7 at mid frequencies) swamps the prior's (≤ 3e4) at every "
    "frequency the classical coarse scales leave open. Reported with issue 23."))
def test_tie_ws_prior_beats_its_zeroed_control(tie):
    assert tie.error(tie.run("ws")) < 0.95 * tie.error(tie.run("ws", zeroed=True))


# -- IDT ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def idt():
    images, params, truth = load_sample("idt")
    images, truth = centre_crop(images, IDT_CROP), centre_crop(truth, IDT_CROP)
    return SimpleNamespace(
        error=lambda estimate: metrics.zero_mean_rmse(truth, estimate),
        tikhonov=wsprior.idt(images, method="tikhonov", **params),
        run=_cached_runs(lambda method: wsprior.idt(images, method=method, prior="default",
                                                    **params)))


#: Δn error relative to Tikhonov's that each sampler must stay below on the 64² crop (16 LEDs,
#: 3 slices). Measured: ws 0.90×, ddnm 1.08×; zeroed network 1.26×, 1.56×.
IDT_ERROR_VS_TIKHONOV = {"ws": 1.0, "ddnm": 1.2}


@pytest.mark.parametrize("method", IDT_ERROR_VS_TIKHONOV)
def test_idt_samplers_against_tikhonov_and_the_zeroed_network(idt, method):
    bar = IDT_ERROR_VS_TIKHONOV[method] * idt.error(idt.tikhonov)
    out = idt.run(method)
    assert out.shape == idt.tikhonov.shape and out.dtype == np.float32
    assert idt.error(out) < bar, idt.error(out) / idt.error(idt.tikhonov)
    assert idt.error(idt.run(method, zeroed=True)) > bar
