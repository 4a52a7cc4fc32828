"""Whitened-score posterior sampling with a Fourier-domain proximal data step.

Each step (DESIGN.md §5, §7): the prior's structured-noise prediction ``ε̂`` gives
``x̂₀ = (x_t − σ_t ε̂)/α_t``; the data step replaces it by the exact *whitened* proximal solution

    x̂₀' = argmin_x  λ ‖y − A x‖²_{N⁻¹} + ρ_t ‖x − x̂₀‖²,   ρ_t = 1 / (s² v_t)

(closed form per frequency because A is Fourier-diagonal, or per frequency and slice for IDT;
``N`` is the white + haze noise spectrum, so haze-dominated frequencies are left to the prior;
``s`` the prior's unit scale). ``v_t`` is the error variance assumed for ``x̂₀`` (prior units):

* ``"diffusion"`` (default): ``v_t(u) = γ_t² |K̂(u)|²``, ``γ_t² = σ_t²/α_t²``: the noise still
  in ``x_t/α_t`` has the diffusion operator's spectrum, so ``ρ_t`` is a spectrum too, small
  where the structured noise is strong (low frequencies) and the data can take over there;
* ``"gaussian"``: ``v_t(u) = 1/(α_t²/(σ_t² |K̂(u)|²) + 1/c)``, the exact posterior variance for
  a white Gaussian prior of the classical solution's variance ``c``. It brings the sampler's
  mean 3× closer to the exact posterior mean on a Gaussian toy problem, but trusts the network
  more: with the shipped CPU-trained priors it lost 2.3 dB on deblur + dehaze on validation
  images (seeds 2000-2001, never in the test set), hence not the default.

The structured spectrum (vs the flat ``γ_t²`` of earlier versions, still used by ``ddnm`` and
for IDT, ``IdtProblem.structured_prior_error``) took the WS prior from 15.1 to 20.4 dB on
deblur + dehaze and from 0.42 to 0.20 rad on TIE on the validation images (256² crops); with
the conventional prior (K = I) the two coincide.

For TIE and IDT, whose data hardly constrain coarse structure, ``x̂₀'`` then keeps the classical
estimate's structure coarser than ``problem.classical_scale_px``
(``FourierProblem.keep_classical_scales``; TIE validation 0.149 → 0.085 rad, IDT 1.15 → 0.38e-3),
unless the prior knows the field scale (``metadata.field_scale_context``: the ``real`` prior,
trained on 128-px views of micrographs; on the robustness benchmark's validation cases with
real-image content its TIE RMSE / Tikhonov went 0.99 → 0.85 (geometric mean) without the
14-px rule, worst case 1.00; the shipped 64-px prior without it: 0.94, worst 1.35).

Then ``x_{t'} = α_{t'} x̂₀' + σ_{t'} ε'`` with ``ε' = (x_t − α_t x̂₀')/σ_t`` (DDIM); ``eta``
replaces a fraction of ``ε'`` by fresh structured noise (0: deterministic; default 0.85, the
DDNM/DiffPIR choice, +1 dB over 0 on the same validation images). ``guidance="auto"`` is λ = 1:
the Gaussian-optimal combination of the two estimates given their variances, needing no ground
truth; a float overrides λ. A warm start (the classical solution diffused to t = 0.5) cuts the
number of network evaluations.

The default budget, ``WS_SAMPLES`` draws of ``WS_STEPS`` steps (10 network evaluations, 4.8×
fewer than the earlier 4 × 12), spends its steps between the warm start and the noise level
σ/α = ``FINAL_NOISE`` (``posterior.schedule``; the earlier schedule's last steps, at σ/α down
to 0.004, hardly changed x̂₀) and draws its samples in antithetic pairs. Chosen on validation
images (``python benchmarks/speed.py --validation``, seeds 2000-2003, 256² crops of 512²
scenes at 2000 and 300 photons/px; mean PSNR, earlier 4 × 12: 19.46 dB): 3 × 3 18.81, 4 × 3
18.93, 2 × 4 19.14, 3 × 4 19.03, 4 × 2 18.28, 2 × 5 19.31, 2 × 6 19.34, 1 × 10 18.83 (final
σ/α 0.1 / 0.03 for 2 × 5: 19.31 / 19.27). Each choice undone (2 × 5): independent samples
18.85, steps down to t_min 18.92, both 18.39. In exploratory runs on 256² scenes (seeds 2000-2003,
earlier 19.86 dB) 4 × 3 gave 19.18 with the earlier schedule (3 seeds), 19.51 with this one,
19.84 antithetic; 2 × 5 19.64. IDT (seeds 2000-2001, both regimes; earlier 0.380e-3): 2 × 5 0.392e-3, 2 × 6
0.386e-3, 3 × 4 0.404e-3, 2 × 6 with the earlier schedule 0.403e-3; IDT takes 2 × 6
(``WS_STEPS_BY_TASK``, 12 evaluations). TIE: equal to 4 digits.
"""
from __future__ import annotations

