"""Tiled execution at scale: throughput and peak memory vs stack size, and what the tiling
machinery costs on top of the solver.

    python benchmarks/scaling.py            # writes docs/benchmarks.md (scaling section)
    python benchmarks/scaling.py --quick    # small sizes only, prints the tables

Workload: whitened Wiener deblur + dehaze (Airy PSF NA 0.8, λ 0.52 µm, 0.1 µm pixels, haze width
1 µm), ``tile_size=512``, zarr in → zarr out through the path of ``wsprior deblur-dehaze in.zarr
-o out.zarr``: each stack size runs in its own process, whose peak resident memory is reported
(``VmHWM`` of ``/proc/self/status``: unlike ``ru_maxrss``, which Linux carries over ``exec`` from
the parent that forked the process, it starts afresh in each process; ``ru_maxrss`` elsewhere).
Input planes repeat one simulated 1024² widefield image. Two parameter modes: *automatic* (each
plane's weight, haze level and offset estimated on the whole plane, as the untiled solver does)
and *fixed* (given once, e.g. estimated on one representative plane with
``deconvolution_parameters``: only the noise σ and means are measured per plane).

Overhead: the same tiles, cut beforehand into batches and passed to the solver with fixed
parameters in one loop, against the full tiled job (numpy in → numpy out, local threads).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OPTICS = dict(na=0.8, wavelength_um=0.52, pixel_size_um=0.1, haze_sigma_um=1.0)
TILE = 512
SIZES = ((16, 512), (16, 1024), (16, 2048), (4, 4096))   # (planes, edge)
QUICK_SIZES = ((4, 512), (4, 1024))
OVERHEAD_STACK = (4, 2048)


def base_image(edge: int = 1024) -> np.ndarray:
    from wsprior.data.blur_haze import WidefieldAcquisition, simulate_deblur_dehaze_pair

    image, _ = simulate_deblur_dehaze_pair((edge, edge), WidefieldAcquisition(), seed=7)
    return image


def fixed_parameters(image: np.ndarray) -> dict:
    """Weight, haze level and offset of one representative plane (the 'fixed' mode)."""
    import torch

    from wsprior.physics.blur_haze import make_psf
    from wsprior.solvers.classical.deconvolution import deconvolution_parameters

    psf = make_psf(na=OPTICS["na"], wavelength_um=OPTICS["wavelength_um"],
                   pixel_size_um=OPTICS["pixel_size_um"])
    numbers = deconvolution_parameters(torch.as_tensor(image), psf,
                                       pixel_size_um=OPTICS["pixel_size_um"],
                                       haze_sigma_um=OPTICS["haze_sigma_um"])
    return {k: numbers[k] for k in ("regularization", "haze_std", "background")}


def write_input(path: Path, planes: int, edge: int, image: np.ndarray) -> None:
    """A (planes, edge, edge) float32 zarr stack, written plane by plane."""
    import zarr

    reps = max(1, edge // image.shape[0])
    array = zarr.open_array(str(path), mode="w", shape=(planes, edge, edge), dtype="float32",
                            chunks=(1, min(edge, 1024), min(edge, 1024)))
    plane = np.tile(image, (reps, reps))[:edge, :edge]
    for p in range(planes):
        array[p] = np.roll(plane, 37 * p, axis=(0, 1))


def worker(source: str, target: str, parameters: str) -> None:
    """One measured run (in its own process): zarr → tiled Wiener → zarr. Prints JSON."""
    from wsprior import api, storage

    start = time.perf_counter()
    data = storage.open_array(source)
    result = api.deblur_dehaze(data, method="wiener", tile_size=TILE, **OPTICS,
                               **json.loads(parameters))
    storage.write_zarr(result, target, job="scaling")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_bytes": peak_rss_bytes()}))


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (see the module docstring)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure(source: Path, target: Path, parameters: dict) -> dict:
    shutil.rmtree(target, ignore_errors=True)
    command = [sys.executable, __file__, "--worker", str(source), str(target),
               json.dumps(parameters)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_baseline() -> int:
    """Peak memory of a process that only imports wsprior (torch, dask, zarr)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import scaling, wsprior.api, "
            "wsprior.storage; print(scaling.peak_rss_bytes())")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def scaling_rows(sizes, image, fixed, folder: Path) -> list[dict]:
    rows = []
    for planes, edge in sizes:
        source = folder / f"in_{planes}x{edge}.zarr"
        write_input(source, planes, edge, image)
        for mode, parameters in (("automatic", {}), ("fixed", fixed)):
            result = measure(source, folder / "out.zarr", parameters)
            pixels = planes * edge * edge
            rows.append(dict(stack=f"{planes} × {edge}²", mode=mode, mpix=pixels / 1e6,
                             seconds=result["seconds"], throughput=pixels / 1e6 / result["seconds"],
                             peak_mb=result["peak_bytes"] / 2 ** 20))
            print(rows[-1], flush=True)
        shutil.rmtree(source)
    return rows


