"""The prior object the samplers use: network + SDE + noise family + metadata."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import PriorMetadata, load_checkpoint, read_metadata
from .network import UNet
from .sde import VPSDE, NoiseFamilyConfig

DEFAULT_PRIORS = {"default": "ws_default.safetensors", "conventional": "conventional.safetensors",
                  "haze": "haze.safetensors", "real": "ws_real.safetensors",
                  "real_conventional": "conventional_real.safetensors"}


class DiffusionPrior(nn.Module):
    """``noise_prediction(x_t, t) ≈ K z``; ``whitened_score = −(β/σ) ε̂`` (DESIGN.md §5)."""

    def __init__(self, metadata: PriorMetadata, network: UNet | None = None):
        super().__init__()
        self.metadata = metadata
        # channels-last convolutions: 1.79 → 1.40 s per 512² forward on 2 CPU cores
        self.network = (network or UNet(metadata.network)).to(memory_format=torch.channels_last)
        self.sde = VPSDE(metadata.sde)
        self.noise_family: NoiseFamilyConfig = metadata.noise_family

    @property
    def data_range(self) -> tuple[float, float]:
        """Range of the (scaled) training images; samplers clip x̂_0 to it."""
        return self.metadata.data_range

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def noise_prediction(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """``ε̂`` for ``x`` (..., Y, X) of any size (mirror-padded to the network's multiple)."""
        lead, (ny, nx) = x.shape[:-2], x.shape[-2:]
        batch = x.reshape(-1, 1, ny, nx)
        t = torch.as_tensor(t, dtype=batch.dtype, device=batch.device).expand(batch.shape[0])
        factor = self.metadata.network.downsampling
        pad_y, pad_x = (-ny) % factor, (-nx) % factor
        if pad_y or pad_x:
            mode = "reflect" if pad_y < ny and pad_x < nx else "replicate"
            batch = F.pad(batch, (0, pad_x, 0, pad_y), mode=mode)
        weight_dtype = next(self.network.parameters()).dtype
        batch = batch.to(weight_dtype).contiguous(memory_format=torch.channels_last)
        out = self.network(batch, t.to(weight_dtype)).to(x.dtype).contiguous()
        return out[..., :ny, :nx].reshape(*lead, ny, nx)

    def whitened_score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return -(self.sde.beta(t) / self.sde.sigma(t)) * self.noise_prediction(x, t)

    def tweedie(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """One-step denoised estimate ``x̂_0 = (x_t − σ_t ε̂)/α_t``."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        return (x - self.sde.sigma(t) * self.noise_prediction(x, t)) / self.sde.alpha(t)

    @torch.no_grad()
    def sample(self, shape: tuple[int, ...], *, steps: int = 50, seed: int = 0,
               progress=None) -> torch.Tensor:
        """Unconditional samples (..., Y, X) in the prior's data range (DDIM, structured noise)."""
        from .sampling import sample_unconditional

        return sample_unconditional(self, shape, steps=steps, seed=seed, progress=progress)


def load_prior(prior: str | Path | DiffusionPrior = "default", *, device="cpu") -> DiffusionPrior:
    """``"default"`` (the shipped WS prior), ``"conventional"``, ``"haze"``, a path to a
    ``.safetensors`` checkpoint, or an already loaded prior. Validates metadata and tensor
    shapes; refuses anything that is not safetensors."""
    if isinstance(prior, DiffusionPrior):
        return prior.to(device)
    path = _resolve(prior)
    metadata, tensors, _ = load_checkpoint(path)
    weights = {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
    weights = weights or {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model = DiffusionPrior(metadata)
    expected = model.network.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        details = "; ".join(part for part in (
            f"missing {len(missing)} tensors (e.g. {missing[0]})" if missing else "",
            f"unexpected {len(unexpected)} tensors (e.g. {unexpected[0]})" if unexpected else "",
            f"wrong shape for {wrong[0]}: file {tuple(weights[wrong[0]].shape)} vs architecture "
            f"{tuple(expected[wrong[0]].shape)}" if wrong else "") if part)
        raise ValueError(f"{path}: tensors do not match the architecture in its metadata: {details}")
    model.network.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.eval().to(device)


def prior_metadata(prior: str | Path = "default") -> PriorMetadata:
    """The metadata of a shipped prior's name or a checkpoint path, without reading its weights."""
    return read_metadata(_resolve(prior))


def check_prior_source(prior: str | Path | None, name: str, missing_hint: str) -> None:
    """``prior`` is None, a shipped prior's name, or a .safetensors file that exists and holds a
    prior (its header alone is read: fast, and it names what is wrong). Errors start with
    ``name``; ``missing_hint`` follows "does not exist"."""
    if prior is None or (isinstance(prior, str) and prior in DEFAULT_PRIORS):
        return
    path = Path(prior).expanduser()
    if not path.is_file():
        raise ValueError(f"{name}: {path} does not exist{missing_hint}")
    try:
        prior_metadata(path)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def _resolve(prior: str | Path) -> Path:
    if isinstance(prior, str) and prior in DEFAULT_PRIORS:
        path = Path(str(resources.files("wsprior.prior") / "weights" / DEFAULT_PRIORS[prior]))
        if not path.is_file():
            raise ValueError(f"the shipped {prior!r} prior is missing from this installation ({path})")
        return path
    return Path(prior)
