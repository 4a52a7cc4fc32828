"""The diffusion posterior samplers behind ``method=`` (DESIGN.md §4) and the priors they load."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .ddnm import ddnm_sample
from .dps import dps_sample
from .joint import joint_sample
from .posterior import DEFAULT_SAMPLES, DEFAULT_STEPS
from .score_ald import score_ald_sample
from .ws import WS_SAMPLES, WS_STEPS, WS_STEPS_BY_TASK, ws_sample

SAMPLERS = {"ws": ws_sample, "dps": dps_sample, "score_ald": score_ald_sample,
            "ddnm": ddnm_sample}
DIFFUSION_METHODS = (*SAMPLERS, "joint")


def is_diffusion(method: str) -> bool:
    return method in DIFFUSION_METHODS


def prior_for(prior, device: torch.device):
    """A loaded prior (``"default"``, ``"conventional"``, ``"haze"``, a checkpoint path or a
    prior object); named and path priors are loaded once per device."""
    from ..prior import DiffusionPrior

    if isinstance(prior, DiffusionPrior):
        return prior.to(device)
    path = Path(str(prior))
    stamp = path.stat().st_mtime_ns if path.is_file() else 0   # a rewritten file is reloaded
    return _cached_prior(str(prior), str(device), stamp)


@functools.lru_cache(maxsize=4)
def _cached_prior(name: str, device: str, stamp: int):
    from ..prior import load_prior

    return load_prior(name, device=device)


def budget(method: str, settings) -> tuple[int, int]:
    """``(n_samples, steps)``: the settings', else the method's default (``ws`` warm-started:
    ``WS_SAMPLES`` × the task's ``WS_STEPS_BY_TASK``, else ``WS_STEPS``; the others, and any
    sampler started from noise: ``DEFAULT_SAMPLES`` × ``DEFAULT_STEPS``)."""
    if method == "ws" and not settings.start_from_noise:
        samples, steps = WS_SAMPLES, WS_STEPS_BY_TASK.get(settings.task, WS_STEPS)
    else:
        samples, steps = DEFAULT_SAMPLES, DEFAULT_STEPS
    return settings.n_samples or samples, settings.steps or steps


def sample(method: str, problem, prior, settings, progress=None, origin=(0, 0), haze_prior=None):
    """Posterior mean and std (``None`` for one sample) of ``problem`` with ``settings``'
    steps, guidance, samples and seed (``budget``); ``origin``: the problem's top-left image
    pixel. The joint sampler adds the haze prior (default: the shipped one) at the level of the
    problem's estimated haze."""
    n_samples, steps = budget(method, settings)
    common = dict(steps=steps, guidance=settings.guidance, seed=settings.seed,
                  n_samples=n_samples, progress=progress, origin=origin,
                  warm_start=not settings.start_from_noise)
    if settings.stochasticity != "auto":
        common["eta"] = float(settings.stochasticity)
    if method == "joint":
        haze_prior = haze_prior or prior_for("haze", problem.classical.device)
        return joint_sample(problem, prior, haze_prior, haze_std=problem.haze_std, **common)
    return SAMPLERS[method](problem, prior, **common)
