import numpy as np
import pytest
import torch


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
