"""Score-based annealed Langevin dynamics (Score-ALD, Jalal et al. 2021).

In variance-exploding coordinates ``u = x_t/α_t`` (noise level ``γ_t = σ_t/α_t``), one Langevin
step per noise level on the posterior::

    u ← u + η_t [ s_θ(u, γ_t) + λ Aᴴ N_t⁻¹ (y − A u) ] + sqrt(2 η_t) K z,    η_t = ε γ_t²

with the prior's (whitened) score ``s_θ = −ε̂/γ_t`` and the noise-inflated likelihood
``N_t = N + s² γ_t² |H|²`` (the paper's ``σ_y² + γ_t²``); the likelihood gradient is taken by
autograd of ``problem.misfit``. ``ε = 0.5`` keeps both terms' curvature (≤ 1/γ_t² each) stable.
The likelihood gradient is divided by each pixel's copies on the mirror-padded grid
(``mirror_copies``), so every measured pixel counts once. The last level's Tweedie estimate is
the output. ``guidance="auto"`` is λ = 1. One Langevin step per level does not equilibrate the
chain: with ≤ 50 evaluations Score-ALD stays far behind the other samplers (docs/benchmarks.md).
"""
from __future__ import annotations

import torch

from .posterior import denoise, posterior_sample, structured_noise

STEP_FRACTION = 0.5


def score_ald_sample(problem, prior, *, steps=None, guidance="auto", warm_start=True, seed=0,
                     n_samples=1, origin=(0, 0), progress=None):
    weight = 1.0 if guidance == "auto" else float(guidance)

    def make_step(problem, prior, noise):
        copies = mirror_copies(problem)

        def step(x, t, t_next):
            sde = prior.sde
            alpha, sigma = sde.alpha(t), sde.sigma(t)
            gamma = sigma / alpha
            u = x / alpha
            with torch.no_grad():
                x0, epsilon = denoise(prior, x, t)
            with torch.enable_grad():
                u_req = u.detach().requires_grad_(True)
                inflation = (problem.scale * gamma) ** 2
                misfit = problem.misfit(problem.from_prior(u_req), inflation)
                likelihood, = torch.autograd.grad(-misfit, u_req)
                likelihood = likelihood / copies
            with torch.no_grad():
                eta = STEP_FRACTION * gamma ** 2
                drift = -epsilon / gamma + weight * likelihood
                u = u + eta * drift + torch.sqrt(2 * eta) * structured_noise(prior, u, noise)
                return sde.alpha(t_next) * u, x0
        return step

    return posterior_sample(problem, prior, make_step, steps=steps, warm_start=warm_start,
                            seed=seed, n_samples=n_samples, progress=progress,
                            origin=origin)


def mirror_copies(problem) -> torch.Tensor:
    """How often each image pixel appears on the problem's mirror-padded grid (the padding's
    adjoint applied to ones). The misfit counts every copy as a measurement: TIE pads each side
    by half the image, so its data weighed 4× on average (up to 9×) and the Langevin step went
    unstable (0.92 rad phase RMSE on validation images, seeds 2000-2001; 0.45 once divided)."""
    ones = torch.ones_like(problem.classical).requires_grad_(True)
    with torch.enable_grad():
        copies, = torch.autograd.grad(problem.pad(ones).sum(), ones)
    return copies
