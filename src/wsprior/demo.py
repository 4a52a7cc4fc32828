"""``wsprior demo``: reconstruct the three bundled datasets with every available method, write
the results as TIFF, a metrics table (Markdown) and a comparison figure (PNG)."""
from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import api, io, metrics  # noqa: E402
from .data.samples import load_sample  # noqa: E402

# method → display name, per task: the classical solvers and the whitened-score sampler with the
# shipped (CPU-trained, weak) prior, so the figure shows where the diffusion method stands today.
WS = {"ws": "WS diffusion (shipped prior)"}
METHODS = {
    "deblur_dehaze": {"wiener": "Wiener (whitened)", "rl": "Richardson-Lucy", **WS},
    "tie": {"tikhonov": "Tikhonov TIE", **WS},
    "idt": {"tikhonov": "Tikhonov IDT", **WS},
}
_RUNNERS = {"deblur_dehaze": api.deblur_dehaze, "tie": api.tie_phase, "idt": api.idt}


def run_demo(output: Path, device: str = "auto") -> list[dict]:
    output.mkdir(parents=True, exist_ok=True)
    rows, panels = [], []
    for task, methods in METHODS.items():
        measurement, params, truth = load_sample(task)
        results = {}
        baseline = _baseline(task, measurement, truth)
        rows.append(dict(task=task, method=baseline[0], seconds=0.0, **_score(task, truth, baseline[1])))
        for method, label in methods.items():
            start = time.perf_counter()
            result = _RUNNERS[task](measurement, method=method, device=device, **params)
            seconds = time.perf_counter() - start
            io.write_image(output / f"{task}_{method}.tif", result,
                           pixel_size_um=params["pixel_size_um"])
            results[label] = result
            rows.append(dict(task=task, method=method, seconds=seconds, **_score(task, truth, result)))
            print(f"{task:14s} {method:10s} {seconds:6.2f} s  "
                  + "  ".join(f"{k} {v:.4g}" for k, v in _score(task, truth, result).items()))
        panels.append((task, measurement, results, truth))
    _figure(panels, output / "demo.png")
    _table(rows, output / "metrics.md")
    print(f"wrote {output / 'demo.png'} and {output / 'metrics.md'}")
    return rows


def _score(task: str, truth: np.ndarray, estimate: np.ndarray) -> dict:
    if task == "deblur_dehaze":
        return {"PSNR_dB": metrics.psnr(truth, estimate), "SSIM": metrics.ssim(truth, estimate)}
    if task == "tie":
        return {"phase_RMSE_rad": metrics.zero_mean_rmse(truth, estimate)}
    return {"dn_RMSE": metrics.zero_mean_rmse(truth, estimate)}


def _baseline(task: str, measurement: np.ndarray, truth: np.ndarray) -> tuple[str, np.ndarray]:
    """What a reconstruction must beat: the raw image (deblur), or a zero estimate (TIE, IDT,
    whose raw data are not in the units of the result)."""
    if task == "deblur_dehaze":
        return "input (raw)", measurement
    return "zero estimate", np.zeros_like(truth)


def _display(image: np.ndarray, plane: int) -> np.ndarray:
    """One 2D view of a stack: ``plane`` of the first leading axis (repeated until 2D)."""
    image = np.asarray(image, dtype=float)
    while image.ndim > 2:
        image = image[plane]
    return image


# Which plane to show: the most defocused TIE plane (the in-focus one of a phase object is
# flat), the first LED image, the central IDT slice.
_INPUT_PLANE = {"deblur_dehaze": 0, "tie": -1, "idt": 0}


def _central(image: np.ndarray) -> np.ndarray:
    return _display(image, image.shape[0] // 2 if np.ndim(image) > 2 else 0)


def _figure(panels, path: Path) -> None:
    columns = 2 + max(len(results) for _, _, results, _ in panels)
    fig, axes = plt.subplots(len(panels), columns, figsize=(3.2 * columns, 3.4 * len(panels)),
                             squeeze=False)
    for row, (task, measurement, results, truth) in enumerate(panels):
        truth_view = _central(truth)
        limits = dict(vmin=np.percentile(truth_view, 0.5), vmax=np.percentile(truth_view, 99.5))
        images = [("input", _display(measurement, _INPUT_PLANE[task]), {})]
        images += [(label, _central(r), limits) for label, r in results.items()]
        images += [("ground truth", truth_view, limits)]
        for col in range(columns):
            axes[row, col].axis("off")
        for col, (title, image, lim) in enumerate(images):
            if col == len(images) - 1:
                col = columns - 1
            axes[row, col].imshow(image, cmap="gray", **lim)
            axes[row, col].set_title(f"{task}: {title}" if col == 0 else title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _table(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |")
    path.write_text("\n".join(lines) + "\n")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
