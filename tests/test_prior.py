"""The prior: SDE facts, training that learns, checkpoints that refuse bad files."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from wsprior import io
from wsprior.prior import load_prior
from wsprior.prior.network import UNet, UNetConfig
from wsprior.prior.sde import VPSDE, NoiseFamilyConfig, SDEConfig, sample_structured_noise
from wsprior.prior.train import TrainConfig, train, training_state_files

TINY = UNetConfig(base_channels=8, channel_multipliers=(1, 2), time_embedding=16, groups=4)


def test_marginal_matches_quadrature_and_a_simulation_of_the_sde():
    """α_t and σ_t against independent calculations: ``exp(−½∫β)`` by numerical quadrature of
    the linear β(t), and the mean and variance at t = 0.3 and 1 of 20 000 Euler–Maruyama paths
    of ``dx = −½β x dt + sqrt(β) dw`` started at x₀ = 1.5 (K = I: K only colours the noise)."""
    from scipy.integrate import quad

    sde = VPSDE(SDEConfig())
    c = sde.config
    for t in (0.05, 0.3, 0.6, 1.0):
        integral, _ = quad(lambda s: c.beta_min + s * (c.beta_max - c.beta_min), 0.0, t)
        alpha = float(sde.alpha(torch.tensor(t, dtype=torch.float64)))
        sigma = float(sde.sigma(torch.tensor(t, dtype=torch.float64)))
        assert alpha == pytest.approx(np.exp(-0.5 * integral), rel=1e-9)
        assert sigma == pytest.approx(np.sqrt(1 - np.exp(-integral)), rel=1e-9)
    assert sde.alpha(torch.tensor(1.0)) < 0.01  # x_1 is (almost) pure structured noise

    rng = np.random.default_rng(0)
    x0, steps = 1.5, 4000
    x = np.full(20_000, x0)
    dt = 1.0 / steps
    checkpoints = {int(0.3 * steps): 0.3, steps: 1.0}
    for i in range(steps):
        beta = c.beta_min + (i + 0.5) * dt * (c.beta_max - c.beta_min)
        x = x - 0.5 * beta * x * dt + np.sqrt(beta * dt) * rng.standard_normal(x.size)
        if i + 1 in checkpoints:
            t = torch.tensor(checkpoints[i + 1], dtype=torch.float64)
            alpha, sigma = float(sde.alpha(t)), float(sde.sigma(t))
            assert abs(x.mean() - alpha * x0) < 4 * sigma / np.sqrt(x.size) + 0.01
            assert x.var() == pytest.approx(sigma ** 2, rel=0.04)


def test_whitened_score_target_is_per_sample():
    sde = VPSDE(SDEConfig())
    noise = torch.randn(3, 1, 8, 8)
    score = sde.whitened_score(noise, torch.tensor([0.1, 0.5, 0.9]))
    expected = -(sde.beta(torch.tensor(0.5)) / sde.sigma(torch.tensor(0.5))) * noise[1]
    assert torch.allclose(score[1], expected)  # per-sample factor, no cross-batch broadcast
    x0 = torch.ones(3, 1, 8, 8)
    perturbed = sde.perturb(x0, torch.tensor([0.1, 0.5, 0.9]), noise)
    t = torch.tensor(0.9)
    assert torch.allclose(perturbed[2], sde.alpha(t) * x0[2] + sde.sigma(t) * noise[2])


def test_noise_family_draws_different_structures_and_white_is_identity():
    gen = torch.Generator().manual_seed(0)
    structured = sample_structured_noise(NoiseFamilyConfig(), (32, 1, 32, 32), gen)
    spectra = torch.fft.fft2(structured).abs() ** 2
    low, high = spectra[..., :3, :3].mean((-1, -2, -3)), spectra[..., 14:18, 14:18].mean((-1, -2, -3))
    assert (low / high).std() > 1.0  # widths vary per sample
    white = sample_structured_noise(NoiseFamilyConfig(kind="white"), (4, 1, 8, 8),
                                    torch.Generator().manual_seed(0))
    assert torch.equal(white, torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(0)))


def test_network_keeps_shape_and_rejects_indivisible_sizes():
    net = UNet(TINY)
    assert net(torch.randn(2, 1, 16, 24), torch.rand(2)).shape == (2, 1, 16, 24)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 1, 15, 16), torch.rand(1))


@pytest.fixture(scope="module")
def disc_prior(tmp_path_factory):
    """A tiny prior trained in-process on images of a bright disc on a dark background."""
    folder = tmp_path_factory.mktemp("discs")
    yy, xx = np.mgrid[:16, :16]
    disc = np.where((yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 16, 1.0, 0.0)
    rng = np.random.default_rng(0)
    stack = (disc[None] + 0.05 * rng.standard_normal((64, 16, 16))).astype(np.float32)
    io.write_image(folder / "discs.tif", stack)
    config = TrainConfig(network=TINY, data=[str(folder / "discs.tif")], patch_size=16,
                         batch_size=16, steps=150, learning_rate=3e-3, ema_decay=0.9,
                         device="cpu", checkpoint_every=100)
    return load_prior(train(config, folder / "disc.safetensors", command="pytest"))


def test_tiny_trained_prior_moves_samples_toward_the_data(disc_prior, zero_network):
    """Data: +1 inside the disc, −1 outside (scaled to [-1, 1]). Bar: mean contrast > 0.5
    (measured 0.93); the zeroed network's samples, pure noise, do not reach it (−0.04)."""
    yy, xx = np.mgrid[:16, :16]
    inside = torch.from_numpy((yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 9)
    outside = torch.from_numpy((yy - 7.5) ** 2 + (xx - 7.5) ** 2 > 36)

    def contrast(samples):
        return float(samples[:, inside].mean() - samples[:, outside].mean())
    assert contrast(disc_prior.sample((16, 16, 16), steps=20, seed=3)) > 0.5
    with zero_network():
        assert contrast(disc_prior.sample((16, 16, 16), steps=20, seed=3)) < 0.5


def test_checkpoint_records_training(disc_prior):
    meta = disc_prior.metadata
    assert meta.steps == 150 and meta.training_command == "pytest" and meta.kind == "ws"
    assert meta.training_device == "cpu" and len(meta.training_data_sha256) == 64


def test_training_resumes_from_its_state_file(tmp_path):
    config = TrainConfig(network=TINY, synthetic_images=4, synthetic_size=32, patch_size=16,
                         batch_size=4, steps=6, checkpoint_every=3, device="cpu")
    output = tmp_path / "resumable.safetensors"
    train(config, output, command="first")
    first = load_prior(output)
    train(config.model_copy(update={"steps": 9}), output, command="second")
    log = (tmp_path / "resumable.loss.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == list(range(1, 10))  # 6 + 3, no restart
    resumed = load_prior(output)
    assert resumed.metadata.steps == 9 and first.metadata.steps == 6
    assert resumed.metadata.training_command == "second"
    # Exporting a state that already reached (or passed) the target trains nothing more and
    # keeps the state's step and loss.
    train(config.model_copy(update={"steps": 5}), output, command="export")
    exported = load_prior(output).metadata
    assert exported.steps == 9 and exported.final_loss == resumed.metadata.final_loss is not None


def test_non_safetensors_checkpoints_are_refused(tmp_path):
    pickle_file = tmp_path / "weights.pt"
    torch.save({"x": torch.zeros(1)}, pickle_file)
    with pytest.raises(ValueError, match="only .safetensors"):
        load_prior(pickle_file)


def test_truncated_checkpoint_names_the_file(disc_prior, tmp_path):
    good = tmp_path / "good.safetensors"
    from wsprior.prior.checkpoint import save_checkpoint
    save_checkpoint(good, {f"ema.{k}": v for k, v in disc_prior.network.state_dict().items()},
                    disc_prior.metadata)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.safetensors.*truncated or corrupted"):
        load_prior(truncated)


def test_wrong_architecture_and_missing_metadata_are_explained(disc_prior, tmp_path):
    from wsprior.prior.checkpoint import save_checkpoint
    other = UNet(UNetConfig(base_channels=8, channel_multipliers=(1, 2, 2), time_embedding=16, groups=4))
    mismatched = tmp_path / "mismatched.safetensors"
    save_checkpoint(mismatched, {f"ema.{k}": v for k, v in other.state_dict().items()},
                    disc_prior.metadata)
    with pytest.raises(ValueError, match="mismatched.safetensors: tensors do not match"):
        load_prior(mismatched)
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(ValueError, match="bare.safetensors: .*no wsprior metadata"):
        load_prior(bare)
    bad_meta = tmp_path / "badmeta.safetensors"
    save_file({"w": torch.zeros(2)}, str(bad_meta), metadata={"wsprior": json.dumps({"kind": "x"})})
    with pytest.raises(ValueError, match="badmeta.safetensors: invalid prior metadata"):
        load_prior(bad_meta)


def _first_loss(output) -> float:
    log = training_state_files(output)[2]
    return float(log.read_text().splitlines()[1].split(",")[1])


def test_fine_tuning_starts_from_the_given_prior(tiny_prior_path, tmp_path):
    start = load_prior(tiny_prior_path)
    data = dict(synthetic_images=24, synthetic_size=32, patch_size=16, batch_size=8, device="cpu")
    tuned = train(TrainConfig(init_from=str(tiny_prior_path), steps=2, **data),
                  tmp_path / "tuned.safetensors", command="tune")
    scratch = train(TrainConfig(network=start.metadata.network, steps=2, **data),
                    tmp_path / "scratch.safetensors", command="scratch")
    meta = load_prior(tuned).metadata
    assert meta.network == start.metadata.network       # the default network would not fit
    assert meta.steps == start.metadata.steps + 2 and str(tiny_prior_path) in meta.initialized_from
    assert load_prior(scratch).metadata.initialized_from is None
    # Same data, seed and noise: the first loss is lower only if training started from the prior.
    assert _first_loss(tuned) < 0.8 * _first_loss(scratch)


def test_fine_tuning_refuses_another_kind_or_architecture(tiny_prior_path, tmp_path):
    with pytest.raises(ValueError, match="init_from: .* is a 'ws' prior; kind must match"):
        train(TrainConfig(kind="conventional", init_from=str(tiny_prior_path)), tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="network: differs from that of init_from"):
        train(TrainConfig(network=TINY.model_copy(update={"base_channels": 4}),
                          init_from=str(tiny_prior_path)), tmp_path / "b.safetensors")


def test_a_starting_prior_fits_the_config_from_its_metadata_alone(tiny_prior_path, monkeypatch,
                                                                  tmp_path):
    """The napari training widget checks a run's settings against the starting prior before
    training; that reads the checkpoint's header, not its weights (train loads them once)."""
    import wsprior.prior.diffusion_prior as diffusion_prior
    from wsprior.prior.checkpoint import read_metadata
    from wsprior.prior.train import fitted_to_starting_prior

    start = load_prior(tiny_prior_path).metadata
    assert read_metadata(tiny_prior_path) == start

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were loaded")
    monkeypatch.setattr(diffusion_prior, "load_prior", no_weights)
    monkeypatch.setattr(diffusion_prior, "load_checkpoint", no_weights)
    fitted = fitted_to_starting_prior(TrainConfig(init_from=str(tiny_prior_path)))
    assert (fitted.network, fitted.sde, fitted.noise_family) == (start.network, start.sde,
                                                                 start.noise_family)
    with pytest.raises(ValueError, match="init_from: .* is a 'ws' prior; kind must match"):
        fitted_to_starting_prior(TrainConfig(kind="conventional", init_from=str(tiny_prior_path)))
    with pytest.raises(ValueError, match="only .safetensors"):
        read_metadata(tmp_path / "weights.pt")
