"""One-step denoising quality (Tweedie x̂₀) of the shipped priors on held-out content — synthetic
phantoms, held-out micrographs and crops of real images no prior trained on (the robustness
benchmark's validation images) — under structured and under white noise, at several diffusion times, against a
classical denoiser (the linear MMSE / Wiener filter with the exact noise spectrum and the mean
signal spectrum of separate images of the same content).

    python benchmarks/prior.py        # writes the "prior" section of docs/benchmarks.md
    python benchmarks/prior.py --extra new=train_runs/ws.safetensors --dry-run   # compare one
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ROOT, write_section  # noqa: E402

from wsprior.data import specimens  # noqa: E402
from wsprior.data.robustness import source_names  # noqa: E402
from wsprior.data.training_set import (HELD_OUT_SOURCES, Augmentation, PatchSampler,  # noqa: E402
                                       synthetic_images, to_unit_range)
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


def held_out_crops(names, count: int, seed: int) -> np.ndarray:
    """``count`` SIZE² crops of the named source images at view scales 0.5-4 source pixels
    per pixel, in [-1, 1]."""
    images = [to_unit_range(specimens.load_source(n)) for n in names]
    sampler = PatchSampler(images, SIZE, seed, Augmentation(view_scale=(0.5, 4.0), gamma=(1, 1),
                                                              offset=(0, 0)))
    return sampler(count)[:, 0].numpy()


VALIDATION_IMAGES = source_names(("validation",))
CONTENT = {
    "phantoms": lambda seed: synthetic_images(COUNT, SIZE, seed),
    "micrographs (held out)": lambda seed: held_out_crops(HELD_OUT_SOURCES, COUNT, seed),
    "real scenes (held out)": lambda seed: held_out_crops(VALIDATION_IMAGES, COUNT, seed),
}


def evaluate(priors: dict, noises: dict, contents=tuple(CONTENT)) -> list[dict]:
    return [row for content in contents for row in _evaluate(priors, noises, content)]


def _evaluate(priors: dict, noises: dict, content: str) -> list[dict]:
    truth = torch.from_numpy(CONTENT[content](HELD_OUT_SEED))
    reference = torch.from_numpy(CONTENT[content](SPECTRUM_SEED))
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
            row = {"content": content, "noise": noise_name, "t": t, "σ_t/α_t": float(sigma / alpha),
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
             "Command: `python benchmarks/prior.py` — PSNR (dB, images scaled to [-1, 1]), mean "
             f"over {COUNT} held-out {SIZE}² images of each content: synthetic phantoms (seed "
             f"{HELD_OUT_SEED}; training used seed 0) and crops, at 0.5-4 image pixels per pixel, of "
             "real images no prior trained on: three held-out micrographs (BBBC007 nuclei of "
             "another plate, ImageJ's blobs) and the robustness benchmark's validation images. "
             "x_t = α_t x₀ + σ_t n with n structured (the WS family's reference K: Gaussian random "
             "field + white mix; and its widest field) or white. The Wiener column knows the exact "
             "noise spectrum and the content's mean signal spectrum.", ""]
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
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME=PRIOR",
                        help="more priors to compare (names or .safetensors files)")
    parser.add_argument("--contents", nargs="+", default=list(CONTENT), choices=list(CONTENT))
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--dry-run", action="store_true", help="print the section, write nothing")
    args = parser.parse_args(argv)
    priors = {"WS prior": load_prior(args.ws), "conventional prior": load_prior(args.conventional)}
    priors.update({name: load_prior(path) for name, path in
                   (item.split("=", 1) for item in args.extra)})
    family = priors["WS prior"].noise_family
    structured = family.reference()
    noises = {f"structured (σ={structured.sigma_px[0]:.2g} px, γ²={structured.white_mix:.2g})": structured,
              f"structured wide (σ={family.sigma_px[1]:.3g} px, γ²={family.white_mix[0]:.2g})":
                  StructuredNoise(family.sigma_px[1], family.white_mix[0]),
              "white": StructuredNoise(0.0)}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = evaluate(priors, noises, args.contents)
    section = markdown(rows, priors)
    if args.dry_run:
        print(section)
        return
    write_section(args.output, section, marker="prior")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
