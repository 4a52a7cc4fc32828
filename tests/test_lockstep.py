"""The windows of a tile batch sampled together, one batched network forward per step
(wsprior.solvers.lockstep)."""
import threading

import numpy as np
import pytest
import torch

from wsprior.data.blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair
from wsprior.physics.blur_haze import make_psf
from wsprior.settings import DeblurDehazeSettings, validated
from wsprior.solvers import sampler_tiles
from wsprior.solvers.lockstep import LockstepPrior, run_in_lockstep
from wsprior.tiling import Window

WINDOWS, EDGE, STEPS, SAMPLES = 3, 64, 4, 2


def batches_seen(prior):
    """The batch size of every network forward of ``prior`` (a list filled as it runs)."""
    sizes = []
    handle = prior.network.register_forward_hook(lambda module, args, out:
                                                 sizes.append(args[0].shape[0]))
    return sizes, handle


@pytest.mark.parametrize("method", ["ws", "score_ald", "dps", "ddnm", "joint"])
def test_batched_windows_equal_one_by_one(tiny_prior, monkeypatch, method):
    acq = WidefieldAcquisition()
    image, _ = simulate_deblur_dehaze_pair((EDGE * WINDOWS, EDGE), acq, seed=5)
    windows = torch.as_tensor(image, dtype=torch.float32).reshape(WINDOWS, 1, EDGE, EDGE)
    optics = dict(na=acq.na, wavelength_um=acq.wavelength_um, pixel_size_um=acq.pixel_size_um)
    settings = validated(DeblurDehazeSettings, method=method, steps=STEPS, n_samples=SAMPLES, seed=1,
                         haze_sigma_um=acq.haze_sigma_um, **optics)
    operator = sampler_tiles.DeblurSamplerTiles(make_psf(**optics), settings, tiny_prior)
    params = operator.estimate(windows)
    where = [Window((i,), (EDGE * i, 0), (0, EDGE, 0, EDGE)) for i in range(WINDOWS)]

    sizes, handle = batches_seen(tiny_prior)
    try:
        alone = operator(windows, params, where)
        alone_sizes = list(sizes)
        sizes.clear()
        monkeypatch.setattr(sampler_tiles, "LOCKSTEP_DEVICES", ("cpu",))
        together = operator(windows, params, where)
    finally:
        handle.remove()
    # Batched and single convolutions round differently (~1e-7); Score-ALD's few clamped
    # pixels can flip on that, so a handful of pixels may differ.
    differ = ~np.isclose(together.numpy(), alone.numpy(), rtol=1e-4, atol=1e-5)
    assert differ.mean() < 1e-3
    assert set(alone_sizes) == {1}
    if method == "dps":   # gradients through the network: each window on its own
        assert sorted(sizes) == sorted(alone_sizes)
    else:
        assert sizes == [WINDOWS] * STEPS * SAMPLES


class _Doubling:
    """A stand-in prior: ``noise_prediction`` doubles its input, counting forwards."""

    def __init__(self):
        self.batches = []

    def noise_prediction(self, x, t):
        self.batches.append(x.shape[0])
        return 2 * x


def test_lockstep_batches_calls_and_keeps_each_threads_result():
    shared = LockstepPrior(_Doubling(), 4)
    tasks = [lambda i: [float(shared.noise_prediction(torch.full((1, 2, 2), float(i + k)), 0.5)
                                .mean()) for k in range(3)]] * 4
    results = run_in_lockstep(tasks, [shared])
    assert results == [[2.0 * (i + k) for k in range(3)] for i in range(4)]
    assert shared._prior.batches == [4, 4, 4] and shared.calls == 3


def test_an_error_in_one_window_stops_all_and_is_raised():
    shared = LockstepPrior(_Doubling(), 3)
    before = threading.active_count()

    def task(index):
        for step in range(5):
            if index == 1 and step == 2:
                raise ValueError("window 1 diverged")
            shared.noise_prediction(torch.ones(1, 2, 2), 0.5)

    with pytest.raises(ValueError, match="window 1 diverged"):
        run_in_lockstep([task] * 3, [shared])
    assert threading.active_count() == before
