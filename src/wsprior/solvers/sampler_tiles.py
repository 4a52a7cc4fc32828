"""The deblur + dehaze diffusion samplers as a tile operator (``wsprior.tiling.TileOperator``).

Per plane, every number the sampler derives from the data (the classical solver's weight, noise
and haze levels, offset; the prior's unit map and the solution's variance) is estimated once on
the whole plane (``problems.plane_parameters``) and fixed for its tiles. Each window is then
sampled on its own with the initial noise of the plane's fixed noise field at the window's
position (``posterior.positional_normal``): with the deterministic WS sampler, overlapping tiles
start from the same noise and agree up to the reach of the network and the data step, which
the halo covers; the stochastic samplers disagree more and rely on the (wider) blend. On a GPU
the windows of a batch are sampled together, one batched network forward per step
(``solvers.lockstep``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .classical.tiled import DeblurTiles
from .lockstep import LockstepPrior, run_in_lockstep
from .problems import deblur_problem, plane_parameters
from .samplers import budget, prior_for, sample

#: Reach of the network beyond the data step's (pixels): the UNet's effective receptive field.
NETWORK_REACH_PX = 32
#: Peak bytes per pixel and sample of one window's sampling (network activations + FFT grids).
_BYTES_PER_PIXEL = 2500
#: Devices on which the windows of a tile batch are sampled together, one batched network
#: forward per step (``solvers.lockstep``). Not the CPU: there torch's threads are busy with one
#: window already; 4 windows of 256² (ws, 30 steps, shipped prior, 2 cores) took 21-22 s together
#: vs 14 s one by one. Not measured on a GPU yet (docs/distributed.md).
LOCKSTEP_DEVICES = ("cuda",)
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
        n_samples, _ = budget(self.settings.method, self.settings)
        own = _BYTES_PER_PIXEL * n_samples * shape[0] * shape[1] * channels
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
        priors = [prior_for(self.prior, windows.device)]
        if self.settings.method == "joint":
            priors.append(prior_for("haze", windows.device))

        def one(index: int, priors=priors) -> torch.Tensor:
            fixed = None if params is None else params[index]
            problem = deblur_problem(windows[index, 0], psf, **self.common,
                                     haze_std=self.settings.haze_std,
                                     background=self.settings.background, fixed=fixed)
            origin = (0, 0) if params is None else where[index].origin
            mean, _ = sample(self.settings.method, problem, priors[0], self.settings,
                             origin=origin, haze_prior=priors[1] if len(priors) > 1 else None)
            return mean[None]

        if len(windows) == 1 or windows.device.type not in LOCKSTEP_DEVICES:
            return torch.stack([one(i) for i in range(len(windows))])
        shared = [LockstepPrior(prior, len(windows)) for prior in priors]
        return torch.stack(run_in_lockstep([lambda i: one(i, shared)] * len(windows), shared))
