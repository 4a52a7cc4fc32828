"""Time-conditioned UNet for single-channel images of any size divisible by ``2**(levels-1)``.

Predicts the *structured noise* ``K z`` of ``x_t = α_t x_0 + σ_t K z`` (``wsprior.prior.sde``
turns it into the whitened score). Small by default (~2 M parameters): usable on a CPU, fast on
a GPU. The architecture is fully described by ``UNetConfig`` (stored in checkpoints).
"""
from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F


class UNetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base_channels: int = Field(32, ge=4, le=256)
    channel_multipliers: tuple[int, ...] = Field((1, 2, 2, 4), min_length=1, max_length=6)
    blocks_per_level: int = Field(1, ge=1, le=4)
    time_embedding: int = Field(128, ge=8, le=1024)
    groups: int = Field(8, ge=1, le=32)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of continuous time ``t`` ∈ [0, 1] (scaled to 0..1000), (B,) → (B, dim)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t.float()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, time_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, channels_in), channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.time = nn.Linear(time_dim, channels_out)
        self.norm2 = nn.GroupNorm(min(groups, channels_out), channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = (nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out
                     else nn.Identity())

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(t_emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config = config or UNetConfig()
        widths = [config.base_channels * m for m in config.channel_multipliers]
        tdim = config.time_embedding
        self.time_mlp = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.stem = nn.Conv2d(1, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        channels, skips = widths[0], []
        for level, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                self.down.append(ResBlock(channels, width, tdim, config.groups))
                channels = width
                skips.append(channels)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
        self.middle = nn.ModuleList([ResBlock(channels, channels, tdim, config.groups),
                                     ResBlock(channels, channels, tdim, config.groups)])
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(config.blocks_per_level):
                self.up.append(ResBlock(channels + skips.pop(), width, tdim, config.groups))
                channels = width
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.head = nn.Sequential(nn.GroupNorm(min(config.groups, channels), channels), nn.SiLU(),
                                  nn.Conv2d(channels, 1, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 1, Y, X), ``t`` (B,) in [0, 1] → predicted structured noise (B, 1, Y, X)."""
        factor = self.config.downsampling
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be divisible by {factor}")
        t_emb = self.time_mlp(timestep_embedding(t, self.config.time_embedding))
        h = self.stem(x)
        skips = []
        for layer in self.down:
            if isinstance(layer, ResBlock):
                h = layer(h, t_emb)
                skips.append(h)
            else:
                h = layer(h)
        for layer in self.middle:
            h = layer(h, t_emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), t_emb)
            else:
                h = layer(h)
        return self.head(h)
