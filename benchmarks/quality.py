"""Reconstruction quality of every available method on a fixed synthetic test set.

    python benchmarks/quality.py                 # writes docs/benchmarks.md (quality section)

The test set (seeds 1000+) is disjoint from the sample data (seeds 11-13), the unit tests and
anything used to choose defaults. Each task runs in two regimes stated in physical terms
(DESIGN.md §7): *normal* and *low light*. Baselines: the raw input (deblur), or the zero
estimate (TIE, IDT: their raw data are not in the units of the result).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import wsprior
from wsprior import metrics
from wsprior.data.blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair
from wsprior.data.idt import (led_ring, permittivity_from_ri, simulate_idt_images,
                              snap_illumination_na, volume_phantom)
from wsprior.data.samples import IDT_MAX_DELTA_N
from wsprior.data.tie import phase_phantom, simulate_defocus_stack

ROOT = Path(__file__).resolve().parents[1]
SEEDS = tuple(range(1000, 1006))
METHODS = {"deblur_dehaze": ("wiener", "rl"), "tie": ("tikhonov",), "idt": ("tikhonov",)}

DEBLUR_REGIMES = {"normal (2000 photons/px)": 2000, "low light (300 photons/px)": 300}
TIE_REGIMES = {"normal (1 % noise, Δz = 2 µm)": (0.01, 2.0), "low light (3 % noise, Δz = 1 µm)": (0.03, 1.0)}
IDT_REGIMES = {"normal (2000 photons/px)": 2000, "low light (300 photons/px)": 300}
TIE_OPTICS = dict(wavelength_um=0.53, pixel_size_um=0.2, n_medium=1.33)
IDT_OPTICS = dict(wavelength_um=0.53, na=0.4, pixel_size_um=0.25, n_medium=1.33,
                  z_um=[-2.0, 0.0, 2.0], slice_thickness_um=2.0)


def deblur_cases(photons: int):
    acq = replace(WidefieldAcquisition(), photons=photons)
    params = dict(na=acq.na, wavelength_um=acq.wavelength_um, pixel_size_um=acq.pixel_size_um,
                  haze_sigma_um=acq.haze_sigma_um)
    for seed in SEEDS:
        measurement, truth = simulate_deblur_dehaze_pair((256, 256), acq, seed)
        yield measurement, truth, params


def tie_cases(noise: float, dz: float):
    """256² fields of view cut from 512² phantoms simulated whole (no padding): light from the
    cells beyond the border reaches it, as in a microscope. (Until issue 19 the 256² phantom
    was simulated alone, mirror-padded: a specimen mirror-symmetric about the field border,
    which the mirror-extended solver models exactly, and no real specimen is.)"""
    params = dict(TIE_OPTICS, z_um=[-dz, 0.0, dz])
    centre = slice(128, 384)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        phase = phase_phantom((512, 512), TIE_OPTICS["pixel_size_um"], rng, max_phase_rad=2.0)
        stack = simulate_defocus_stack(phase, params["z_um"], noise_std=noise, rng=rng,
                                       pad=False, **TIE_OPTICS)
        yield stack[:, centre, centre], phase[centre, centre], params


def idt_cases(photons: int):
    shape = (192, 192)
    leds = snap_illumination_na(led_ring(16, IDT_OPTICS["na"]), shape, IDT_OPTICS["pixel_size_um"],
                                IDT_OPTICS["wavelength_um"], max_na=IDT_OPTICS["na"])
    params = dict(IDT_OPTICS, illumination_na=leds)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        delta_n, kappa = volume_phantom(3, shape, IDT_OPTICS["pixel_size_um"], rng,
                                        max_delta_n=IDT_MAX_DELTA_N)
        eps = permittivity_from_ri(delta_n, kappa, IDT_OPTICS["n_medium"])
        images = simulate_idt_images(eps, illumination_na=leds, photons=photons, rng=rng, **IDT_OPTICS)
        yield images, delta_n, params


TASKS = {
    "deblur_dehaze": (wsprior.deblur_dehaze, DEBLUR_REGIMES, deblur_cases),
    "tie": (wsprior.tie_phase, TIE_REGIMES, tie_cases),
    "idt": (wsprior.idt, IDT_REGIMES, idt_cases),
}


def score(task: str, truth, estimate) -> dict:
    if task == "deblur_dehaze":
        return {"PSNR (dB)": metrics.psnr(truth, estimate),
                "PSNR, gain/offset fitted (dB)": metrics.fitted_psnr(truth, estimate),
                "SSIM": metrics.ssim(truth, estimate)}
    if task == "tie":
        return {"phase RMSE (rad)": metrics.zero_mean_rmse(truth, estimate)}
    return {"Δn RMSE (×10⁻³)": 1e3 * metrics.zero_mean_rmse(truth, estimate)}


def baselines(task: str, measurement, truth) -> dict:
    """What every method must beat: the raw input and the input with its constant offset
    removed (deblur), or the zero estimate (TIE, IDT: raw data are not in the result's units)."""
    if task == "deblur_dehaze":
        return {"input (raw)": measurement,
                "input − 1st percentile": measurement - np.percentile(measurement, 1)}
    return {"zero estimate": np.zeros_like(truth)}


def evaluate(task: str, regime: str, args) -> list[dict]:
    run, regimes, make_cases = TASKS[task]
    cases = list(make_cases(*np.atleast_1d(regimes[regime]).tolist()))
    rows = [_row(task, regime, name, [score(task, t, baselines(task, m, t)[name])
                                      for m, t, _ in cases], 0.0)
            for name in baselines(task, *cases[0][:2])]
    for method in METHODS[task]:
        scores, seconds = [], 0.0
        for measurement, truth, params in cases:
            start = time.perf_counter()
            estimate = run(measurement, method=method, device=args.device, **params)
            seconds += time.perf_counter() - start
            scores.append(score(task, truth, estimate))
        rows.append(_row(task, regime, method, scores, seconds / len(cases)))
    return rows


def _row(task, regime, method, scores, seconds) -> dict:
    mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
    return dict(task=task, regime=regime, method=method, **mean, **{"s / image": seconds})


def markdown(rows: list[dict], command: str) -> str:
    out = ["## Reconstruction quality (synthetic test set)", "",
           f"Command: `{command}` — {len(SEEDS)} images per regime (seeds {SEEDS[0]}–{SEEDS[-1]}), "
           "mean over images; device " + _device_name() + ".", ""]
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        keys = [k for k in task_rows[0] if k not in ("task",)]
        out += [f"### {task}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        out += ["| " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in task_rows]
        out.append("")
    return "\n".join(out)


def _device_name() -> str:
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def invoked_command(script: str, argv=None) -> str:
    """The command line that ran ``benchmarks/<script>`` (``argv``: given arguments, else sys.argv)."""
    return (f"python benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv)).strip()


def publish(text: str, path: Path, marker: str, dry_run: bool = False) -> None:
    """Print a section and, unless ``dry_run``, write it into ``path`` (``write_section``)."""
    print(text)
    if not dry_run:
        write_section(path, text, marker=marker)
        print(f"wrote {path}")


def write_section(path: Path, section: str, marker: str = "quality") -> None:
    """Replace (or append) the section between ``<!-- marker -->`` comments in ``path``."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    rows = []
    for task in args.tasks:
        for regime in TASKS[task][1]:
            rows += evaluate(task, regime, args)
            print(*({k: _fmt(v) for k, v in row.items()} for row in rows if row["regime"] == regime
                    and row["task"] == task), sep="\n", flush=True)
    write_section(args.output, markdown(rows, invoked_command("quality.py", argv)))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
