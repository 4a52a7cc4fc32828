"""What every diffusion posterior sampler shares: the time schedule (optionally a warm start),
the initial state, the loop with progress and divergence checks, and posterior mean / std over
``n_samples`` draws.

A sampler is a *step factory* ``make_step(problem, prior, noise) -> step`` with
``step(x, t, t_next) -> (x_next, x̂_0)`` in the prior's units (``problem.to_prior``); a factory
may keep state of its own (the joint sampler's haze) in the closure it returns. ``noise`` is the
sample's ``PositionalNoise``: every random draw is a fixed field in image coordinates, so a tile
of a plane draws the same noise as the whole plane at the same pixels (``wsprior.tiling``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..prior.sampling import time_grid

#: Defaults of the conventional samplers (dps, score_ald, ddnm, joint): ``DEFAULT_SAMPLES`` draws
#: of ``DEFAULT_STEPS`` steps, averaged (48 network evaluations). The posterior mean is the
#: minimum-MSE estimate, and one draw has twice its error in theory; short warm-started draws
#: also stay closer to the data. On validation images (seeds 2000-2001, deblur + dehaze, WS
#: prior) 1 × 30 / 2 × 25 / 3 × 16 / 4 × 12 / 6 × 8 / 12 × 4 draws × steps gave 21.9 / – / 23.3 /
#: 23.9 / 24.0 / 24.0 dB (CPU prior of 6250 steps); dps, score_ald, ddnm and joint gained
#: 2.1 / 0.6 / 0.1 / 1.0 dB from 1 × 30 to 4 × 12. The WS sampler's own, cheaper default:
#: ``wsprior.solvers.ws``.
DEFAULT_STEPS = 12
DEFAULT_SAMPLES = 4
#: A warm start diffuses the classical solution to this t (noise σ/α ≈ 3 in prior units): enough
#: noise for the prior to replace its artefacts, few enough steps to stay cheap (SDEdit / CCDF).
WARM_START_T = 0.5
_DIVERGENCE_FACTOR = 1e4

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
StepFactory = Callable[..., Step]


class DivergenceError(ValueError):
    """The sampler produced NaN/Inf or an exploding data residual."""


def posterior_sample(problem, prior, make_step: StepFactory, *, steps: int | None = None,
                     warm_start: bool = True, seed: int = 0, n_samples: int = 1,
                     progress: Callable[[int, int], None] | None = None,
                     origin: tuple[int, int] = (0, 0), final_noise: float | None = None,
                     antithetic: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Posterior mean (and per-pixel std when ``n_samples > 1``) in physical units.
    ``progress(done, total)`` counts network evaluations' steps over all samples. ``origin``:
    the image pixel of the problem's top-left corner (a tile's window), so the initial noise
    is the same field whether a plane is solved whole or tile by tile. ``final_noise``: the
    warm-started schedule ends at this noise level σ/α (``schedule``). ``antithetic``: samples
    2k and 2k + 1 draw the same noise with opposite signs (their mean cancels the noise's
    odd-order effects: a variance reduction for the posterior mean)."""
    steps = steps or DEFAULT_STEPS
    samples = []
    for index in range(n_samples):
        report = _offset_progress(progress, index, n_samples)
        noise = (PositionalNoise(seed + index // 2, origin, sign=-1.0 if index % 2 else 1.0)
                 if antithetic else PositionalNoise(seed + index, origin))
        samples.append(_one_sample(problem, prior, make_step, steps, warm_start, noise, report,
                                   final_noise))
    stack = torch.stack(samples)
    std = stack.std(dim=0) if n_samples > 1 else None
    return stack.mean(dim=0), std


def _one_sample(problem, prior, make_step, steps, warm_start, noise, progress, final_noise):
    times = schedule(prior.sde, steps, warm_start, problem.classical.device, final_noise)
    x = initial_state(problem, prior, times[0], warm_start, noise)
    step = make_step(problem, prior, noise)
    reference = problem.residual_norm(problem.classical)
    x0 = problem.to_prior(problem.classical)
    for i in range(steps):
        x, x0 = step(x, times[i], times[i + 1])
        # A sampler whose x̂₀ is not data-consistent (Score-ALD) starts far off: its first
        # residual is a reference too, so only growth from there counts as divergence.
        residual = check_divergence(problem, x0, reference if i else None, i)
        if i == 0:
            reference = max(reference, residual)
        if progress is not None:
            progress(i + 1, steps)
    return problem.output(problem.from_prior(x0))


def schedule(sde, steps: int, warm_start: bool, device,
             final_noise: float | None = None) -> torch.Tensor:
    """``steps + 1`` times, log-SNR uniform, from 1 (or ``WARM_START_T``) down to ``t_min``;
    warm-started with a ``final_noise``, from ``WARM_START_T`` down to the time where the noise
    level σ/α is ``final_noise`` (below it the prior hardly changes x̂₀, so no step is spent
    there)."""
    if not warm_start:
        return time_grid(sde, steps, device=device)
    if final_noise is not None:
        start = torch.tensor(WARM_START_T, dtype=torch.float64)
        ends = (float(sde.log_snr(start)), -math.log(final_noise))
        log_snr = torch.linspace(*ends, steps + 1, dtype=torch.float64)
        return sde.time_of_log_snr(log_snr).to(device=device, dtype=torch.float32)
    full = time_grid(sde, 4 * steps, device=device)
    first = int(torch.searchsorted(-full, torch.tensor(-WARM_START_T, device=device)))
    subset = full[first:]
    index = torch.linspace(0, len(subset) - 1, steps + 1, device=device).round().long()
    return subset[index]


def initial_state(problem, prior, t: torch.Tensor, warm_start: bool,
                  noise: PositionalNoise) -> torch.Tensor:
    """Structured noise ``K_ref z`` at t = 1, or the classical solution diffused to ``t``."""
    start = problem.to_prior(problem.classical)
    diffusion = structured_noise(prior, start, noise)
    if not warm_start:
        return diffusion
    return prior.sde.alpha(t) * start + prior.sde.sigma(t) * diffusion


NOISE_BLOCK = 64


def positional_normal(shape: tuple[int, ...], origin: tuple[int, int], seed: int) -> torch.Tensor:
    """Standard normal noise ``shape`` (..., Y, X) whose value at image pixel ``origin + (y, x)``
    depends only on the seed, the leading index and the pixel: drawn in ``NOISE_BLOCK``² blocks
    of the infinite image grid, each from its own generator. Any window of a plane therefore
    sees the same noise as the whole plane."""
    *lead, ny, nx = shape
    y0, x0 = origin
    planes = []
    for channel in range(math.prod(lead)):
        rows = []
        for by in range(y0 // NOISE_BLOCK, (y0 + ny - 1) // NOISE_BLOCK + 1):
            row = [_block(seed, channel, by, bx)
                   for bx in range(x0 // NOISE_BLOCK, (x0 + nx - 1) // NOISE_BLOCK + 1)]
            rows.append(torch.cat(row, dim=1))
        grid = torch.cat(rows, dim=0)
        top, left = y0 - (y0 // NOISE_BLOCK) * NOISE_BLOCK, x0 - (x0 // NOISE_BLOCK) * NOISE_BLOCK
        planes.append(grid[top:top + ny, left:left + nx])
    return torch.stack(planes).reshape(shape)


def _block(seed: int, channel: int, by: int, bx: int) -> torch.Tensor:
    key = hash((seed, channel, by, bx)) & 0x7FFF_FFFF_FFFF_FFFF  # ints hash deterministically
    return torch.randn(NOISE_BLOCK, NOISE_BLOCK, generator=torch.Generator().manual_seed(key))


class PositionalNoise:
    """The random draws of one sample: the k-th draw is ``sign`` × ``positional_normal`` with
    key ``(seed, k)`` at the problem's ``origin`` in the image."""

    def __init__(self, seed: int, origin: tuple[int, int] = (0, 0), sign: float = 1.0):
        self.seed, self.origin, self.sign, self.draws = seed, origin, sign, 0

    def __call__(self, like: torch.Tensor) -> torch.Tensor:
        key = hash((self.seed, self.draws)) & 0x7FFF_FFFF_FFFF_FFFF
        self.draws += 1
        return self.sign * positional_normal(tuple(like.shape), self.origin, key).to(like)


def structured_noise(prior, like: torch.Tensor, noise: PositionalNoise) -> torch.Tensor:
    """``K_ref z`` shaped like ``like`` (the prior family's reference noise operator)."""
    return prior.noise_family.reference().apply(noise(like))


def denoise(prior, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x̂_0, ε̂)``: Tweedie's estimate clipped to the prior's data range, and the noise
    consistent with it (near t = 1, ``1/α_t`` amplifies any network error far out of range)."""
    alpha, sigma = prior.sde.alpha(t), prior.sde.sigma(t)
    x0 = ((x - sigma * prior.noise_prediction(x, t)) / alpha).clamp(*prior.data_range)
    return x0, (x - alpha * x0) / sigma


def gaussian_error_variance(prior, t: torch.Tensor, data_variance: float,
                            noise_spectrum: torch.Tensor | float = 1.0) -> torch.Tensor | float:
    """Error variance of ``x̂_0`` at t for white data of variance ``c`` (prior units):
    ``v_t(u) = 1 / (α_t²/(σ_t² |K̂(u)|²) + 1/c)``, the Gaussian posterior variance per frequency
    (``noise_spectrum`` = ``|K̂|²``; 1: white diffusion noise)."""
    alpha, sigma = prior.sde.alpha(t), prior.sde.sigma(t)
    return 1.0 / (float(alpha ** 2 / sigma ** 2) / noise_spectrum + 1.0 / data_variance)


def noise_power_spectrum(prior, problem) -> torch.Tensor:
    """``|K̂(u)|²`` of the prior's reference noise on the problem's padded FFT grid."""
    return prior.noise_family.reference().power_spectrum(
        problem.padded_shape, device=problem.classical.device, dtype=problem.classical.dtype)


def diffusion_error_variance(prior, t: torch.Tensor) -> float:
    """``γ_t² = σ_t²/α_t²``: the variance of the noise still in ``x_t/α_t`` (prior units)."""
    return float(prior.sde.sigma(t) ** 2 / prior.sde.alpha(t) ** 2)


def check_divergence(problem, x0: torch.Tensor, reference_residual: float | None,
                     step: int) -> float:
    """Raise ``DivergenceError`` on NaN/Inf or a data residual ``_DIVERGENCE_FACTOR`` times the
    reference (``None``: no reference yet); return the residual."""
    if not torch.isfinite(x0).all():
        raise DivergenceError(f"the sampler diverged (NaN/Inf) at step {step + 1}; "
                              "lower guidance or use more steps")
    residual = problem.residual_norm(problem.from_prior(x0))
    if (reference_residual is not None
            and residual > _DIVERGENCE_FACTOR * max(reference_residual, 1e-12)):
        raise DivergenceError(f"the sampler diverged at step {step + 1}: data residual "
                              f"{residual:.3g} vs {reference_residual:.3g} for the classical "
                              "solution or the first step; lower guidance or use more steps")
    return residual


def _offset_progress(progress, index: int, total: int):
    if progress is None:
        return None
    return lambda done, steps: progress(index * steps + done, total * steps)
