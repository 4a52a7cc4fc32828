"""Where the TIE phase error sits: by scale, and in the harmonic functions the data leave open.

    python benchmarks/tie_error_budget.py            # writes docs/benchmarks.md (TIE error budget)
    python benchmarks/tie_error_budget.py --dry-run  # prints only

On a finite field of view, TIE data determine the phase only up to a harmonic function
(``∇²h = 0``): the flux through the border is not measured, and the FFT solver fills that gap
with a boundary assumption (mirror extension: Neumann). This diagnostic splits each method's
error on the sampler benchmark's cases (same test images, same 256² crops) into

* its harmonic part: the least-squares fit of the harmonic polynomials of degree ≤ 2
  (1, x, y, x² − y², xy); removing it uses the ground truth, so that column is an oracle bound
  on what choosing the harmonic part well could give, not a method;
* scale bands of the rest of the error by period (px).

A further control (no network, no ground truth) chooses the harmonic part by alternating
projections between the prior's range (as in the sampler benchmark's control) and "the Tikhonov
estimate up to a harmonic function": what the range constraint alone makes of that freedom.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ROOT, SEEDS, TASKS, invoked_command, publish
from samplers import clipped_classical, load_cases, prior_range, table

DEGREE = 2
BANDS_PX = ((28, np.inf), (14, 28), (7, 14), (0, 7))
CONTROL_ITERATIONS = 1000


def harmonic_basis(shape: tuple[int, int], degree: int = DEGREE) -> np.ndarray:
    """Orthonormal columns spanning ``1, Re zᵏ, Im zᵏ`` (k ≤ degree, ``z = x + iy`` on [−1, 1]²)."""
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    z = (x + 1j * y).ravel()
    columns = [np.ones(z.size)] + [f(z ** k) for k in range(1, degree + 1) for f in (np.real, np.imag)]
    return np.linalg.qr(np.stack(columns, axis=1))[0]


def harmonic_part(x: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return (basis @ (basis.T @ x.ravel())).reshape(x.shape)


def band_rms(error: np.ndarray) -> list[float]:
    """RMS of ``error`` (mean removed) in each band of ``BANDS_PX`` (periods in px)."""
    spectrum = np.fft.fft2(error - error.mean())
    u = np.hypot(*np.meshgrid(np.fft.fftfreq(error.shape[0]), np.fft.fftfreq(error.shape[1]),
                              indexing="ij"))
    period = np.divide(1.0, u, out=np.full_like(u, np.inf), where=u > 0)
    return [float(np.sqrt((np.abs(spectrum[(period >= lo) & (period < hi)]) ** 2).sum()) / error.size)
            for lo, hi in BANDS_PX]


def harmonic_control(measurement, params, basis: np.ndarray) -> np.ndarray:
    """Tikhonov with its harmonic part chosen by the prior's range (no network): alternating
    projections between the clip to that range and the Tikhonov estimate plus a harmonic."""
    classical = np.asarray(TASKS["tie"][0](measurement, **params, method="tikhonov"), np.float64)
    low, high = prior_range(classical)

    def clip(x):
        return np.clip(x, low, high)
    x = classical
    for _ in range(CONTROL_ITERATIONS):
        x = x + harmonic_part(clip(x) - x, basis)
    return clip(x)


def methods(basis: np.ndarray) -> dict:
    run = TASKS["tie"][0]
    return {
        "Tikhonov": lambda m, p: run(m, **p, method="tikhonov"),
        "control: Tikhonov clipped to the prior's range": lambda m, p: clipped_classical("tie", m, p),
        "control: clipped, harmonic part chosen by the clip": lambda m, p: harmonic_control(m, p, basis),
        "ws (default)": lambda m, p: run(m, **p, method="ws"),
        "ws (conventional prior)": lambda m, p: run(m, **p, method="ws", prior="conventional"),
    }


def budget(cases: list) -> list[dict]:
    basis = harmonic_basis(cases[0][1].shape)
    rows = []
    for name, solve in methods(basis).items():
        numbers = []
        for measurement, truth, params in cases:
            error = np.asarray(solve(measurement, params), np.float64) - truth
            error -= error.mean()
            harmonic = harmonic_part(error, basis)
            rest = error - harmonic
            numbers.append([np.sqrt(np.mean(error ** 2)), np.sqrt(np.mean(harmonic ** 2)),
                            np.sqrt(np.mean((rest - rest.mean()) ** 2)), *band_rms(rest)])
        mean = np.mean(numbers, axis=0)
        bands = {f"rest, {lo:g}–{hi:g} px" if np.isfinite(hi) else f"rest, > {lo:g} px": v
                 for (lo, hi), v in zip(BANDS_PX, mean[3:])}
        rows.append({"method": name, "RMSE (rad)": mean[0], "harmonic part (rad)": mean[1],
                     "without it (oracle, rad)": mean[2], **bands})
        print(rows[-1], flush=True)
    return rows


def markdown(command: str, results: dict, n_images: int, crop_px: int) -> str:
    seeds = SEEDS[:n_images]
    out = ["## TIE error budget (synthetic test set)", "",
           (f"Command: `{command}` — the sampler benchmark's TIE cases ({n_images} image(s) per "
            f"regime, seeds {seeds[0]}–{seeds[-1]}, {crop_px}² centre crops), mean over images. "
            f"Each error (mean removed) is split into its harmonic part (least-squares fit of "
            f"the harmonic polynomials of degree ≤ {DEGREE}: what the data leave undetermined on "
            "a finite field of view) and the rest, whose RMS is given per band of period. "
            "'Without it' removes the harmonic part with the ground truth: an oracle bound, not a "
            "method. The second control chooses the harmonic part by alternating projections "
            f"between the prior's range and the Tikhonov estimate up to a harmonic function "
            f"({CONTROL_ITERATIONS} iterations; no network, no ground truth)."), ""]
    for regime, rows in results.items():
        out += [f"### {regime}", ""] + table(rows)
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help=f"images per regime (≤ {len(SEEDS)})")
    parser.add_argument("--crop", type=int, default=256, help="centre crop (px) of every case")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--dry-run", action="store_true", help="print the section, write nothing")
    args = parser.parse_args(argv)
    args.seeds = n_images = max(1, min(args.seeds, len(SEEDS)))
    results = {regime: budget(load_cases("tie", regime, args)) for regime in TASKS["tie"][1]}
    text = markdown(invoked_command("tie_error_budget.py", argv), results, n_images, args.crop)
    publish(text, args.output, "tie_error_budget", args.dry_run)


if __name__ == "__main__":
    main()
