"""VP SDE with structured diffusion (DESIGN.md §5) and the family of noise operators K.

    dx = −½ β(t) x dt + sqrt(β(t)) K dw,     β(t) = β_min + t (β_max − β_min),  t ∈ [0, 1]

has the marginal ``x_t = α_t x_0 + σ_t K z`` with ``α_t = exp(−½∫₀ᵗβ)``, ``σ_t² = 1 − α_t²``.
With ``G_t = sqrt(β_t) K`` the whitened conditional score is

    G_t G_tᵀ ∇ log p(x_t | x_0) = −(β_t / σ_t) K z,

so a network that predicts the structured noise ``ε̂ ≈ K z`` gives the whitened score
``n_θ = −(β_t/σ_t) ε̂`` with no inverse of ``K Kᵀ`` anywhere. ``K = I`` is the conventional model.
"""
from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..noise import StructuredNoise


class SDEConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    beta_min: float = Field(0.01, gt=0)
    beta_max: float = Field(20.0, gt=0)
    t_min: float = Field(1e-3, gt=0, lt=0.5, description="smallest training/sampling time")


class NoiseFamilyConfig(BaseModel):
    """Distribution of K drawn per training sample: Gaussian-random-field width σ (pixels,
    log-uniform), anisotropy σ_x/σ_y (log-uniform, axes randomly swapped), white-noise mix γ²
    (log-uniform). ``kind="white"`` is K = I (the conventional prior)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str = Field("structured", pattern="^(structured|white)$")
    sigma_px: tuple[float, float] = (1.0, 12.0)
    anisotropy: tuple[float, float] = (1.0, 1.5)
    white_mix: tuple[float, float] = (0.1, 1.0)

    @model_validator(mode="after")
    def _ordered(self):
        for name in ("sigma_px", "anisotropy", "white_mix"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be an increasing (low, high) pair > 0")
        return self

    def reference(self) -> StructuredNoise:
        """The K used to draw the initial noise of sampling: the family's geometric centre."""
        if self.kind == "white":
            return StructuredNoise(0.0)
        return StructuredNoise(math.sqrt(self.sigma_px[0] * self.sigma_px[1]),
                               math.sqrt(self.white_mix[0] * self.white_mix[1]))


class VPSDE:
    def __init__(self, config: SDEConfig | None = None):
        self.config = config or SDEConfig()

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        c = self.config
        return c.beta_min + t * (c.beta_max - c.beta_min)

    def beta_integral(self, t: torch.Tensor) -> torch.Tensor:
        """``∫₀ᵗ β(s) ds``."""
        c = self.config
        return c.beta_min * t + 0.5 * (c.beta_max - c.beta_min) * t ** 2

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * self.beta_integral(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(-self.beta_integral(t)))  # sqrt(1 − α²), stable at t → 0

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """``log(α_t/σ_t)``; ``time_of_log_snr`` is its inverse."""
        return torch.log(self.alpha(t) / self.sigma(t))

    def time_of_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        """Inverse of ``log(α_t/σ_t)``: solves ``∫₀ᵗβ = log(1 + e^{−2λ})`` for t."""
        c = self.config
        integral = torch.log1p(torch.exp(-2 * log_snr))
        slope = c.beta_max - c.beta_min
        return (-c.beta_min + torch.sqrt(c.beta_min ** 2 + 2 * slope * integral)) / slope

    def whitened_score(self, noise_prediction: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``n_θ = −(β_t/σ_t) ε̂``, broadcasting ``t`` (B,) over (B, ...)."""
        return -_expand(self.beta(t) / self.sigma(t), noise_prediction) * noise_prediction

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, structured_noise: torch.Tensor) -> torch.Tensor:
        """``x_t = α_t x_0 + σ_t K z`` with ``structured_noise = K z``."""
        return _expand(self.alpha(t), x0) * x0 + _expand(self.sigma(t), x0) * structured_noise

    def tweedie(self, x_t: torch.Tensor, t: torch.Tensor, noise_prediction: torch.Tensor) -> torch.Tensor:
        """Posterior-mean estimate ``x̂_0 = (x_t − σ_t ε̂) / α_t``."""
        return (x_t - _expand(self.sigma(t), x_t) * noise_prediction) / _expand(self.alpha(t), x_t)


def _expand(per_sample: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) → (B, 1, ..., 1) so per-sample factors never broadcast across the batch."""
    return per_sample.reshape(per_sample.shape + (1,) * (like.ndim - per_sample.ndim))


def sample_structured_noise(family: NoiseFamilyConfig, shape: tuple[int, ...],
                            generator: torch.Generator | None = None, device=None,
                            dtype=torch.float32) -> torch.Tensor:
    """``K_b z_b`` for a batch (B, 1, Y, X), each sample with its own K drawn from ``family``."""
    z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if family.kind == "white":
        return z
    batch = shape[0]
    power = torch.stack([_draw(family, generator).power_spectrum(tuple(shape[-2:]), device=device,
                                                                 dtype=dtype)
                         for _ in range(batch)])
    transfer = power.sqrt().reshape(batch, *([1] * (len(shape) - 3)), *shape[-2:])
    return torch.fft.ifft2(torch.fft.fft2(z) * transfer).real


def _draw(family: NoiseFamilyConfig, generator) -> StructuredNoise:
    u = torch.rand(4, generator=generator).tolist()
    sigma = _log_uniform(family.sigma_px, u[0])
    ratio = _log_uniform(family.anisotropy, u[1])
    widths = (sigma, sigma * ratio) if u[2] < 0.5 else (sigma * ratio, sigma)
    return StructuredNoise(widths, _log_uniform(family.white_mix, u[3]))


def _log_uniform(bounds: tuple[float, float], u: float) -> float:
    low, high = bounds
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
