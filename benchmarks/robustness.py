"""Robustness of the automatic parameters across microscopes, specimens, intensity scales and
field sizes (issue 19, deliverable 1).

    python benchmarks/robustness.py                  # everything below, then JSON + docs section
    python benchmarks/robustness.py --part validation --tasks tie --skip-tiling
    python benchmarks/robustness.py --quick          # 3 cases per part and task, coarse grids,
                                                     # prints only (no JSON, no docs)

Cases: ``wsprior.data.robustness`` (per task 20 *validation* cases, for tuning, and 20 *test*
cases, never tuned on; fixed seeds; objectives 10×/0.25 air … 100×/1.45 oil, λ 0.40–0.70 µm,
1–3× Nyquist pixels, 50–20000 photons/px, phantoms, real images and textures, cut and periodic
borders, float / [0, 1] / uint8 / uint16 / ×1e-3 inputs). Per case and classical method the
benchmark compares, through the public API only (``wsprior.deblur_dehaze``, ``tie_phase``,
``idt``):

* the default call (every automatic parameter);
* the best fixed parameter found with the ground truth on a grid (TIE and IDT ``regularization``
  on a log grid whose optimum must be interior; deblur ``regularization`` × ``haze_sigma_um`` ×
  ``haze_std`` incl. ``haze_std=0``, coarse-to-fine);
* the trivial estimate: zero phase (TIE), zero Δn (IDT), the raw input (deblur).

Metrics: TIE phase RMSE after removing the mean; IDT Δn RMSE after removing each slice's mean;
deblur PSNR (data range of the truth) after a least-squares gain + offset fit of the estimate
to the truth, the same fit for every method and for the raw input. Further: scale
equivariance, degenerate inputs, tiled vs untiled deblur on 1024²–4096² planes, and sdeconv's
pollen slice (real 3D blur) as a separate deconvolution case. Every per-case number goes to
``benchmarks/results/robustness.json``; the summary to docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ROOT, invoked_command, publish  # noqa: E402

import wsprior  # noqa: E402
from wsprior import metrics  # noqa: E402
from wsprior.data import robustness as cases_module  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "robustness.json"
CLASSICAL = {"deblur_dehaze": ("wiener", "rl"), "tie": ("tikhonov",), "idt": ("tikhonov",)}
API = {"deblur_dehaze": wsprior.deblur_dehaze, "tie": wsprior.tie_phase, "idt": wsprior.idt}
INPUT_NAME = {"deblur_dehaze": "image", "tie": "stack", "idt": "images"}
SCALE_EXPONENT = {"deblur_dehaze": 1, "tie": 0, "idt": 0}   # f(c·y) = c^p f(y)
QUICK_CASES = 3

# Targets of issue 19 ("Must show").
TIGHT_RATIO, TIGHT_DB = 1.2, 0.5
LOOSE_RATIO, LOOSE_DB = 2.0, 20 * math.log10(2.0)           # 2× RMSE = 6.02 dB
TIGHT_SHARE = 0.95
EQUIVARIANCE_TARGET = 1e-5
TILING_TARGET, TILING_TIME_TARGET = 1e-4, 1.5
DEGENERATE_BOUND = 10.0


# ----------------------------------------------------------------------------- scoring
fitted_psnr = metrics.fitted_psnr


def score(task: str, truth, estimate) -> float:
    """Deblur: fitted PSNR (dB, higher is better); TIE, IDT: zero-mean RMSE (lower is better)."""
    if not np.all(np.isfinite(estimate)):
        return -math.inf if task == "deblur_dehaze" else math.inf
    if task == "deblur_dehaze":
        return fitted_psnr(truth, estimate)
    return metrics.zero_mean_rmse(truth, estimate)


def per_slice(truth, estimate) -> list[float]:
    return [metrics.zero_mean_rmse(t, e) for t, e in zip(truth, estimate)]


#: Scores closer than this (relative RMSE; 1e-6 dB of PSNR) are ties: a sampler that returns the
#: zero phase to 3e-10 of its RMSE is not worse than the zero phase.
TIE_TOLERANCE = 1e-6


def better(task: str, a: float, b: float) -> bool:
    """Whether score ``a`` beats ``b`` by more than ``TIE_TOLERANCE``."""
    if task == "deblur_dehaze":
        return a > b + TIE_TOLERANCE
    return a < b * (1 - TIE_TOLERANCE)


def versus_best(task: str, auto: float, best: float) -> float:
    """Deblur: PSNR difference auto − best (dB, ≤ 0 when the grid wins); else RMSE ratio."""
    return auto - best if task == "deblur_dehaze" else auto / best


def within(task: str, comparison: float, tight: bool) -> bool:
    if task == "deblur_dehaze":
        return comparison >= -(TIGHT_DB if tight else LOOSE_DB)
    return comparison <= (TIGHT_RATIO if tight else LOOSE_RATIO)


def trivial_score(task: str, measurement, truth) -> float:
    """Zero estimate (TIE, IDT) or the raw input with the gain/offset fit (deblur)."""
    if task == "deblur_dehaze":
        return fitted_psnr(truth, measurement)
    return metrics.zero_mean_rmse(truth, np.zeros_like(truth))


# ----------------------------------------------------------------------------- best fixed parameter
class Search:
    """Evaluates fixed-parameter calls once each and keeps the best (ground truth known)."""

    def __init__(self, task: str, solve, truth):
        self.task, self.solve, self.truth = task, solve, truth
        self.tried: dict[tuple, float] = {}
        self.best_key, self.best = None, None

    def __call__(self, **params) -> float:
        key = tuple(sorted((k, _round(v)) for k, v in params.items()))
        if key not in self.tried:
            try:
                value = score(self.task, self.truth, self.solve(**params))
            except ValueError:          # a grid point the API refuses is simply not a candidate
                value = -math.inf if self.task == "deblur_dehaze" else math.inf
            self.tried[key] = value
            if self.best is None or better(self.task, value, self.best):
                self.best_key, self.best = key, value
        return self.tried[key]

    @property
    def params(self) -> dict:
        return dict(self.best_key)

    def result(self, edge: bool = False) -> dict:
        return dict(score=self.best, params=self.params, evaluations=len(self.tried), edge=edge)


def _round(value):
    return float(f"{value:.6g}") if isinstance(value, float) else value


def _log_grid(low: float, high: float, step: float) -> list[float]:
    exponents = np.arange(math.floor(math.log10(low)), math.log10(high) + 1e-9, step)
    return [float(10.0 ** e) for e in exponents]


def _log_search(search: Search, name: str, low: float, high: float, step: float,
                fine=(0.25, 0.125), **fixed) -> bool:
    """Grid over ``name`` in [low, high] (log step ``step`` decades), extended while the best lies
    on an edge (up to 3 decades each way), then refined; returns whether it stayed on an edge."""
    grid = _log_grid(low, high, step)
    for value in grid:
        search(**fixed, **{name: value})
    for _ in range(int(3 / step)):
        best = search.params[name]
        if best <= grid[0] * 1.0001:
            grid.insert(0, grid[0] / 10 ** step)
            search(**fixed, **{name: grid[0]})
        elif best >= grid[-1] * 0.9999:
            grid.append(grid[-1] * 10 ** step)
            search(**fixed, **{name: grid[-1]})
        else:
            break
    for delta in fine:
        best = search.params[name]
        for factor in (10 ** -delta, 10 ** delta):
            search(**fixed, **{name: best * factor})
    best = search.params[name]
    return bool(best <= grid[0] * 1.0001 or best >= grid[-1] * 0.9999)


def best_fixed(case: dict, method: str, quick: bool, check: bool = False) -> dict:
    """The best fixed parameter(s) of ``method`` on ``case``: ``dict(score, params, evaluations,
    edge)``; IDT with ``check`` adds ``grid_check`` (``IdtGrid.check`` at the best weight)."""
    task = case["task"]
    if task == "tie":
        return _best_tie(case, quick)
    if task == "idt":
        return _best_idt(case, quick, check)
    return _best_deblur(case, method, quick)


def _best_tie(case: dict, quick: bool) -> dict:
    """TIE ``regularization`` r [µm⁻⁴]: a half-decade grid spanning 1e-9…1e2 and at least the
    cut-off frequencies 1/(4 FOV) … 1/(2 pixel) (``r = (4π²u_c²)²``), extended at an edge."""
    p = case["params"]
    search = Search("tie", lambda **kw: API["tie"](case["measurement"], method="tikhonov",
                                                    **p, **kw), case["truth"])
    fov = max(case["truth"].shape) * p["pixel_size_um"]
    symbol_sq = lambda u: (4 * math.pi ** 2 * u ** 2) ** 2  # noqa: E731
    low = min(1e-9, symbol_sq(1 / (4 * fov)))
    high = max(1e2, symbol_sq(1 / (2 * p["pixel_size_um"])))
    edge = _log_search(search, "regularization", low, high, 1.0 if quick else 0.5,
                       fine=(0.25,) if quick else (0.25, 0.125))
    return search.result(edge)


def _best_idt(case: dict, quick: bool, check: bool) -> dict:
    """IDT relative ``regularization`` on a half-decade grid 1e-4…10 (extended at an edge),
    solved from one eigendecomposition (``IdtGrid``); checked against the public call."""
    grid = IdtGrid(case["measurement"], case["params"])
    search = Search("idt", grid.delta_n, case["truth"])
    edge = _log_search(search, "regularization", 1e-4, 10.0, 1.0 if quick else 0.5,
                       fine=(0.25,) if quick else (0.25, 0.125))
    result = search.result(edge)
    if check:
        result["grid_check"] = grid.check(result["params"]["regularization"])
    return result


def _best_deblur(case: dict, method: str, quick: bool) -> dict:
    """Coarse-to-fine search. ``regularization`` and ``haze_std`` are scaled by the input's range
    ``s`` (p99.9 − p0.1) so the grid follows the intensity scale (Wiener's ``r`` multiplies a
    noise power: units 1/intensity²). 1: ``r`` scans (decades) without haze removal
    (``haze_std = 0``) and with a middle haze; 2: ``haze_std`` × ``haze_sigma_um`` at the best
    ``r``; 3: rounds of coordinate moves (r, haze_std, haze_sigma_um). Richardson–Lucy takes no
    ``regularization``: its search is ``haze_sigma_um`` × ``haze_std`` at the default iterations."""
    y = np.asarray(case["measurement"], np.float64)
    s = float(np.percentile(y, 99.9) - np.percentile(y, 0.1)) or 1.0
    search = Search("deblur_dehaze", lambda **kw: API["deblur_dehaze"](
        case["measurement"], method=method, **case["params"], **kw), case["truth"])
    weights = ([10.0 ** k / s ** 2 for k in ((0, 3, 6) if quick else (-2, 0, 2, 4, 6, 8))]
               if method == "wiener" else [None])
    stds, sigmas = ((0.03,), (1.0, 4.0)) if quick else ((0.01, 0.05, 0.2), (0.7, 2.5, 8.0))
    for std, sigma in ((0.0, 3.0), (stds[len(stds) // 2], sigmas[len(sigmas) // 2])):
        for r in weights:
            search(**_deblur_params(r, sigma, std * s))
    r = search.params.get("regularization")
    for std in stds:
        for sigma in sigmas:
            search(**_deblur_params(r, sigma, std * s))
    rounds = (((0.5, 2.0), 10.0), ((0.5, 2.0), 10 ** 0.5), ((0.7, 1.4), 10 ** 0.25))
    for std_factors, r_factor in rounds[: 1 if quick else 3]:
        _refine_deblur(search, std_factors, r_factor, s)
    return search.result()


def _deblur_params(r, sigma, std) -> dict:
    params = dict(haze_sigma_um=float(sigma), haze_std=float(std))
    if r is not None:
        params["regularization"] = float(r)
    return params


def _refine_deblur(search: Search, std_factors, r_factor, s) -> None:
    """One round of coordinate moves around the best point: r, then haze_std, then haze_sigma."""
    best = search.params
    if "regularization" in best:
        for f in (1 / r_factor, r_factor):
            search(**dict(search.params, regularization=best["regularization"] * f))
    best = search.params
    stds = ([0.003 * s, 0.01 * s] if best["haze_std"] == 0
            else [best["haze_std"] * f for f in std_factors])
    for std in stds:
        search(**dict(search.params, haze_std=std))
    best = search.params
    if best["haze_std"] > 0:
        for f in std_factors:
            search(**dict(search.params, haze_sigma_um=best["haze_sigma_um"] * f))


class IdtGrid:
    """The public Tikhonov IDT solve re-expressed for many weights: images normalised
    (``g = I/B − 1``), mirror-padded by min(Y, X)//8, per-frequency normal matrix of the
    transfer functions (``wsprior.physics.idt``) eigendecomposed once; ``μ = r · s`` with
    ``s = max_u tr N(u) / 2M``. ``check`` compares one weight with ``wsprior.idt``."""

    def __init__(self, images, params: dict):
        from wsprior.physics.idt import idt_transfer_functions
        from wsprior.solvers.padding import mirror_pad

        self.params = params
        self.images = images
        raw = torch.as_tensor(np.asarray(images), dtype=torch.float32)
        g = raw / raw.mean(dim=(-2, -1), keepdim=True) - 1
        ny, nx = g.shape[-2:]
        pad = min(ny, nx) // 8
        padded, self.crop = mirror_pad(g[None], (pad, pad), fast_fft=False)
        z = np.asarray(params["z_um"], dtype=np.float64)
        h_re, h_im = idt_transfer_functions(
            tuple(padded.shape[-2:]), params["pixel_size_um"], params["wavelength_um"],
            params["na"], params["n_medium"], np.asarray(params["illumination_na"]), z,
            params["slice_thickness_um"], dtype=torch.float32)
        transfer = torch.cat((h_re, h_im), dim=1).permute(2, 3, 0, 1)       # (Yp, Xp, L, K)
        adjoint = transfer.conj().transpose(-2, -1)
        normal = adjoint @ transfer
        self.eigval, self.eigvec = torch.linalg.eigh(normal)
        self.eigval = self.eigval.clamp_min(0)
        self.scale = float(normal.diagonal(dim1=-2, dim2=-1).real.sum(-1).max()) / normal.shape[-1]
        spectrum = torch.fft.fft2(padded[0]).permute(1, 2, 0)[..., None]     # (Yp, Xp, L, 1)
        self.coefficients = self.eigvec.conj().transpose(-2, -1) @ (adjoint @ spectrum)
        self.n_slices = z.size

    def delta_n(self, regularization: float) -> np.ndarray:
        from wsprior.physics.idt import permittivity_to_ri

        weights = self.coefficients / (self.eigval + regularization * self.scale)[..., None]
        x = torch.fft.ifft2((self.eigvec @ weights)[..., 0].permute(2, 0, 1)).real
        x = x[(..., *self.crop)]
        eps = torch.complex(x[: self.n_slices], x[self.n_slices:])
        return permittivity_to_ri(eps, self.params["n_medium"]).numpy()

    def check(self, regularization: float) -> float:
        """max |grid − public call| / max |public call| at one weight."""
        public = wsprior.idt(self.images, method="tikhonov", regularization=regularization,
                             **self.params)
        return float(np.abs(self.delta_n(regularization) - public).max() / np.abs(public).max())


# ----------------------------------------------------------------------------- per case
def evaluate_case(case: dict, methods: tuple[str, ...], quick: bool, ws: bool,
                  check_idt_grid: bool = False) -> dict:
    """Every number of one case: trivial score, and per method the automatic and best fixed
    results (``ws``: the sampler's default call, compared with the first method's best)."""
    task = case["task"]
    row = {k: v for k, v in case.items() if k not in ("measurement", "truth", "params")}
    row["params"] = {k: v for k, v in case["params"].items() if k != "psf"}
    row["trivial"] = trivial_score(task, case["measurement"], case["truth"])
    row["methods"] = {}
    for method in methods:
        row["methods"][method] = _method_result(case, method, quick, row["trivial"], check_idt_grid)
    if ws and methods:
        reference = row["methods"][methods[0]]["best"]["score"]
        row["methods"]["ws"] = _auto_result(case, "ws", row["trivial"], reference)
    return row


def _method_result(case: dict, method: str, quick: bool, trivial: float, check: bool) -> dict:
    start = time.perf_counter()
    best = best_fixed(case, method, quick, check)
    best["seconds"] = round(time.perf_counter() - start, 2)
    result = _auto_result(case, method, trivial, best["score"])
    result["best"] = best
    result["best_worse_than_trivial"] = better(case["task"], trivial, best["score"])
    return result


def _auto_result(case: dict, method: str, trivial: float, best_score: float) -> dict:
    """The default call: its score, time, comparison with the best fixed parameter and with
    the trivial estimate. An exception counts as a failure (score ±inf, message kept)."""
    task = case["task"]
    start = time.perf_counter()
    try:
        estimate = API[task](case["measurement"], method=method, **case["params"])
        auto, failure = score(task, case["truth"], estimate), None
    except Exception as error:  # noqa: BLE001 — a crash is a result here
        estimate, failure = None, f"{type(error).__name__}: {error}"[:300]
        auto = -math.inf if task == "deblur_dehaze" else math.inf
    result = dict(auto=auto, auto_seconds=round(time.perf_counter() - start, 3),
                  comparison=versus_best(task, auto, best_score),
                  worse_than_trivial=better(task, trivial, auto), failure=failure)
    if task == "idt" and estimate is not None:
        result["auto_per_slice"] = per_slice(case["truth"], estimate)
    return result


# ----------------------------------------------------------------------------- case store
def load_case(spec: dict, cache_dir: Path | None, deblur_n_medium: bool) -> dict:
    """``make_case(spec)``, memoised on disk under ``cache_dir`` (keyed by the spec and the
    sources of the simulation modules, so a changed generator is never served stale)."""
    if cache_dir is None:
        return cases_module.make_case(spec, deblur_n_medium=deblur_n_medium)
    key = hashlib.sha256((json.dumps(spec, sort_keys=True) + str(deblur_n_medium)
                          + _generator_fingerprint()).encode()).hexdigest()[:20]
    path = cache_dir / f"{spec['id']}-{key}.npz"
    if path.exists():
        stored = np.load(path, allow_pickle=False)
        case = json.loads(str(stored["meta"]))
        case.update(measurement=stored["measurement"], truth=stored["truth"])
        return case
    case = cases_module.make_case(spec, deblur_n_medium=deblur_n_medium)
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({k: v for k, v in case.items() if k not in ("measurement", "truth")})
    np.savez_compressed(path, measurement=case["measurement"], truth=case["truth"], meta=meta)
    return case


def _generator_fingerprint() -> str:
    folder = Path(cases_module.__file__).parent
    text = "".join((folder / f).read_text() for f in
                   ("robustness.py", "specimens.py", "blur_haze.py", "tie.py", "idt.py", "phantoms.py"))
    return hashlib.sha256(text.encode()).hexdigest()


def property_inputs(cases: list[dict]) -> list[dict]:
    """Validation cases with float input for the property checks, cheapest IDT solves first."""
    chosen = [c for c in cases if c["part"] == "validation" and c["dtype"] == "float"] or cases
    return sorted(chosen, key=lambda c: c.get("n_leds", 1) * c.get("n_slices", 1) ** 2)


def deblur_takes_n_medium() -> bool:
    from wsprior.settings import DeblurDehazeSettings
    return "n_medium" in DeblurDehazeSettings.model_fields


# ----------------------------------------------------------------------------- summaries
def summarize(rows: list[dict], task: str, method: str, part: str) -> dict:
    chosen = [r["methods"][method] for r in rows
              if r["task"] == task and r["part"] == part and method in r["methods"]]
    if not chosen:
        return {}
    comparisons = np.array([c["comparison"] for c in chosen], dtype=float)
    worst = comparisons.min() if task == "deblur_dehaze" else comparisons.max()
    return dict(task=task, method=method, part=part, cases=len(chosen),
                median=float(np.median(comparisons)), worst=float(worst),
                share_tight=float(np.mean([within(task, c, True) for c in comparisons])),
                share_loose=float(np.mean([within(task, c, False) for c in comparisons])),
                worse_than_trivial=int(sum(c["worse_than_trivial"] for c in chosen)),
                best_worse_than_trivial=int(sum(c.get("best_worse_than_trivial", False)
                                                for c in chosen)),
                failures=int(sum(c["failure"] is not None for c in chosen)))


def worst_cases(rows: list[dict], task: str, method: str, count: int = 5) -> list[dict]:
    chosen = [r for r in rows if r["task"] == task and method in r["methods"]]
    sign = 1 if task == "deblur_dehaze" else -1
    chosen.sort(key=lambda r: sign * r["methods"][method]["comparison"])
    return chosen[:count]


def breakdown(rows: list[dict], task: str, method: str) -> dict:
    """Median comparison per level of the swept factors (both parts): which settings fail."""
    out = {}
    for factor in ("border", "dtype", "specimen_kind", "objective"):
        levels = {}
        for r in rows:
            if r["task"] == task and method in r["methods"]:
                levels.setdefault(str(r[factor]), []).append(r["methods"][method]["comparison"])
        out[factor] = {k: dict(median=float(np.median(v)), cases=len(v)) for k, v in levels.items()}
    return out


# ----------------------------------------------------------------------------- properties
def scale_equivariance(task: str, cases: list[dict], methods, quick: bool) -> list[dict]:
    """max |f(c·y) − c^p f(y)| / max |c^p f(y)| over inputs, per method and factor c
    (p = 1 for deblur, 0 for TIE and IDT: their data are normalised by the brightfield)."""
    factors = {"1e-3": lambda y: 1e-3, "60000/max": lambda y: 6e4 / y.max(),
               "1/max": lambda y: 1.0 / y.max(), "1e3": lambda y: 1e3}
    inputs = cases[:1] if quick else cases[:2]
    out = []
    for method in methods:
        errors = {label: [] for label in factors}
        for case in inputs:
            y = np.asarray(case["measurement"], np.float32)
            base = API[task](y, method=method, **case["params"])
            for label, factor in factors.items():
                c = float(factor(y))
                scaled = API[task]((y * c).astype(np.float32), method=method, **case["params"])
                expected = base * c ** SCALE_EXPONENT[task]
                errors[label].append(float(np.abs(scaled - expected).max() / np.abs(expected).max()))
        for label, values in errors.items():
            out.append(dict(task=task, method=method, factor=label, inputs=[c["id"] for c in inputs],
                            error=max(values), met=max(values) <= EQUIVARIANCE_TARGET))
    return out


def degenerate_inputs(task: str, case: dict, methods) -> list[dict]:
    """Binary, constant, all-zero, saturated and integer inputs: a finite result within
    ``DEGENERATE_BOUND`` × what a linear response to that input's contrast allows, or a
    ``ValueError`` that names the input. Contrast: the input's max (deblur) or the largest
    ``|I/mean(I) − 1|`` of its planes (TIE, IDT, whose data are normalised); the allowance is
    the result on the case's own input scaled by the contrast ratio (deblur: the input's max)."""
    y = np.asarray(case["measurement"], np.float32)
    out = []
    for method in methods:
        reference = np.abs(API[task](y, method=method, **case["params"])).max()
        for name, data in _degenerate_variants(y).items():
            if task == "deblur_dehaze":
                bound = DEGENERATE_BOUND * _contrast(task, data)
            else:
                ratio = _contrast(task, data) / _contrast(task, y)
                bound = float(reference) * max(DEGENERATE_BOUND * ratio, 1e-6)
            out.append(dict(task=task, method=method, input=name, case=case["id"],
                            **_classify(lambda: API[task](data, method=method, **case["params"]),
                                        bound, INPUT_NAME[task])))
    return out


def _contrast(task: str, data: np.ndarray) -> float:
    data = np.asarray(data, np.float64)
    if task == "deblur_dehaze":
        return float(np.abs(data).max())
    planes = data.reshape(-1, *data.shape[-2:])
    means = planes.mean(axis=(-2, -1), keepdims=True)
    safe = np.where(means > 0, means, 1.0)
    return float(np.where(means > 0, np.abs(planes / safe - 1), 0.0).max())


def _degenerate_variants(y: np.ndarray) -> dict[str, np.ndarray]:
    planes = y.reshape(-1, *y.shape[-2:])
    means = planes.mean(axis=(-2, -1), keepdims=True)
    level = np.percentile(y, 90)
    return {
        "binary (0/1 at the mean)": (planes > means).astype(np.float32).reshape(y.shape),
        "constant": np.broadcast_to(means, planes.shape).astype(np.float32).reshape(y.shape),
        "all-zero": np.zeros_like(y),
        "saturated uint16 (10 % clipped)": np.clip(np.round(y / level * 65535), 0, 65535).astype(np.uint16),
        "uint8 full range": np.round(np.clip(y, 0, None) / y.max() * 255).astype(np.uint8),
        "uint16 full range": np.round(np.clip(y, 0, None) / y.max() * 65535).astype(np.uint16),
    }


def _classify(run, bound: float, input_name: str) -> dict:
    try:
        out = np.asarray(run(), dtype=np.float64)
    except ValueError as error:
        message = str(error)
        return dict(outcome="ValueError", detail=message[:200],
                    ok=input_name.rstrip("s") in message)  # "images" → "image" also names it
    except Exception as error:  # noqa: BLE001
        return dict(outcome=type(error).__name__, detail=str(error)[:200], ok=False)
    finite = bool(np.all(np.isfinite(out)))
    peak = float(np.abs(out[np.isfinite(out)]).max()) if np.isfinite(out).any() else math.nan
    ok = finite and peak <= bound
    outcome = "bounded" if ok else ("non-finite" if not finite else "unbounded")
    return dict(outcome=outcome, detail=f"max |out| {peak:.3g} (bound {bound:.3g})", ok=ok)


def tiling(sizes, methods=("wiener", "rl"), tile_size: int = 512) -> list[dict]:
    """Tiled (``tile_size``) vs untiled deblur on ``tiling_scene`` planes: deviation relative
    to the untiled maximum and the wall-time ratio."""
    out = []
    for size in sizes:
        image, params = cases_module.tiling_scene(size, seed=7600 + size)
        for method in methods:
            start = time.perf_counter()
            whole = API["deblur_dehaze"](image, method=method, **params)
            untiled = time.perf_counter() - start
            start = time.perf_counter()
            tiled = API["deblur_dehaze"](image, method=method, tile_size=tile_size, **params)
            seconds = time.perf_counter() - start
            deviation = float(np.abs(tiled - whole).max() / np.abs(whole).max())
            out.append(dict(size=size, method=method, tile_size=tile_size, deviation=deviation,
                            untiled_s=round(untiled, 2), tiled_s=round(seconds, 2),
                            time_ratio=round(seconds / untiled, 2),
                            met=deviation <= TILING_TARGET and seconds / untiled <= TILING_TIME_TARGET))
            print(f"tiling {size}² {method}: deviation {deviation:.2e}, {seconds:.1f} s tiled vs "
                  f"{untiled:.1f} s untiled", flush=True)
    return out


def pollen(quick: bool) -> dict:
    """sdeconv's pollen slice: automatic vs best fixed for the deblur methods (separate row)."""
    return evaluate_case(cases_module.pollen_case(), CLASSICAL["deblur_dehaze"], quick, ws=False)


