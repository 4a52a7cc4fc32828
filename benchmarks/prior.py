"""One-step denoising quality (Tweedie x̂₀) of the shipped priors on held-out synthetic images,
under structured and under white noise, at several diffusion times, against a classical
denoiser (the linear MMSE / Wiener filter with the exact noise spectrum and the mean signal
spectrum of separate training-distribution images).

    python benchmarks/prior.py        # writes the "prior" section of docs/benchmarks.md
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ROOT, write_section  # noqa: E402

from wsprior.data.training_set import synthetic_images  # noqa: E402
from wsprior.noise import StructuredNoise  # noqa: E402
from wsprior.prior import load_prior  # noqa: E402

TIMES = (0.1, 0.2, 0.4)
HELD_OUT_SEED, SPECTRUM_SEED = 9999, 4242   # training used seed 0
SIZE, COUNT = 128, 24


def psnr(truth: torch.Tensor, estimate: torch.Tensor) -> float:
    """Mean PSNR (dB) over images, data range 2 (images scaled to [-1, 1])."""
    mse = (truth - estimate).pow(2).mean(dim=(-2, -1))
    return float((10 * torch.log10(4 / mse)).mean())


def wiener(x_t, alpha, sigma, signal_mean, signal_power, noise_power):
    """Linear MMSE estimate of x₀ from x_t = α x₀ + σ n (all spectra known)."""
    gain = alpha * signal_power / (alpha ** 2 * signal_power + sigma ** 2 * noise_power)
    residual = torch.fft.fft2(x_t - alpha * signal_mean)
    return signal_mean + torch.fft.ifft2(gain * residual).real


def evaluate(priors: dict, noises: dict) -> list[dict]:
    truth = torch.from_numpy(synthetic_images(COUNT, SIZE, HELD_OUT_SEED))
    reference = torch.from_numpy(synthetic_images(COUNT, SIZE, SPECTRUM_SEED))
    signal_mean = reference.mean()
    signal_power = (torch.fft.fft2(reference - signal_mean).abs() ** 2).mean(0) / SIZE ** 2
    generator = torch.Generator().manual_seed(0)
    sde = next(iter(priors.values())).sde
    rows = []
    for noise_name, operator in noises.items():
        noise_power = operator.power_spectrum((SIZE, SIZE))
        for t in TIMES:
            tt = torch.tensor(t)
            alpha, sigma = sde.alpha(tt), sde.sigma(tt)
            x_t = alpha * truth + sigma * operator.sample(truth.shape, generator=generator)
            row = {"noise": noise_name, "t": t, "σ_t/α_t": float(sigma / alpha),
                   "input x_t/α_t": psnr(truth, x_t / alpha),
                   "Wiener (exact spectra)": psnr(truth, wiener(x_t, alpha, sigma, signal_mean,
                                                               signal_power, noise_power))}
            with torch.no_grad():
                for name, prior in priors.items():
                    row[name] = psnr(truth, prior.tweedie(x_t, tt).clamp(-1, 1))
            rows.append(row)
            print(row, flush=True)
    return rows


def markdown(rows: list[dict], priors: dict) -> str:
    keys = list(rows[0])
    lines = ["## Prior: one-step denoising (Tweedie x̂₀)", "",
             "Command: `python benchmarks/prior.py` — PSNR (dB, images scaled to [-1, 1]) on "
             f"{COUNT} held-out synthetic {SIZE}² phantoms (seed {HELD_OUT_SEED}; training used seed 0), "
             "x_t = α_t x₀ + σ_t n with n structured (the WS family's reference K: Gaussian random "
             "field + white mix) or white. The Wiener column knows the exact noise spectrum.", ""]
    for name, prior in priors.items():
        m = prior.metadata
        lines.append(f"- **{name}**: `{m.kind}` prior, {m.steps} steps on {m.training_device}, "
                     f"final loss {m.final_loss:.4g}, trained with `{m.training_command}`")
    lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                       for v in row.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ws", default="default", help="WS prior (name or .safetensors)")
    parser.add_argument("--conventional", default="conventional")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    priors = {"WS prior": load_prior(args.ws), "conventional prior": load_prior(args.conventional)}
    structured = priors["WS prior"].noise_family.reference()
    noises = {f"structured (σ={structured.sigma_px[0]:.2g} px, γ²={structured.white_mix:.2g})": structured,
              "white": StructuredNoise(0.0)}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = evaluate(priors, noises)
    write_section(args.output, markdown(rows, priors), marker="prior")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
