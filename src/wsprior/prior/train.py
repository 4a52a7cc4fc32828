"""Whitened denoising score matching.

For each sample: t ~ U(t_min, 1), K from the noise family, ``x_t = α_t x_0 + σ_t K z`` and the
loss ``‖ε̂_θ(x_t, t) − K z‖²`` (mean per sample, then over the batch). Predicting the structured
noise is the whitened-score target ``−(β_t/σ_t) K z`` up to a per-time weight, better conditioned
at small t. EMA of the weights, bf16 autocast on CUDA, resumable checkpoints, a CSV loss log.
"""
from __future__ import annotations

import copy
import csv
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from .. import __version__
from .._arrays import resolve_device
from ..data import training_set
from .checkpoint import PriorMetadata, load_checkpoint, save_checkpoint
from .network import UNet, UNetConfig
from .sde import VPSDE, NoiseFamilyConfig, SDEConfig, sample_structured_noise


class TrainConfig(BaseModel):
    """``kind``: "ws" (structured K family), "conventional" (K = I, same data), "haze" (the data
    are haze fields themselves, K = I; the joint sampler's noise prior)."""
    model_config = ConfigDict(extra="forbid")
    kind: Literal["ws", "conventional", "haze"] = "ws"
    network: UNetConfig = UNetConfig()
    sde: SDEConfig = SDEConfig()
    noise_family: NoiseFamilyConfig | None = None
    data: list[str] = Field(["synthetic"], description="'synthetic' (phantoms), 'real' (the "
                            "real images of training_set.REAL_TRAINING_SOURCES) and/or TIFF "
                            "files/folders")
    augmentation: training_set.Augmentation = training_set.Augmentation()
    synthetic_images: int = Field(384, ge=1)
    synthetic_size: int = Field(128, ge=16)
    patch_size: int = Field(64, ge=8)
    batch_size: int = Field(16, ge=1)
    steps: int = Field(2000, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = Field(250, ge=1)
    compile: bool = Field(False, description="torch.compile the network for training (worth it "
                          "on a GPU for long runs; the first steps are slow while it compiles)")
    init_from: str | None = Field(None, description="start from this prior's weights (a shipped "
                                  "prior's name, diffusion_prior.DEFAULT_PRIORS, or a "
                                  ".safetensors path): fine-tuning")

    def family(self) -> NoiseFamilyConfig:
        if self.noise_family is not None:
            return self.noise_family
        return NoiseFamilyConfig(kind="structured" if self.kind == "ws" else "white")


def train(config: TrainConfig, output: str | Path, *, command: str | None = None,
          progress: Callable[[int, int, float], None] | None = None,
          extra_images: Mapping[str, np.ndarray] | None = None) -> Path:
    """Train (resuming from ``OUTPUT.train.safetensors`` if present) and export the EMA weights
    in half precision to ``output`` (.safetensors + .json). Returns the exported path.

    ``progress(step, total, running_loss)`` is called after every step; an exception raised in
    it stops training before ``output`` is written (cancellation). ``extra_images`` adds
    in-memory training images to ``config.data`` by name (e.g. napari layers): the 2D planes of
    each (..., Y, X) array, scaled like TIFF planes."""
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"output must end in .safetensors; got {output.name!r}")
    output.parent.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    config, start = with_starting_prior(config)
    torch.manual_seed(config.seed)
    images, description, sources = _training_images(config, extra_images or {})
    sampler = training_set.PatchSampler(images, config.patch_size, config.seed,
                                        config.augmentation)
    network = UNet(config.network).to(device)
    ema = copy.deepcopy(network).requires_grad_(False)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate)
    state_files = training_state_files(output)
    state_path = state_files[0]
    step, loss = 0, None
    if state_path.exists():
        step, loss = _resume(state_path, network, ema, optimizer)
    elif start is not None:
        network.load_state_dict(start.network.state_dict())
        ema.load_state_dict(start.network.state_dict())
    base_steps = start.metadata.steps if start is not None else 0
    metadata = PriorMetadata(
        kind=config.kind, network=config.network, sde=config.sde, noise_family=config.family(),
        patch_size=config.patch_size, training_data=description, training_sources=sources,
        augmentation=config.augmentation,
        training_data_sha256=training_set.fingerprint(images), steps=base_steps + step,
        initialized_from=_describe(config.init_from, start),
        training_device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        training_command=command or " ".join(sys.argv), package_version=__version__)
    step, running = _loop(config, network, ema, optimizer, sampler, device, step, metadata,
                          state_files, progress, base_steps)
    # A run resumed at (or past) its last step trains no further: the state's numbers stand.
    final = metadata.model_copy(update={"steps": base_steps + step,
                                        "final_loss": loss if running is None else running})
    save_checkpoint(output, {f"ema.{k}": v.half() for k, v in ema.state_dict().items()}, final)
    return output


