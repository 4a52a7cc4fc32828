import contextlib
import os

import numpy as np
import pytest
import torch

#: Environment switch equivalent to ``--zero-network`` (e.g. for IDE runs).
ZERO_NETWORK_ENV = "WSPRIOR_ZERO_NETWORK"


def pytest_addoption(parser):
    parser.addoption(
        "--zero-network", action="store_true", default=False,
        help="replace every learned prediction (DiffusionPrior.noise_prediction, and the "
             "Gaussian toy prior's exact one) by zeros for the whole run: every test of a "
             f"diffusion method must then fail. Same as {ZERO_NETWORK_ENV}=1.")


def zero_network_requested(config) -> bool:
    return bool(config.getoption("--zero-network")) or \
        os.environ.get(ZERO_NETWORK_ENV, "") not in ("", "0")


def zero_prediction(self, x, t):
    """A network that predicts no noise at all: ``x̂₀ = x_t / α_t``, no prior knowledge."""
    return torch.zeros_like(x)


@pytest.fixture(scope="session", autouse=True)
def _zero_network_switch(request):
    """``--zero-network``: the learned components answer zeros for the whole session (set up
    before every other fixture, so cached results and trained priors are affected too; training
    calls the network directly and still trains)."""
    if not zero_network_requested(request.config):
        yield
        return
    from test_prior_sampling import GaussianToyPrior
    from wsprior.prior.diffusion_prior import DiffusionPrior

    patch = pytest.MonkeyPatch()
    patch.setattr(DiffusionPrior, "noise_prediction", zero_prediction)
    patch.setattr(GaussianToyPrior, "noise_prediction", zero_prediction)
    yield
    patch.undo()


@contextlib.contextmanager
def network_zeroed(*priors):
    """The control of every test of a diffusion method: within the block every
    ``DiffusionPrior`` (shipped, tiny or haze prior) and each of ``priors`` (stand-ins such as
    the Gaussian toy prior) predicts zero noise."""
    from wsprior.prior.diffusion_prior import DiffusionPrior

    patch = pytest.MonkeyPatch()
    patch.setattr(DiffusionPrior, "noise_prediction", zero_prediction)
    own = [(prior, prior.__dict__.get("noise_prediction")) for prior in priors]
    for prior in priors:
        prior.noise_prediction = zero_prediction.__get__(prior)
    try:
        yield
    finally:
        patch.undo()
        for prior, before in own:
            if before is None:
                del prior.noise_prediction
            else:
                prior.noise_prediction = before


@pytest.fixture
def zero_network():
    """``with zero_network(*priors): ...`` runs its block with the network's prediction zeroed."""
    return network_zeroed


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def relative_adjoint_error(op, x: torch.Tensor, y: torch.Tensor) -> float:
    """|<Ax, y> − <x, Aᴴy>| / |<Ax, y>| in float64."""
    lhs = float((op.A(x) * y).sum())
    rhs = float((x * op.A_adjoint(y)).sum())
    return abs(lhs - rhs) / abs(lhs)


@pytest.fixture(scope="session")
def tiny_prior(tiny_prior_path):
    from wsprior.prior import load_prior

    return load_prior(tiny_prior_path)


@pytest.fixture(scope="session")
def tiny_prior_path(tmp_path_factory):
    """A tiny WS prior trained in-process (a few seconds) on synthetic microscopy phantoms:
    weak, but a real network with the shipped architecture family, SDE and noise family."""
    from wsprior.prior.network import UNetConfig
    from wsprior.prior.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("tiny_prior")
    config = TrainConfig(network=UNetConfig(base_channels=8, channel_multipliers=(1, 2),
                                            time_embedding=16, groups=4),
                         synthetic_images=24, synthetic_size=32, patch_size=16, batch_size=8,
                         steps=100, learning_rate=3e-3, ema_decay=0.9, device="cpu",
                         checkpoint_every=1000)
    torch.manual_seed(0)
    return train(config, folder / "tiny.safetensors", command="pytest")


@pytest.fixture
def notes(monkeypatch):
    """The napari plugin's notifications, captured: ``notes["error"]``, ``notes["info"]``."""
    from wsprior.napari import _common

    captured = {"error": [], "info": []}
    monkeypatch.setattr(_common, "show_error", captured["error"].append)
    monkeypatch.setattr(_common, "show_info", captured["info"].append)
    return captured
