"""``wsprior demo``: reconstruct the three bundled datasets with every available method, write
the results as TIFF, a metrics table (Markdown) and a comparison figure (PNG): one row per task,
the input, each method with its metric against the ground truth, and the truth, on one colour
scale with a colour bar in the result's unit and a scale bar in µm."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar  # noqa: E402

from . import api, io, metrics  # noqa: E402
from .console_progress import ConsoleProgress  # noqa: E402
from .data.samples import load_sample  # noqa: E402
from .expected_time import describe_seconds, expected_seconds  # noqa: E402
from .settings import TASK_SETTINGS  # noqa: E402
from .solvers.samplers import is_diffusion  # noqa: E402

# method → display name, per task: the classical solvers and the whitened-score sampler with the
# shipped (CPU-trained, weak) prior, so the figure shows where the diffusion method stands today.
WS = {"ws": "WS diffusion (shipped prior)"}
METHODS = {
    "deblur_dehaze": {"wiener": "Wiener (whitened)", "rl": "Richardson-Lucy", **WS},
    "tie": {"tikhonov": "Tikhonov TIE", **WS},
    "idt": {"tikhonov": "Tikhonov IDT", **WS},
}
_RUNNERS = {"deblur_dehaze": api.deblur_dehaze, "tie": api.tie_phase, "idt": api.idt}


@dataclass
class Panel:
    title: str
    image: np.ndarray
    note: str = ""


@dataclass
class Row:
    """One task's row of the figure: the input, each reconstruction and the truth, on one
    colour scale with the unit ``unit`` (the input on its own), and a scale bar."""
    heading: str
    measurement: Panel
    results: list[Panel] = field(default_factory=list)
    truth: Panel | None = None
    unit: str = ""
    display_factor: float = 1.0
    pixel_size_um: float = 1.0


def run_demo(output: Path, device: str = "auto") -> list[dict]:
    output.mkdir(parents=True, exist_ok=True)
    rows, figure_rows = [], []
    for task, methods in METHODS.items():
        measurement, params, truth = load_sample(task)
        baseline = _baseline(task, measurement, truth)
        rows.append(dict(task=task, method=baseline[0], seconds=0.0,
                         **_score(task, truth, baseline[1])))
        row = _figure_row(task, measurement, params, truth)
        for method, label in methods.items():
            options = dict(method=method, device=device, **params)
            _announce(task, method, measurement, options)
            start = time.perf_counter()
            with ConsoleProgress(f"{task} {method}") as progress:
                result = _RUNNERS[task](measurement, progress=progress, **options)
            seconds = time.perf_counter() - start
            io.write_image(output / f"{task}_{method}.tif", result,
                           pixel_size_um=params["pixel_size_um"])
            score = _score(task, truth, result)
            rows.append(dict(task=task, method=method, seconds=seconds, **score))
            row.results.append(Panel(label, _view(task, result), _metric_note(task, score)))
            print(f"{task:14s} {method:10s} {seconds:6.2f} s  "
                  + "  ".join(f"{k} {v:.4g}" for k, v in score.items()))
        figure_rows.append(row)
    _figure(figure_rows, output / "demo.png")
    _table(rows, output / "metrics.md")
    print(f"wrote {output / 'demo.png'} and {output / 'metrics.md'}")
    return rows


def _announce(task: str, method: str, measurement: np.ndarray, options: dict) -> None:
    """The expected duration of a diffusion reconstruction before it starts (the classical
    ones take seconds; ``wsprior.expected_time``)."""
    if not is_diffusion(method):
        return
    seconds = expected_seconds(_RUNNERS[task], measurement, options,
                               TASK_SETTINGS[task].image_axes)
    print(f"{task:14s} {method:10s} expected {describe_seconds(seconds)}", flush=True)


def _score(task: str, truth: np.ndarray, estimate: np.ndarray) -> dict:
    if task == "deblur_dehaze":
        return {"PSNR_dB": metrics.psnr(truth, estimate), "SSIM": metrics.ssim(truth, estimate)}
    if task == "tie":
        return {"phase_RMSE_rad": metrics.zero_mean_rmse(truth, estimate)}
    return {"dn_RMSE": metrics.zero_mean_rmse(truth, estimate)}


def _metric_note(task: str, score: dict) -> str:
    """The panel's metric against the ground truth, in its unit."""
    if task == "deblur_dehaze":
        return f"PSNR {score['PSNR_dB']:.1f} dB, SSIM {score['SSIM']:.2f}"
    if task == "tie":
        return f"RMSE {score['phase_RMSE_rad']:.3f} rad"
    return f"RMSE {1e3 * score['dn_RMSE']:.2f} ×10⁻³"


