"""Diffusion posterior sampling (DPS, Chung et al. 2023) with the same priors and operators.

Each step denoises with Tweedie, takes the DDIM step, then moves down the gradient of the data
misfit *through the network*::

    x_{t'} ← DDIM(x_t, x̂₀) − ζ_t ∇_{x_t} ‖y − A x̂₀(x_t)‖²,    ζ_t = ζ / ‖y − A x̂₀‖

The norm is the noise-whitened one, expressed in the prior's units (residual divided by the
prior scale ``s`` and by the white noise level relative to its floor), so ζ means what it means
in the paper (images in [-1, 1]). ``guidance="auto"`` is the paper's ζ = 1 with the data step
capped at the diffusion noise still to be removed (RMS ≤ σ_{t'}): ill-conditioned operators
(TIE's Laplacian) otherwise overshoot by orders of magnitude at the first step. A float ζ is
used as given.
"""
from __future__ import annotations

import torch

from .posterior import denoise, posterior_sample
from .ws import ddim_update

DEFAULT_ZETA = 1.0


def dps_sample(problem, prior, *, steps=None, guidance="auto", warm_start=True, seed=0,
               n_samples=1, origin=(0, 0), progress=None):
    zeta = DEFAULT_ZETA if guidance == "auto" else float(guidance)

    def make_step(problem, prior, noise):
        unit = problem.noise_floor ** 0.5 / problem.scale   # whitened → prior units

        def step(x, t, t_next):
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                x0, _ = denoise(prior, x, t)
                norm = unit * torch.sqrt(2 * problem.misfit(problem.from_prior(x0)))
                gradient, = torch.autograd.grad(norm, x)
            x0 = x0.detach()
            with torch.no_grad():
                moved = ddim_update(prior, x.detach(), x0, t, t_next)
                data_step = 2 * zeta * gradient             # ζ/‖r‖ · ∇‖r‖² = 2ζ ∇‖r‖
                if guidance == "auto":
                    rms = float(data_step.square().mean().sqrt())
                    data_step = data_step * min(1.0, float(prior.sde.sigma(t_next)) / max(rms, 1e-12))
                return moved - data_step, x0
        return step

    return posterior_sample(problem, prior, make_step, steps=steps, warm_start=warm_start,
                            seed=seed, n_samples=n_samples, progress=progress,
                            origin=origin)