def overhead(image: np.ndarray, fixed: dict) -> dict:
    """Full tiled job vs the solver on the same tiles cut beforehand (fixed parameters)."""
    import torch

    import wsprior
    from wsprior import tiling
    from wsprior.physics.blur_haze import make_psf
    from wsprior.settings import DeblurDehazeSettings, validated
    from wsprior.solvers.classical.tiled import DeblurTiles

    planes, edge = OVERHEAD_STACK
    reps = edge // image.shape[0]
    stack = np.stack([np.roll(np.tile(image, (reps, reps)), 37 * p, axis=(0, 1))
                      for p in range(planes)])
    settings = validated(DeblurDehazeSettings, method="wiener", tile_size=TILE, **OPTICS, **fixed)
    operator = DeblurTiles(make_psf(na=settings.na, wavelength_um=settings.wavelength_um,
                                    pixel_size_um=settings.pixel_size_um), settings)
    warm_up = stack[:1, :1024, :1024]
    wsprior.deblur_dehaze(warm_up, method="wiener", tile_size=TILE, **OPTICS, **fixed)
    start = time.perf_counter()
    tiled = wsprior.deblur_dehaze(stack, method="wiener", tile_size=TILE, **OPTICS, **fixed)
    pipeline = time.perf_counter() - start
    start = time.perf_counter()
    params = operator.estimate(torch.as_tensor(stack[:, None]))
    estimate = time.perf_counter() - start
    plan = tiling.plan_tiles((edge, edge), 1, operator, tile_size=TILE)
    halo = max(operator.halo(params[0], 4 * plan.block[0]))
    margin = halo + plan.blend
    windows, owners = cut_windows(stack, TILE, margin, operator.boundary)
    start = time.perf_counter()
    for first in range(0, len(windows), plan.batch):
        batch = torch.as_tensor(windows[first:first + plan.batch])
        chosen = [params[p] for p in owners[first:first + plan.batch]]
        where = [tiling.Window((p,), (0, 0), (0, batch.shape[-2], 0, batch.shape[-1]))
                 for p in owners[first:first + plan.batch]]
        operator(batch, chosen, where).numpy()
    solver = time.perf_counter() - start
    start = time.perf_counter()
    untiled = wsprior.deblur_dehaze(stack, method="wiener", **OPTICS, **fixed)
    whole = time.perf_counter() - start
    return dict(stack=f"{planes} × {edge}²", halo=halo, window=TILE + 2 * margin, pipeline=pipeline,
                estimate=estimate, solver=solver, untiled=whole,
                relative_difference=relative_difference(tiled, untiled))


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def cut_windows(stack: np.ndarray, tile: int, margin: int, mode: str):
    """Every tile's window (tile + 2·margin) of every plane, and the plane it belongs to."""
    padded = np.pad(stack, ((0, 0), (margin, margin), (margin, margin)), mode=mode)
    windows, owners = [], []
    for p in range(stack.shape[0]):
        for y in range(0, stack.shape[1], tile):
            for x in range(0, stack.shape[2], tile):
                windows.append(padded[p, y:y + tile + 2 * margin, x:x + tile + 2 * margin][None])
                owners.append(p)
    return np.stack(windows), owners


def markdown(rows: list[dict], cost: dict, baseline_mb: float, command: str) -> str:
    lines = ["## Scaling: tiled execution (CPU)", "",
             f"Command: `{command}` — whitened Wiener deblur + dehaze (haze width 1 µm), "
             f"`tile_size={TILE}`, zarr in → zarr out, one process per stack (peak memory = its "
             f"`VmHWM`; a process that only imports wsprior peaks at {baseline_mb:.0f} MB). "
             "The largest stack has 4 planes (not 16) to keep the run under 10 minutes on 2 cores. "
             "*automatic*: weight, haze level and offset estimated on each whole plane (as the "
             "untiled solver does); *fixed*: given once (only noise σ and means measured per "
             "plane).",
             "", "| stack | parameters | Mpix | time (s) | Mpix/s | peak memory (MB) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['stack']} | {row['mode']} | {row['mpix']:.1f} | "
                     f"{row['seconds']:.1f} | {row['throughput']:.2f} | {row['peak_mb']:.0f} |")
    machinery = cost["pipeline"] - cost["estimate"] - cost["solver"]
    lines += ["", f"Overhead on {cost['stack']} (fixed parameters, numpy in → numpy out; halo "
              f"{cost['halo']} px, windows {cost['window']}² for {TILE}² tiles):", "",
              "| | time (s) |", "|---|---|",
              f"| solver on the pre-cut tile batches | {cost['solver']:.1f} |",
              f"| per-plane estimate (noise σ, means) | {cost['estimate']:.1f} |",
              f"| full tiled job | {cost['pipeline']:.1f} |",
              f"| tiling + dask machinery (job − solver − estimate) | {machinery:.1f} "
              f"({100 * machinery / cost['solver']:+.0f} % of the solver) |",
              f"| untiled solve of the same stack (for reference) | {cost['untiled']:.1f} |", "",
              "Tiled and untiled results differ by "
              f"{cost['relative_difference']:.1e} (relative L2; "
              "at the image borders, where the untiled solver pads only 1/8 of the plane)."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small stacks; do not write the docs")
    parser.add_argument("--worker", nargs=3, metavar=("SOURCE", "TARGET", "PARAMETERS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    image = base_image()
    fixed = fixed_parameters(image)
    with tempfile.TemporaryDirectory(prefix="wsprior-scaling-") as folder:
        rows = scaling_rows(QUICK_SIZES if args.quick else SIZES, image, fixed, Path(folder))
    cost = overhead(image, fixed)
    print(cost)
    text = markdown(rows, cost, import_baseline() / 2 ** 20,
                    "python benchmarks/scaling.py" + (" --quick" if args.quick else ""))
    print(text)
    if not args.quick:
        sys.path.insert(0, str(Path(__file__).parent))
        from quality import write_section

        write_section(args.output, text, marker="scaling")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