def _baseline(task: str, measurement: np.ndarray, truth: np.ndarray) -> tuple[str, np.ndarray]:
    """What a reconstruction must beat: the raw image (deblur), or a zero estimate (TIE, IDT,
    whose raw data are not in the units of the result)."""
    if task == "deblur_dehaze":
        return "input (raw)", measurement
    return "zero estimate", np.zeros_like(truth)


# --------------------------------------------------------------------------------- figure
# What each row shows of a stack: the most defocused TIE plane (the in-focus image of a phase
# object is flat), the first LED image, the central IDT slice.
_SHOWN_SLICE = 1  # of the IDT slices z = -2, 0, 2 µm


def _figure_row(task: str, measurement: np.ndarray, params: dict, truth: np.ndarray) -> Row:
    pixel = float(params["pixel_size_um"])
    if task == "deblur_dehaze":
        return Row(f"Deblur + dehaze: widefield, NA {params['na']:g}, "
                   f"λ {params['wavelength_um']:g} µm",
                   Panel("input (raw)", measurement,
                         _metric_note(task, _score(task, truth, measurement))),
                   truth=Panel("ground truth", truth), unit="intensity (a.u.)",
                   pixel_size_um=pixel)
    if task == "tie":
        z = params["z_um"]
        plane = int(np.argmax(np.abs(z)))
        return Row(f"TIE phase: {len(z)} planes at z = {', '.join(f'{v:g}' for v in z)} µm",
                   Panel(f"input: plane at z = {z[plane]:+g} µm", measurement[plane]),
                   truth=Panel("ground truth", truth), unit="phase (rad)", pixel_size_um=pixel)
    z = params["z_um"][_SHOWN_SLICE]
    leds = len(params["illumination_na"])
    return Row(f"IDT: {leds} LEDs, NA {params['na']:g} → Δn slices at z = "
               f"{', '.join(f'{v:g}' for v in params['z_um'])} µm (z = {z:g} µm shown)",
               Panel(f"input: image under LED 1 of {leds}", measurement[0]),
               truth=Panel("ground truth", _view(task, truth)), unit="Δn (×10⁻³)",
               display_factor=1e3, pixel_size_um=pixel)


def _view(task: str, result: np.ndarray) -> np.ndarray:
    """The 2D image a result panel shows (IDT: the slice at z = 0 µm)."""
    return np.asarray(result[_SHOWN_SLICE] if task == "idt" else result, dtype=float)


def _figure(rows: list[Row], path: Path) -> None:
    columns = max(len(row.results) for row in rows) + 2
    fig = plt.figure(figsize=(2.9 * columns + 0.8, 3.3 * len(rows)), layout="constrained")
    for subfigure, row in zip(fig.subfigures(len(rows), 1), rows):
        _draw_row(subfigure, row, columns)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _draw_row(fig, row: Row, columns: int) -> None:
    fig.suptitle(row.heading, fontsize=11, fontweight="bold", x=0.01, ha="left")
    panels = [row.measurement, *row.results, row.truth]
    grid = fig.subplots(1, columns, squeeze=False)[0]
    for unused in grid[len(panels):]:  # rows with fewer methods: no empty panels, same sizes
        unused.remove()
    axes = grid[:len(panels)]
    truth = row.truth.image * row.display_factor
    limits = dict(vmin=float(np.percentile(truth, 0.5)), vmax=float(np.percentile(truth, 99.5)))
    shown = []
    for ax, panel in zip(axes, panels):
        is_input = panel is row.measurement
        image = panel.image if is_input else panel.image * row.display_factor
        shown.append(ax.imshow(image, cmap="gray", **({} if is_input else limits)))
        ax.set_title(f"{panel.title}\n{panel.note}" if panel.note else panel.title, fontsize=9)
        ax.set_axis_off()
        _scale_bar(ax, image.shape, row.pixel_size_um)
    fig.colorbar(shown[0], ax=axes[0], shrink=0.75, label="intensity (a.u.)")
    fig.colorbar(shown[-1], ax=list(axes[1:]), shrink=0.75, label=row.unit)


def _scale_bar(ax, shape: tuple, pixel_size_um: float) -> None:
    """A white bar of a round length near a fifth of the field, labelled in µm."""
    field_um = shape[-1] * pixel_size_um
    length = _round_length(field_um / 5)
    bar = AnchoredSizeBar(ax.transData, length / pixel_size_um, f"{length:g} µm",
                          "lower right", pad=0.4, color="white", frameon=False,
                          size_vertical=max(shape[-2] / 100, 1), fontproperties={"size": 8})
    ax.add_artist(bar)


def _round_length(value: float) -> float:
    """1, 2 or 5 × a power of ten, at most ``value``."""
    power = 10 ** np.floor(np.log10(value))
    return float(max(step for step in (1, 2, 5) if step * power <= value) * power)


def _table(rows: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |")
    path.write_text("\n".join(lines) + "\n")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