def _loop(config, network, ema, optimizer, sampler, device, step, metadata, state_files, progress,
          base_steps):
    sde, family = VPSDE(config.sde), config.family()
    forward = torch.compile(network) if config.compile else network
    generator = torch.Generator().manual_seed(config.seed + step)
    state_path, _, log_path = state_files
    log = _LossLog(log_path)
    running, started = None, time.perf_counter()
    while step < config.steps:
        x0 = sampler(config.batch_size).to(device)
        t = config.sde.t_min + (1 - config.sde.t_min) * torch.rand(x0.shape[0], generator=generator)
        noise = sample_structured_noise(family, tuple(x0.shape), generator).to(device)
        x_t = sde.perturb(x0, t.to(device), noise)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            prediction = forward(x_t, t.to(device))
        loss = (prediction.float() - noise).pow(2).mean(dim=(1, 2, 3)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        _ema_update(ema, network, config.ema_decay)
        step += 1
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        log.write(step, value, time.perf_counter() - started)
        if progress is not None:
            progress(step, config.steps, running)
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save_state(state_path, network, ema, optimizer, metadata.model_copy(
                update={"steps": base_steps + step, "final_loss": running}), step)
    return step, running


def with_starting_prior(config: TrainConfig):
    """``(config, prior)``: the prior named by ``config.init_from`` (on the CPU; ``None``
    without one) and ``config`` fitted to it (``fitted_to_starting_prior``)."""
    if config.init_from is None:
        return config, None
    from .diffusion_prior import load_prior

    prior = load_prior(config.init_from)
    return _fitted_to(config, prior.metadata), prior


def fitted_to_starting_prior(config: TrainConfig) -> TrainConfig:
    """``config`` with the network, SDE and (unless given) noise family of the prior named by
    ``config.init_from``, which its weights fit; read from the prior's metadata alone (its
    weights are not loaded). A ValueError names a kind or an architecture that does not match."""
    if config.init_from is None:
        return config
    from .diffusion_prior import prior_metadata

    return _fitted_to(config, prior_metadata(config.init_from))


def _fitted_to(config: TrainConfig, start: PriorMetadata) -> TrainConfig:
    """``config`` with the starting prior's network, SDE and (unless given) noise family: the
    weights fit only their own architecture."""
    if start.kind != config.kind:
        raise ValueError(f"init_from: {config.init_from!r} is a {start.kind!r} prior; "
                         f"kind must match it (got kind={config.kind!r})")
    given = config.model_fields_set
    for name in ("network", "sde"):
        if name in given and getattr(config, name) != getattr(start, name):
            raise ValueError(f"{name}: differs from that of init_from={config.init_from!r} "
                             f"({getattr(start, name)}); leave it unset to use the prior's")
    family = config.noise_family if "noise_family" in given else start.noise_family
    return config.model_copy(update={"network": start.network, "sde": start.sde,
                                     "noise_family": family})


def _describe(name: str | None, start) -> str | None:
    if start is None:
        return None
    m = start.metadata
    return f"{name} ({m.kind}, {m.steps} steps on {m.training_device}, created {m.created})"


def _ema_update(ema: torch.nn.Module, network: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for target, source in zip(ema.parameters(), network.parameters(), strict=True):
            target.lerp_(source, 1 - decay)
        for target, source in zip(ema.buffers(), network.buffers(), strict=True):
            target.copy_(source)


def training_state_files(output: str | Path) -> tuple[Path, Path, Path]:
    """What ``train`` keeps beside ``output`` to resume: the state, its JSON sidecar, the loss log."""
    state = Path(output).with_suffix(".train.safetensors")
    return state, state.with_suffix(".json"), state.with_suffix("").with_suffix(".loss.csv")


def _training_images(config: TrainConfig, extra_images: Mapping[str, np.ndarray]):
    """``(images, one-line description, real sources with their licences or None)``."""
    images, parts, sources = [], [], None
    for source in config.data:
        if source == "synthetic":
            make = training_set.haze_fields if config.kind == "haze" else training_set.synthetic_images
            images += list(make(config.synthetic_images, config.synthetic_size, config.seed))
            what = "haze GRF fields" if config.kind == "haze" else "cell phantoms (fluorescence, phase, RI)"
            parts.append(f"{config.synthetic_images} synthetic {what} {config.synthetic_size}² (seed {config.seed})")
        elif source == "real":
            images += training_set.real_images()
            sources = training_set.describe_sources()
            parts.append(f"{len(sources)} real images ({', '.join(s['name'] for s in sources)})")
        else:
            planes = training_set.tiff_images([source])
            images += planes
            parts.append(f"{len(planes)} planes from {source}")
    for name, data in extra_images.items():
        planes = training_set.array_planes(data)
        images += planes
        parts.append(f"{len(planes)} planes from {name}")
    return images, "; ".join(parts), sources


def _save_state(path: Path, network, ema, optimizer, metadata: PriorMetadata, step: int) -> None:
    tensors = {f"model.{k}": v for k, v in network.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    names = {id(p): i for i, p in enumerate(network.parameters())}
    for param, state in optimizer.state.items():
        for key, value in state.items():
            tensors[f"optim.{names[id(param)]}.{key}"] = torch.as_tensor(value).float().reshape(-1) \
                if key == "step" else value
    save_checkpoint(path, tensors, metadata, extra={"step": step})


def _resume(path: Path, network, ema, optimizer) -> tuple[int, float | None]:
    """Load the state into the modules; ``(step, running loss)`` it was saved at."""
    metadata, tensors, extra = load_checkpoint(path)
    network.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    params = list(network.parameters())
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            param = params[int(index)]
            optimizer.state[param][key] = value.reshape(()) if key == "step" else value.to(param.device)
    return int(extra["step"]), metadata.final_loss


class _LossLog:
    def __init__(self, path: Path):
        self.path = path
        self.new = not path.exists()

    def write(self, step: int, loss: float, seconds: float) -> None:
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if self.new:
                writer.writerow(["step", "loss", "seconds"])
                self.new = False
            writer.writerow([step, f"{loss:.6g}", f"{seconds:.2f}"])