# ----------------------------------------------------------------------------- report
def _fmt_cmp(task: str, value: float) -> str:
    if not math.isfinite(value):
        return "fail"
    return f"{value:+.2f} dB" if task == "deblur_dehaze" else f"{value:.2f}×"


def markdown(report: dict) -> str:
    out = ["## Robustness (automatic parameters across microscopes)", "",
           f"Command: `{report['command']}` — revision {report.get('revision', 'not recorded')}; {report['machine']}, "
           f"{report['wall_minutes']:.0f} min wall time. Cases: `wsprior.data.robustness` ({cases_module.CASES_PER_PART} validation "
           f"+ {cases_module.CASES_PER_PART} test cases per task, {cases_module.FIELD}² fields, "
           "fixed seeds): objectives 10×/0.25 air … 100×/1.45 oil, λ 0.40–0.70 µm, pixels 1–3× "
           "Nyquist (IDT 1–2×), 50–20000 photons/px + read noise, phantoms / real images / "
           "textures (validation and test parts use disjoint source images), fields cut from a "
           "1.5× larger simulated scene or periodic, float / [0, 1] / uint8 / uint16 / ×1e-3 "
           "inputs. *auto* = the default call; *best* = the best fixed parameter found with the "
           "ground truth on a grid (TIE, IDT `regularization`; deblur `regularization` × "
           "`haze_sigma_um` × `haze_std` incl. 0); *trivial* = zero phase / zero Δn / the raw "
           "input. Deblur: PSNR after a least-squares gain + offset fit, difference auto − best "
           "in dB; TIE, IDT: zero-mean RMSE, ratio auto / best. Every per-case number, the crop "
           "of every specimen and the list of test-part images (`test_part_sources`, to be "
           "excluded from training) are in `benchmarks/results/robustness.json`.", ""]
    out += _ws_runs_lines(report)
    out += _targets_table(report) + _summary_table(report) + _worst_table(report)
    out += _breakdown_table(report) + _pollen_lines(report) + _equivariance_table(report)
    out += _degenerate_table(report) + _tiling_table(report)
    return "\n".join(out).rstrip() + "\n"


