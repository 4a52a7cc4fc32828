"""Speed of the reconstructions, against the previous release's default sampler in the same run.

    python benchmarks/speed.py                # test images; writes docs/benchmarks.md ("Speed")
    python benchmarks/speed.py --dry-run      # prints only
    python benchmarks/speed.py --validation   # the WS budget on validation images (prints)

Per task and method: network evaluations per image (counted, not assumed), wall time, output
Mpix/s, time relative to the classical solver and the task's quality metric. The previous
release's default ``ws`` (4 samples × 12 steps) runs on the same inputs in the same process:
its code is taken from git (``PREVIOUS_RELEASE``) and imported beside this one, so the rows
differ only by the code. Test inputs: the bundled samples and cases simulated with the quality
benchmark's test seeds (1000+), never used for tuning; ``--validation`` uses seeds 2000-2003,
on which the default budget was chosen.
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import IDT_OPTICS, ROOT, TIE_OPTICS, _device_name, invoked_command, publish, score

import wsprior
from wsprior.data.blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair
from wsprior.data.idt import (led_ring, permittivity_from_ri, simulate_idt_images,
                              snap_illumination_na, volume_phantom)
from wsprior.data.samples import IDT_MAX_DELTA_N, load_sample
from wsprior.data.tie import phase_phantom, simulate_defocus_stack

#: The last main before the fast default (issue 21): its default is 4 samples × 12 steps.
PREVIOUS_RELEASE = "e4c418e"
CLASSICAL = {"deblur_dehaze": "wiener", "tie": "tikhonov", "idt": "tikhonov"}
METRIC = {"deblur_dehaze": "PSNR (dB)", "tie": "phase RMSE (rad)", "idt": "Δn RMSE (×10⁻³)"}
RUNNERS = {"deblur_dehaze": "deblur_dehaze", "tie": "tie_phase", "idt": "idt"}
TEST_SEEDS, VALIDATION_SEEDS = (1000, 1001), (2000, 2001, 2002, 2003)
#: The validation grid of the WS budget: (samples, steps) with this version's schedule.
BUDGETS = {"deblur_dehaze": ((3, 3), (4, 3), (2, 4), (3, 4), (4, 2), (2, 5), (2, 6), (1, 10)),
           "idt": ((2, 5), (2, 6), (2, 7), (4, 3))}
#: Validation seeds per task (TIE: its result hardly depends on the budget).
VALIDATION_TASK_SEEDS = {"deblur_dehaze": VALIDATION_SEEDS, "idt": VALIDATION_SEEDS,
                         "tie": VALIDATION_SEEDS[:2]}


def previous_release(commit: str = PREVIOUS_RELEASE):
    """The package ``wsprior`` as of ``commit``, imported as ``wsprior_previous`` (its imports
    are relative, so both versions live in one process)."""
    folder = Path(tempfile.mkdtemp(prefix="wsprior_previous_"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src/wsprior"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "src" / "wsprior").rename(folder / "wsprior_previous")
    sys.path.insert(0, str(folder))
    return importlib.import_module("wsprior_previous")


# ------------------------------------------------------------------------------------ cases
def deblur_cases(seeds, size: int = 512):
    """(name, measurement, truth, parameters); normal (2000) and low light (300 photons/px)."""
    for seed in seeds:
        for photons in (2000, 300):
            acq = replace(WidefieldAcquisition(), photons=photons)
            params = dict(na=acq.na, wavelength_um=acq.wavelength_um,
                          pixel_size_um=acq.pixel_size_um, haze_sigma_um=acq.haze_sigma_um)
            measurement, truth = simulate_deblur_dehaze_pair((size, size), acq, seed)
            yield f"seed {seed}, {photons} ph", measurement, truth, params


def tie_cases(seeds, size: int = 512):
    """Fields cut from phantoms simulated at twice the size (light enters from outside)."""
    for seed in seeds:
        for noise, dz in ((0.01, 2.0), (0.03, 1.0)):
            rng = np.random.default_rng(seed)
            params = dict(TIE_OPTICS, z_um=[-dz, 0.0, dz])
            phase = phase_phantom((2 * size, 2 * size), TIE_OPTICS["pixel_size_um"], rng,
                                  max_phase_rad=2.0)
            stack = simulate_defocus_stack(phase, params["z_um"], noise_std=noise, rng=rng,
                                           pad=False, **TIE_OPTICS)
            centre = slice(size // 2, size // 2 + size)
            yield (f"seed {seed}, {noise:.0%} noise", stack[:, centre, centre],
                   phase[centre, centre], params)


def idt_cases(seeds, size: int = 192):
    leds = snap_illumination_na(led_ring(16, IDT_OPTICS["na"]), (size, size),
                                IDT_OPTICS["pixel_size_um"], IDT_OPTICS["wavelength_um"],
                                max_na=IDT_OPTICS["na"])
    params = dict(IDT_OPTICS, illumination_na=leds)
    for seed in seeds:
        for photons in (2000, 300):
            rng = np.random.default_rng(seed)
            delta_n, kappa = volume_phantom(3, (size, size), IDT_OPTICS["pixel_size_um"], rng,
                                            max_delta_n=IDT_MAX_DELTA_N)
            eps = permittivity_from_ri(delta_n, kappa, IDT_OPTICS["n_medium"])
            images = simulate_idt_images(eps, illumination_na=leds, photons=photons, rng=rng,
                                         **IDT_OPTICS)
            yield f"seed {seed}, {photons} ph", images, delta_n, params


CASES = {"deblur_dehaze": deblur_cases, "tie": tie_cases, "idt": idt_cases}


def cases(task: str, seeds, with_sample: bool):
    if with_sample:
        measurement, params, truth = load_sample(task)
        yield "bundled sample", measurement, truth, params
    yield from CASES[task](seeds)


# ---------------------------------------------------------------------------------- running
class EvaluationCounter:
    """Counts the network's forward passes of every prior class it wraps."""

    def __init__(self, *prior_classes):
        self.count = 0
        for cls in prior_classes:
            original = cls.noise_prediction

            def counted(prior, *args, _original=original, **kwargs):
                self.count += 1
                return _original(prior, *args, **kwargs)
            cls.noise_prediction = counted