import torch

from .posterior import (DivergenceError, denoise, diffusion_error_variance,
                        gaussian_error_variance, noise_power_spectrum, posterior_sample,
                        structured_noise)

__all__ = ["WS_STEPS", "WS_STEPS_BY_TASK", "WS_SAMPLES", "DivergenceError", "ws_sample",
           "ddim_update"]

ETA = 0.85
WS_STEPS = 5
#: IDT takes a sixth step: on validation images (``python benchmarks/speed.py --validation``,
#: seeds 2000-2003, 192² × 3 slices, both photon levels; Δn RMSE, earlier 4 × 12: 0.3835e-3)
#: 2 × 5 / 2 × 6 / 2 × 7 / 4 × 3 gave 0.3944 / 0.3886 / 0.3850 / 0.4264e-3, the worst case
#: +5.2 % / +2.5 % / +1.1 % / +14 % above the earlier default.
WS_STEPS_BY_TASK = {"idt": 6}
WS_SAMPLES = 2
FINAL_NOISE = 0.05


@torch.no_grad()
def ws_sample(problem, prior, *, steps: int | None = None, guidance: float | str = "auto",
              warm_start: bool = True, seed: int = 0, n_samples: int = WS_SAMPLES,
              eta: float = ETA, variance: str = "diffusion", white: bool = False,
              structured_variance: bool = True, classical_scales: bool = True, origin=(0, 0),
              progress=None, final_noise: float | None = FINAL_NOISE, antithetic: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Posterior mean (and per-pixel std when ``n_samples > 1``) in physical units.
    ``final_noise`` and ``antithetic``: ``posterior.posterior_sample`` (None, False: the
    earlier schedule down to t_min with independent samples).
    ``white``: the data step weighs by the white noise floor alone (no haze model: DDNM).
    ``structured_variance``: the error of ``x̂₀`` has the diffusion noise's spectrum
    ``|K̂(u)|²`` (False: a flat spectrum, DDNM's scalar). ``classical_scales``: the data-
    corrected ``x̂₀`` keeps the classical estimate's coarse structure where the problem says so
    (``problem.keep_classical_scales``; False: DDNM)."""
    if variance not in ("diffusion", "gaussian"):
        raise ValueError(f"variance must be 'diffusion' or 'gaussian'; got {variance!r}")
    weight = 1.0 if guidance == "auto" else float(guidance)
    gaussian = variance == "gaussian"

    def make_step(problem, prior, noise):
        # priors without metadata (analytic ones in tests) know no field scale
        metadata = getattr(prior, "metadata", None)
        prior_knows_field_scale = bool(metadata and metadata.field_scale_context)

        data_variance = problem.data_variance or _variance(problem.to_prior(problem.classical))
        structured = structured_variance and problem.structured_prior_error
        noise_spectrum = noise_power_spectrum(prior, problem) if structured else 1.0

        def step(x, t, t_next):
            x0, _ = denoise(prior, x, t)
            variance = (gaussian_error_variance(prior, t, data_variance, noise_spectrum) if gaussian
                        else diffusion_error_variance(prior, t) * noise_spectrum)
            precision = 1.0 / (problem.scale ** 2 * variance)
            x0 = problem.proximal(problem.from_prior(x0), precision, weight, white=white)
            if classical_scales and not prior_knows_field_scale:
                x0 = problem.keep_classical_scales(x0)
            x0 = problem.to_prior(x0).clamp(*prior.data_range)
            return ddim_update(prior, x, x0, t, t_next, eta, noise), x0
        return step

    return posterior_sample(problem, prior, make_step, steps=steps or WS_STEPS,
                            warm_start=warm_start, seed=seed, n_samples=n_samples,
                            progress=progress, origin=origin, final_noise=final_noise,
                            antithetic=antithetic)


def ddim_update(prior, x, x0, t, t_next, eta: float = 0.0, noise=None) -> torch.Tensor:
    """``x_{t'}`` from ``x_t`` and the (data-corrected) ``x̂₀``; ``eta`` ∈ [0, 1] adds fresh
    structured noise (0: deterministic, probability-flow-like; 1: DDPM-like ancestral)."""
    sde = prior.sde
    alpha, sigma = sde.alpha(t), sde.sigma(t)
    alpha_next, sigma_next = sde.alpha(t_next), sde.sigma(t_next)
    epsilon = (x - alpha * x0) / sigma
    if eta <= 0:
        return alpha_next * x0 + sigma_next * epsilon
    ratio = (sigma_next / sigma) * torch.sqrt(1 - (alpha / alpha_next) ** 2)
    fresh_std = (eta * ratio).clamp(max=sigma_next)
    kept = torch.sqrt(sigma_next ** 2 - fresh_std ** 2)
    return alpha_next * x0 + kept * epsilon + fresh_std * structured_noise(prior, x, noise)


def _variance(x: torch.Tensor) -> float:
    return float(x.var()) if x.numel() > 1 else 1.0
