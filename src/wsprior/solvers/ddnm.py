"""Denoising diffusion null-space model for noisy data (DDNM+, Wang et al. 2023).

Each step replaces the range-space part of Tweedie's ``x̂₀`` by the data's::

    x̂₀' = x̂₀ + Σ_t A⁺ (y − A x̂₀)

with ``A⁺`` each operator's Fourier-domain pseudo-inverse. DDNM+ scales the correction down
where the pseudo-inverse's noise (``N/|H|²`` per frequency) exceeds the diffusion noise still in
``x̂₀`` (``γ_t² = σ_t²/α_t²``); its Tikhonov form, used here for every operator, is

    Σ_t A⁺ = (Aᴴ N⁻¹ A + ρ_t)⁻¹ Aᴴ N⁻¹,     ρ_t = 1 / (s² γ_t²)

i.e. the proximal step at the diffusion noise level with the *white* noise floor for ``N``
(DDNM knows no haze model): the same update as the WS sampler's default except that WS whitens
by the haze + noise spectrum, which is what the comparison isolates. The DDIM step uses the
paper's η = 0.85. ``guidance`` scales the data weight (auto: 1).
"""
from __future__ import annotations

from .posterior import DEFAULT_STEPS
from .ws import ETA, ws_sample


def ddnm_sample(problem, prior, *, steps=None, guidance="auto", warm_start=True, seed=0,
                n_samples=1, eta=ETA, origin=(0, 0), progress=None):
    """The WS sampler's update with DDNM+'s choices: a scalar diffusion-level precision, the
    paper's η and the white noise floor as ``N``."""
    return ws_sample(problem, prior, steps=steps or DEFAULT_STEPS, guidance=guidance,
                     warm_start=warm_start, seed=seed, n_samples=n_samples, eta=eta,
                     variance="diffusion", white=True, structured_variance=False,
                     classical_scales=False, origin=origin, progress=progress,
                     final_noise=None, antithetic=False)