def timed(counter: EvaluationCounter, function, *args, **kwargs):
    """(result, seconds, network evaluations)."""
    before = counter.count
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start, counter.count - before


def quality(task: str, truth, estimate) -> float:
    return score(task, truth, estimate)[METRIC[task]]


def run(task: str, variants: dict, case_list, counter) -> dict:
    """Per variant: seconds, evaluations, output pixels and quality per case."""
    rows = {name: dict(seconds=[], evaluations=[], pixels=[], quality=[]) for name in variants}
    for label, measurement, truth, params in case_list:
        for name, function in variants.items():
            result, seconds, evaluations = timed(counter, function, measurement, **params)
            row = rows[name]
            row["seconds"].append(seconds)
            row["evaluations"].append(evaluations)
            row["pixels"].append(np.asarray(result).size)
            row["quality"].append(quality(task, truth, result))
            print(f"  {task:13s} {label:22s} {name:34s} {seconds:7.2f} s  {evaluations:3d} evals"
                  f"  {METRIC[task]} {row['quality'][-1]:.4g}", flush=True)
    return rows


def variants(task: str, previous) -> dict:
    current = getattr(wsprior, RUNNERS[task])
    return {f"classical ({CLASSICAL[task]})": partial(current, method=CLASSICAL[task]),
            "ws (this version)": partial(current, method="ws"),
            "ws (previous release, 4 × 12)": partial(getattr(previous, RUNNERS[task]),
                                                     method="ws")}


