"""Denoising diffusion null-space model for noisy data (DDNM+, Wang et al. 2023).

Each step replaces the range-space part of Tweedie's ``x̂₀`` by the data's::

    x̂₀' = x̂₀ + Σ_t A⁺ (y − A x̂₀)

with ``A⁺`` each operator's Fourier-domain pseudo-inverse. DDNM+ scales the correction down
where the pseudo-inverse's noise (``N/|H|²`` per frequency) exceeds the diffusion noise still in
``x̂₀`` (``γ_t² = σ_t²/α_t²``); its Tikhonov form, used here for every operator, is

    Σ_t A⁺ = (Aᴴ N⁻¹ A + ρ_t)⁻¹ Aᴴ N⁻¹,     ρ_t = 1 / (s² γ_t²)

i.e. the proximal step at the diffusion noise level (the WS sampler instead uses the Gaussian
error variance of ``x̂₀``, which also counts the data's own variance). The DDIM step uses the
paper's η = 0.85. ``guidance`` scales the data weight (auto: 1).
"""
from __future__ import annotations

import torch

from .posterior import denoise, posterior_sample
from .ws import ddim_update

ETA = 0.85


@torch.no_grad()
def ddnm_sample(problem, prior, *, steps=None, guidance="auto", warm_start=True, seed=0,
                n_samples=1, progress=None):
    weight = 1.0 if guidance == "auto" else float(guidance)

    def make_step(problem, prior, generator):
        def step(x, t, t_next):
            x0, _ = denoise(prior, x, t)
            gamma2 = float(prior.sde.sigma(t) ** 2 / prior.sde.alpha(t) ** 2)
            precision = 1.0 / (problem.scale ** 2 * gamma2)
            x0 = problem.to_prior(problem.proximal(problem.from_prior(x0), precision, weight))
            x0 = x0.clamp(*prior.data_range)
            return ddim_update(prior, x, x0, t, t_next, ETA, generator), x0
        return step

    return posterior_sample(problem, prior, make_step, steps=steps, warm_start=warm_start,
                            seed=seed, n_samples=n_samples, progress=progress)