def _targets_table(report: dict) -> list[str]:
    lines = ["### Targets (issue 19)", "", "| target | measured | status |", "|---|---|---|"]
    for goal in report["targets"]:
        lines.append(f"| {goal['target']} | {goal['measured']} | {'MET' if goal['met'] else 'MISSED'} |")
    return lines + [""]


def _summary_table(report: dict) -> list[str]:
    lines = ["### Automatic vs best fixed parameter", "",
             "| task | method | part | cases | median | worst | within 1.2× / 0.5 dB | within 2× "
             "| auto worse than trivial | best fixed worse than trivial | crashed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in report["summary"]:
        lines.append(f"| {s['task']} | {s['method']} | {s['part']} | {s['cases']} | "
                     f"{_fmt_cmp(s['task'], s['median'])} | {_fmt_cmp(s['task'], s['worst'])} | "
                     f"{s['share_tight']:.0%} | {s['share_loose']:.0%} | {s['worse_than_trivial']} | "
                     f"{s['best_worse_than_trivial']} | {s['failures']} |")
    return lines + [""]


def _worst_table(report: dict) -> list[str]:
    lines = ["### Worst cases (both parts)", "",
             "| task | method | case | auto vs best | auto | best fixed | trivial | acquisition |",
             "|---|---|---|---|---|---|---|---|"]
    for entry in report["worst"]:
        lines.append(f"| {entry['task']} | {entry['method']} | {entry['id']} | "
                     f"{_fmt_cmp(entry['task'], entry['comparison'])} | {entry['auto']:.3g} | "
                     f"{_best_cell(entry)} | {entry['trivial']:.3g} | "
                     f"{entry['description']} |")
    return lines + [""]


def _best_cell(entry: dict) -> str:
    if not math.isfinite(entry["best"]):       # ws: compared with the classical method's best
        return "classical best"
    return f"{entry['best']:.3g} ({entry['best_params']})"


def _breakdown_table(report: dict) -> list[str]:
    lines = ["### Median auto vs best by setting (both parts)", "",
             "| task | method | factor | level: median (cases) |", "|---|---|---|---|"]
    for key, factors in report["breakdown"].items():
        task, method = key.split("/")
        for factor, levels in factors.items():
            cells = "; ".join(f"{level}: {_fmt_cmp(task, v['median'])} ({v['cases']})"
                              for level, v in sorted(levels.items()))
            lines.append(f"| {task} | {method} | {factor} | {cells} |")
    return lines + [""]


def _pollen_lines(report: dict) -> list[str]:
    row = report.get("pollen")
    if not row:
        return []
    lines = ["### Separate case: sdeconv pollen (real 3D blur, not tuned on)", "",
             "| method | auto (dB) | best fixed (dB) | auto − best | raw input (dB) |", "|---|---|---|---|---|"]
    for method, m in row["methods"].items():
        lines.append(f"| {method} | {m['auto']:.2f} | {m['best']['score']:.2f} | "
                     f"{_fmt_cmp('deblur_dehaze', m['comparison'])} | {row['trivial']:.2f} |")
    return lines + [""]


def _equivariance_table(report: dict) -> list[str]:
    lines = ["### Scale equivariance", "",
             f"max |f(c·y) − cᵖ f(y)| / max |cᵖ f(y)| (p = 1 deblur, 0 TIE/IDT); target "
             f"{EQUIVARIANCE_TARGET:g}.", "", "| task | method | c | error | status |", "|---|---|---|---|---|"]
    for e in report["equivariance"]:
        lines.append(f"| {e['task']} | {e['method']} | {e['factor']} | {e['error']:.2e} | "
                     f"{'MET' if e['met'] else 'MISSED'} |")
    return lines + [""]


def _degenerate_table(report: dict) -> list[str]:
    lines = ["### Degenerate inputs", "",
             f"OK = finite and max |out| ≤ {DEGENERATE_BOUND:g}× the input's max (deblur), or ≤ "
             f"{DEGENERATE_BOUND:g}× the result on the case's own input scaled by the ratio of the "
             "inputs' contrasts max |I/mean − 1| (TIE, IDT: a linear response), or a ValueError "
             "naming the input.", "",
             "| task | method | input | outcome | detail | OK |", "|---|---|---|---|---|---|"]
    for d in report["degenerate"]:
        detail = d["detail"].replace("|", "/").replace("\n", " ")[:90]
        lines.append(f"| {d['task']} | {d['method']} | {d['input']} | {d['outcome']} | {detail} | "
                     f"{'yes' if d['ok'] else 'NO'} |")
    return lines + [""]


def _tiling_table(report: dict) -> list[str]:
    if not report["tiling"]:
        return ["### Tiling", "", "Skipped in this run (`--skip-tiling`).", ""]
    lines = ["### Tiling (deblur, `tile_size=512`)", "",
             f"Targets: max |tiled − untiled| / max |untiled| ≤ {TILING_TARGET:g}, tiled time ≤ "
             f"{TILING_TIME_TARGET}× untiled.", "",
             "| plane | method | deviation | untiled (s) | tiled (s) | ratio | status |",
             "|---|---|---|---|---|---|---|"]
    for t in report["tiling"]:
        lines.append(f"| {t['size']}² | {t['method']} | {t['deviation']:.2e} | {t['untiled_s']} | "
                     f"{t['tiled_s']} | {t['time_ratio']} | {'MET' if t['met'] else 'MISSED'} |")
    return lines + [""]


def targets(report: dict) -> list[dict]:
    goals = []
    for s in report["summary"]:
        if s["part"] != "test":
            continue
        unit = "0.5 dB" if s["task"] == "deblur_dehaze" else "1.2×"
        goals.append(dict(target=f"{s['task']} {s['method']}: auto within {unit} of best fixed on "
                                 f"≥ 95 % and within 2× on all test cases",
                          measured=f"{s['share_tight']:.0%} / {s['share_loose']:.0%}",
                          met=s["share_tight"] >= TIGHT_SHARE and s["share_loose"] == 1.0))
        goals.append(dict(target=f"{s['task']} {s['method']}: no test case worse than trivial",
                          measured=f"{s['worse_than_trivial']} of {s['cases']}",
                          met=s["worse_than_trivial"] == 0))
    if report["equivariance"]:
        worst = max(report["equivariance"], key=lambda e: e["error"])
        goals.append(dict(target=f"scale equivariance ≤ {EQUIVARIANCE_TARGET:g}",
                          measured=f"worst {worst['error']:.1e} ({worst['task']} {worst['method']}, "
                                   f"c = {worst['factor']})", met=worst["error"] <= EQUIVARIANCE_TARGET))
    if report["degenerate"]:
        bad = [d for d in report["degenerate"] if not d["ok"]]
        goals.append(dict(target="degenerate inputs: bounded result or a clear ValueError",
                          measured=f"{len(bad)} of {len(report['degenerate'])} not OK", met=not bad))
    largest = [t for t in report["tiling"] if t["size"] == max(x["size"] for x in report["tiling"])]
    for t in largest:
        goals.append(dict(target=f"tiled = untiled ≤ {TILING_TARGET:g} at {t['size']}² ({t['method']})",
                          measured=f"{t['deviation']:.1e}", met=t["deviation"] <= TILING_TARGET))
        goals.append(dict(target=f"tiled time ≤ {TILING_TIME_TARGET}× untiled at {t['size']}² ({t['method']})",
                          measured=f"{t['time_ratio']}×", met=t["time_ratio"] <= TILING_TIME_TARGET))
    return goals


def test_part_sources(rows: list[dict]) -> list[dict]:
    """The real images (and crops) the test part uses: to exclude from any training."""
    out = []
    for r in rows:
        specimen = r.get("specimen", {})
        if r["part"] == "test" and specimen.get("source") not in (None, "phantom"):
            out.append(dict(case=r["id"], **{k: specimen[k] for k in
                                             ("source", "package", "file", "crop_yxhw", "zoom")}))
    return out


def _worst_entries(rows, methods_by_task) -> list[dict]:
    entries = []
    for task in methods_by_task:
        for method in methods_by_task[task]:
            for r in worst_cases(rows, task, method, count=3 if method == "ws" else 5):
                m = r["methods"][method]
                best = m.get("best", {})
                entries.append(dict(task=task, method=method, id=r["id"], comparison=m["comparison"],
                                    auto=m["auto"], best=best.get("score", math.nan),
                                    best_params=_short(best.get("params", {})), trivial=r["trivial"],
                                    description=r["description"] + (f"; {m['failure']}" if m["failure"] else "")))
    return entries


def _short(params: dict) -> str:
    return ", ".join(f"{k.replace('regularization', 'r').replace('haze_', '')}={v:.2g}"
                     for k, v in params.items())


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else str(float(value))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _restored(value):
    """Inverse of ``_jsonable`` for the non-finite numbers it wrote as strings."""
    if isinstance(value, dict):
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    return float(value) if value in ("inf", "-inf", "nan") else value


# ----------------------------------------------------------------------------- main
def run(args) -> dict:
    started = time.perf_counter()
    parts = cases_module.PARTS if args.part == "all" else (args.part,)
    n_medium = deblur_takes_n_medium()
    rows, equivariance, degenerate = [], [], []
    methods_by_task = {}
    for task in args.tasks:
        methods = tuple(m for m in CLASSICAL[task] if args.methods is None or m in args.methods)
        if not methods:
            continue
        methods_by_task[task] = methods + (("ws",) if args.ws else ())
        loaded = []
        for part in parts:
            specs = cases_module.case_specs(task, part)[: QUICK_CASES if args.quick else None]
            for index, spec in enumerate(specs):
                case = load_case(spec, args.cache_dir, n_medium)
                loaded.append(case)
                rows.append(evaluate_case(case, methods, args.quick, args.ws,
                                          check_idt_grid=index < (1 if args.quick else 2)))
                _print_row(rows[-1])
        if not args.skip_properties:
            inputs = property_inputs(loaded)
            equivariance += scale_equivariance(task, inputs, methods, args.quick)
            degenerate += degenerate_inputs(task, inputs[0], methods)
    report = dict(command=invoked_command("robustness.py", args.argv), machine=_machine(),
                  revision=_revision(),
                  deblur_n_medium_passed=n_medium, rows=rows, equivariance=equivariance,
                  degenerate=degenerate)
    report["pollen"] = pollen(args.quick) if "deblur_dehaze" in args.tasks and not args.skip_pollen else None
    report["tiling"] = [] if args.skip_tiling else tiling((1024,) if args.quick else (1024, 2048, 4096))
    _summarise(report, methods_by_task, parts)
    report["test_part_sources"] = test_part_sources(rows)
    report["idt_grid_checks"] = {r["id"]: r["methods"]["tikhonov"]["best"]["grid_check"]
                                 for r in rows if "grid_check" in r["methods"].get("tikhonov", {}).get("best", {})}
    report["wall_minutes"] = (time.perf_counter() - started) / 60
    return report


def _summarise(report: dict, methods_by_task: dict, parts) -> None:
    """The report's summary, worst cases, breakdown and targets from its rows."""
    rows = report["rows"]
    report["summary"] = [s for task in methods_by_task for method in methods_by_task[task]
                         for part in parts if (s := summarize(rows, task, method, part))]
    report["worst"] = _worst_entries(rows, methods_by_task)
    report["breakdown"] = {f"{t}/{m}": breakdown(rows, t, m) for t in methods_by_task
                           for m in methods_by_task[t]}
    report["targets"] = targets(report)


def add_ws(report: dict, args) -> dict:
    """The saved ``report`` with the default WS sampler run on the chosen part's cases and
    compared with the first classical method's best fixed result (the classical grids are not
    rerun: the cases are regenerated from their seeds)."""
    started = time.perf_counter()
    parts = cases_module.PARTS if args.part == "all" else (args.part,)
    n_medium = report["deblur_n_medium_passed"]
    by_id = {r["id"]: r for r in report["rows"]}
    for task in args.tasks:
        for part in parts:
            for spec in cases_module.case_specs(task, part):
                row = by_id[spec["id"]]
                case = load_case(spec, args.cache_dir, n_medium)
                reference = row["methods"][CLASSICAL[task][0]]["best"]["score"]
                row["methods"]["ws"] = _auto_result(case, "ws", row["trivial"], reference)
                _print_row(row)
    methods_by_task = {}
    for r in report["rows"]:
        known = methods_by_task.setdefault(r["task"], [])
        known += [m for m in r["methods"] if m not in known]
    _summarise(report, methods_by_task, cases_module.PARTS)
    run = dict(command=invoked_command("robustness.py", args.argv), revision=_revision(),
               minutes=(time.perf_counter() - started) / 60)
    runs = report.setdefault("ws_runs", {})
    if report.get("ws_command"):               # an earlier version's record of all tasks
        earlier = dict(command=report.pop("ws_command"), revision=report.pop("ws_revision"),
                       minutes=report.pop("ws_wall_minutes"))
        runs.update({task: earlier for task in cases_module.TASKS})
    runs.update({task: run for task in args.tasks})
    return report


def _ws_runs_lines(report: dict) -> list[str]:
    """Which command (and revision) produced the ``ws`` rows of each task."""
    runs = report.get("ws_runs") or {}
    if report.get("ws_command"):                                  # saved by an earlier version
        runs = {"all tasks": dict(command=report["ws_command"], revision=report["ws_revision"],
                                  minutes=report["ws_wall_minutes"])}
    if not runs:
        return []
    by_command = {}
    for task, run in runs.items():
        by_command.setdefault((run["command"], run["revision"], run["minutes"]), []).append(task)
    lines = [f"{', '.join(tasks)}: `{command}` — revision {revision}, {minutes:.0f} min"
             for (command, revision, minutes), tasks in by_command.items()]
    return ["`ws` rows (the default WS sampler with the shipped prior, compared with the first "
            "classical method's best fixed result):", "", *[f"- {line}" for line in lines], ""]


def _print_row(row: dict) -> None:
    cells = [f"{m}: auto {v['auto']:.4g} best {v.get('best', {}).get('score', math.nan):.4g} "
             f"({_fmt_cmp(row['task'], v['comparison'])}{', WORSE than trivial' if v['worse_than_trivial'] else ''})"
             for m, v in row["methods"].items()]
    print(f"{row['id']} trivial {row['trivial']:.4g} | " + " | ".join(cells), flush=True)


def _revision() -> str:
    """The checkout's commit and the source files changed in the working tree (they count);
    ``WSPRIOR_REVISION`` overrides it (a run from a ``git archive`` export of a commit)."""
    import subprocess

    if os.environ.get("WSPRIOR_REVISION"):
        return os.environ["WSPRIOR_REVISION"]

    def git(*args):
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = [f for f in git("diff", "--name-only", "HEAD", "--", "src").split() if f]
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def _machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return (f"{device}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {platform.machine()}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("validation", "test", "all"), default="all")
    parser.add_argument("--tasks", nargs="+", default=list(cases_module.TASKS),
                        choices=list(cases_module.TASKS))
    parser.add_argument("--methods", nargs="+", default=None,
                        choices=sorted({m for ms in CLASSICAL.values() for m in ms}),
                        help="classical methods to run (default: all of each task's)")
    parser.add_argument("--ws", action="store_true", help="also the default WS sampler (slow)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_CASES} cases per part and task, coarse grids, tiling at 1024² only")
    parser.add_argument("--skip-tiling", action="store_true")
    parser.add_argument("--skip-pollen", action="store_true")
    parser.add_argument("--skip-properties", action="store_true",
                        help="skip the scale-equivariance and degenerate-input checks")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="memoise simulated cases here (e.g. /tmp/robustness-cases)")
    parser.add_argument("--json", type=Path, default=None,
                        help=f"per-case output (default {RESULTS.relative_to(ROOT)}; with --quick "
                             "none unless given)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the section; write the JSON but not the docs")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render the docs section from a saved JSON (runs nothing)")
    parser.add_argument("--add-ws", type=Path, default=None,
                        help="add the default WS sampler to a saved JSON (--part, --tasks) "
                             "and rewrite it and the docs section")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.from_json is not None:
        report = _restored(json.loads(args.from_json.read_text()))
        publish(markdown(report), args.output, "robustness", dry_run=args.dry_run)
        return
    if args.add_ws is not None:
        report = add_ws(_restored(json.loads(args.add_ws.read_text())), args)
        args.json = args.json or args.add_ws
    else:
        report = run(args)
    path = args.json or (None if args.quick else RESULTS)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(report), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
    publish(markdown(report), args.output, "robustness", dry_run=args.dry_run or args.quick)


if __name__ == "__main__":
    main()