# ---------------------------------------------------------------------------------- tables
def task_table(task: str, rows: dict) -> str:
    classical = np.array(rows[f"classical ({CLASSICAL[task]})"]["seconds"])
    lines = [f"| method | network evaluations / image | seconds / image | Mpix/s | × classical "
             f"time | {METRIC[task]} |", "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        seconds = np.array(row["seconds"])
        mpix = np.sum(row["pixels"]) / 1e6 / seconds.sum()
        lines.append(f"| {name} | {np.mean(row['evaluations']):.0f} | {seconds.mean():.2f} | "
                     f"{mpix:.3g} | {np.mean(seconds / classical):.1f} | "
                     f"{np.mean(row['quality']):.4g} |")
    return "\n".join(lines)


def comparison(task: str, rows: dict, labels: list[str]) -> str:
    """This version's ws against the previous release's, case by case."""
    new, old = rows["ws (this version)"], rows["ws (previous release, 4 × 12)"]
    speedup = np.array(old["seconds"]) / np.array(new["seconds"])
    change = _change(task, np.array(new["quality"]), np.array(old["quality"]))
    unit, header = (("dB", "PSNR change (dB)") if task == "deblur_dehaze"
                    else ("%", "RMSE change (%)"))
    lines = [f"| case | speed-up | {header} |", "|---|---|---|"]
    lines += [f"| {label} | {s:.2f}× | {c:+.2f} |" for label, s, c in zip(labels, speedup, change)]
    lines.append(f"| **all** | **{speedup.min():.2f}–{speedup.max():.2f}× (median "
                 f"{np.median(speedup):.2f}×)** | **mean {change.mean():+.2f} {unit}, worst "
                 f"{(change.min() if unit == 'dB' else change.max()):+.2f} {unit}** |")
    return "\n".join(lines)


def report(results: dict, command: str, threads: int) -> str:
    parts = ["## Speed (CPU unless named)", "",
             f"`{command}` on {_device_name()}, {threads} torch threads; revision "
             f"{_revision()}, previous release {PREVIOUS_RELEASE} imported in the same process. "
             "Test inputs: the bundled samples (512² deblur, 384² TIE, 16 × 256² IDT) and "
             "cases simulated with test seeds 1000-1001 (deblur and TIE 512², TIE cut from a "
             "1024² scene; IDT 192² × 3 slices; normal and low light), never tuned on. "
             "Wall time per image includes parameter estimation and the classical warm start. "
             "Network evaluations are counted forward passes (IDT: the slices in one batch).",
             "", "GPU: not measured (no GPU machine was available for this run).", ""]
    for task, (rows, labels) in results.items():
        parts += [f"### {task}", "", task_table(task, rows), "",
                  "ws, this version vs the previous release's default, per case:", "",
                  comparison(task, rows, labels), ""]
    return "\n".join(parts)


def _revision() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "unknown"


# ------------------------------------------------------------------------------- validation
def validation(previous, counter) -> None:
    """Previous vs this default on every task, and the WS budget grid on deblur + dehaze."""
    for task in CASES:
        case_list = list(cases(task, VALIDATION_TASK_SEEDS[task], with_sample=False))
        case_list = [(label, *_crop(task, m, t), p) for label, m, t, p in case_list]
        chosen = variants(task, previous)
        chosen.pop(f"classical ({CLASSICAL[task]})")
        run_ws = getattr(wsprior, RUNNERS[task])
        for samples, steps in BUDGETS.get(task, ()):
            chosen[f"ws {samples} × {steps}"] = partial(run_ws, method="ws", n_samples=samples,
                                                       steps=steps)
        if task == "deblur_dehaze":
            for name, options in ABLATIONS.items():
                chosen[name] = partial(_ablated, run_ws, options)
        rows = run(task, chosen, case_list, counter)
        previous_quality = np.array(rows["ws (previous release, 4 × 12)"]["quality"])
        for name, row in rows.items():
            change = _change(task, np.array(row["quality"]), previous_quality)
            worst = change.min() if task == "deblur_dehaze" else change.max()
            unit = "dB" if task == "deblur_dehaze" else "%"
            print(f"VALIDATION {task:13s} {name:34s} {METRIC[task]} "
                  f"{np.mean(row['quality']):.4g}  worst case vs previous {worst:+.2f} {unit}  "
                  f"{np.mean(row['seconds']):.2f} s")


def _change(task: str, quality: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Per case: PSNR difference (dB), or RMSE change (%), against the previous release."""
    return quality - previous if task == "deblur_dehaze" else 100 * (quality / previous - 1)


#: The default's two choices besides the budget, each undone in turn (2 × 5).
ABLATIONS = {"ws 2 × 5, independent samples": dict(antithetic=False),
             "ws 2 × 5, steps down to t_min": dict(final_noise=None),
             "ws 2 × 5, both undone": dict(antithetic=False, final_noise=None)}


def _ablated(run, options: dict, measurement, **params):
    """``run(method="ws")`` with the WS sampler's keywords ``options`` changed."""
    from wsprior.solvers import samplers, ws

    default = samplers.SAMPLERS["ws"]
    samplers.SAMPLERS["ws"] = partial(ws.ws_sample, **options)
    try:
        return run(measurement, method="ws", **params)
    finally:
        samplers.SAMPLERS["ws"] = default


def _crop(task: str, measurement, truth, size: int = 256):
    """Validation runs on 256² centre crops (deblur, TIE) to stay short."""
    if task == "idt":
        return measurement, truth
    ny, nx = truth.shape[-2:]
    y0, x0 = (ny - size) // 2, (nx - size) // 2
    window = (..., slice(y0, y0 + size), slice(x0, x0 + size))
    return np.ascontiguousarray(measurement[window]), np.ascontiguousarray(truth[window])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print, do not write docs")
    parser.add_argument("--validation", action="store_true",
                        help="the budget on validation images (prints only)")
    parser.add_argument("--tasks", nargs="+", choices=tuple(CASES), default=tuple(CASES))
    args = parser.parse_args(argv)
    previous = previous_release()
    from wsprior.prior.diffusion_prior import DiffusionPrior
    counter = EvaluationCounter(DiffusionPrior,
                                previous.prior.diffusion_prior.DiffusionPrior)
    if args.validation:
        validation(previous, counter)
        return
    results = {}
    for task in args.tasks:
        case_list = list(cases(task, TEST_SEEDS, with_sample=True))
        rows = run(task, variants(task, previous), case_list, counter)
        results[task] = (rows, [label for label, *_ in case_list])
    text = report(results, invoked_command("speed.py", argv), torch.get_num_threads())
    publish(text, ROOT / "docs" / "benchmarks.md", marker="speed", dry_run=args.dry_run)


if __name__ == "__main__":
    main()
