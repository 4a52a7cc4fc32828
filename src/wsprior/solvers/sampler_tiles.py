"""The deblur + dehaze diffusion samplers as a tile operator (``wsprior.tiling.TileOperator``).

Per plane, every number the sampler derives from the data (the classical solver's weight, noise
and haze levels, offset; the prior's unit map and the solution's variance) is estimated once on
the whole plane (``problems.plane_parameters``) and fixed for its tiles. Each window is then
sampled on its own with the initial noise of the plane's fixed noise field at the window's
position (``posterior.positional_normal``): with the deterministic WS sampler, overlapping tiles
start from the same noise and agree up to the reach of the network and the data step, which
the halo covers; the stochastic samplers disagree more and rely on the (wider) blend.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .classical.tiled import DeblurTiles
from .problems import deblur_problem, plane_parameters
from .samplers import prior_for, sample

#: Reach of the network beyond the data step's (pixels): the UNet's effective receptive field.
NETWORK_REACH_PX = 32
#: Peak bytes per pixel and sample of one window's sampling (network activations + FFT grids).
_BYTES_PER_PIXEL = 2500
#: Cross-fade margin (pixels) between tiles: wider than for the classical solvers because
#: sampled tiles agree only up to the network's residual disagreement.
BLEND_PX = 32


class DeblurSamplerTiles:
    boundary = "reflect"
    dtype = np.float32
    prefers_whole_planes = False
    blend = BLEND_PX

    def __init__(self, psf: torch.Tensor, settings, prior):
        self.psf = psf.float().cpu()
        self.settings = settings
        self.prior = prior
        self.classical = DeblurTiles(psf, settings.model_copy(update={"method": "wiener"}))
        self.common = dict(pixel_size_um=settings.pixel_size_um,
                           haze_sigma_um=settings.haze_sigma_um)

    def out_channels(self, channels: int) -> None:
        return None

    def workspace_bytes(self, shape: tuple[int, int], channels: int) -> int:
        own = _BYTES_PER_PIXEL * self.settings.n_samples * shape[0] * shape[1] * channels
        return own + self.classical.workspace_bytes(shape, channels)

    def estimate_bytes(self, shape: tuple[int, int], channels: int) -> int:
        return self.classical.workspace_bytes(shape, channels)   # classical solves only

    def estimate(self, planes: torch.Tensor) -> list[dict]:
        return [plane_parameters(plane[0], self.psf.to(plane), **self.common,
                                 haze_std=self.settings.haze_std,
                                 background=self.settings.background) for plane in planes]

    def halo_floor(self, limit: int) -> None:
        return None

    def halo(self, params: dict, limit: int) -> tuple[int | None, int | None]:
        reach = self.classical.halo(params, limit)
        return tuple(None if r is None else r + NETWORK_REACH_PX for r in reach)

    def __call__(self, windows: torch.Tensor, params: Sequence[dict] | None,
                 where: Sequence) -> torch.Tensor:
        psf = self.psf.to(windows)
        prior = prior_for(self.prior, windows.device)
        out = []
        for index, window in enumerate(windows):
            fixed = None if params is None else params[index]
            problem = deblur_problem(window[0], psf, **self.common, haze_std=self.settings.haze_std,
                                     background=self.settings.background, fixed=fixed)
            origin = (0, 0) if params is None else where[index].origin
            mean, _ = sample(self.settings.method, problem, prior, self.settings, origin=origin)
            out.append(mean[None])
        return torch.stack(out)
