"""Joint signal + structured-noise diffusion for deblur + dehaze (Stevens et al. 2023).

Two priors diffuse side by side: the image prior on the in-focus signal ``x`` and the haze prior
(trained on haze fields alone) on the haze ``h``, with ``y = A x + h + e`` and ``e`` white. Each
step denoises both, then solves the exact joint proximal problem per frequency::

    min_{X, Z}  λ |Ŷ − H X − Z|² / σ²  +  ρ_x |X − X̂₀|²  +  ρ_h |Z − Ĥ₀|²

a 2 × 2 linear system per frequency (closed form below), and takes a DDIM step for each.
``ρ`` are the precisions of the two Tweedie estimates at the diffusion noise level and the
DDIM steps use η = 0.85 (the WS sampler's defaults). The haze
prior's units map to physical haze by ``haze_std / HAZE_UNIT_STD`` (its training fields are
unit-variance random fields scaled by their 0.1/99.9 percentiles, i.e. ±3.09 σ → ±1).
"""
from __future__ import annotations

import torch

from .posterior import denoise, diffusion_error_variance, posterior_sample, structured_noise
from .ws import ETA, ddim_update

HAZE_UNIT_STD = 1 / 3.09


@torch.no_grad()
def joint_sample(problem, prior, haze_prior, *, haze_std: float, steps=None, guidance="auto",
                 warm_start=True, seed=0, n_samples=1, eta=ETA, origin=(0, 0), progress=None):
    """``problem``: a deblur ``FourierProblem``; ``haze_std``: the haze level (image units)."""
    weight = 1.0 if guidance == "auto" else float(guidance)
    haze_scale = max(float(haze_std), 1e-6) / HAZE_UNIT_STD

    def make_step(problem, prior, noise):
        haze = {}

        def step(x, t, t_next):
            if "state" not in haze:   # the haze starts as the prior's mean (0) diffused to t
                haze["state"] = haze_prior.sde.sigma(t) * structured_noise(haze_prior, x, noise)
            x0, _ = denoise(prior, x, t)
            h0, _ = denoise(haze_prior, haze["state"], t)
            rho_x = 1 / (problem.scale ** 2 * diffusion_error_variance(prior, t))
            rho_h = 1 / (haze_scale ** 2 * diffusion_error_variance(haze_prior, t))
            signal, field = joint_proximal(problem, problem.from_prior(x0), haze_scale * h0,
                                           rho_x, rho_h, weight)
            x0 = problem.to_prior(signal).clamp(*prior.data_range)
            h0 = (field / haze_scale).clamp(*haze_prior.data_range)
            haze["state"] = ddim_update(haze_prior, haze["state"], h0, t, t_next, eta, noise)
            return ddim_update(prior, x, x0, t, t_next, eta, noise), x0
        return step

    return posterior_sample(problem, prior, make_step, steps=steps, warm_start=warm_start,
                            seed=seed, n_samples=n_samples, progress=progress,
                            origin=origin)


def joint_proximal(problem, x0: torch.Tensor, h0: torch.Tensor, rho_x: float, rho_h: float,
                   weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frequency solution of the joint proximal problem (module docstring), physical units."""
    transfer, data = problem.transfer, problem.data_spectrum
    w = weight / problem.noise_floor
    x_hat, h_hat = torch.fft.fft2(problem.pad(x0)), torch.fft.fft2(problem.pad(h0))
    a11, a12 = w * transfer.abs() ** 2 + rho_x, w * transfer.conj()
    a21, a22 = w * transfer, w + rho_h
    b1 = w * transfer.conj() * data + rho_x * x_hat
    b2 = w * data + rho_h * h_hat
    det = a11 * a22 - a12 * a21
    signal = torch.fft.ifft2((a22 * b1 - a12 * b2) / det).real[(..., *problem.crop)]
    field = torch.fft.ifft2((a11 * b2 - a21 * b1) / det).real[(..., *problem.crop)]
    return signal, field
