"""The WS sampler with each prior on the robustness benchmark's cases (issue 20): does a prior
trained on real images beat the shipped one, the conventional prior trained the same way and a
control with no network, on content like a microscopist's?

    python benchmarks/prior_cases.py --part validation --dry-run      # for choices
    python benchmarks/prior_cases.py --part test \
        --priors "shipped WS=default" "new WS=PATH" "new conventional=PATH"

Per case (``wsprior.data.robustness``, the same cases, metrics and trivial estimates as
``robustness.py``): the automatic classical solvers, the control (the first classical estimate
clipped to the prior's range, no network: ``samplers.clipped_classical``) and ``method="ws"``
with every prior. Cases are grouped by specimen (real-image content, phantoms, textures) and
light (low: under ``LOW_LIGHT_PHOTONS`` photons per pixel). Deblur + dehaze: PSNR gain (dB)
over the better automatic classical result of the case; TIE and IDT: RMSE ratio to the
automatic Tikhonov result (< 1 is better). Writes JSON and the "prior_cases" section of
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ROOT, invoked_command, write_section  # noqa: E402
from robustness import API, CLASSICAL, _revision, load_case, score, trivial_score  # noqa: E402
from samplers import clipped_classical  # noqa: E402

from wsprior.data import robustness as cases_module  # noqa: E402

LOW_LIGHT_PHOTONS = 500
CONTROL = "control (no network)"
SPECIMENS = ("real", "phantom", "texture")


def evaluate_case(case: dict, priors: dict[str, str], known: dict | None = None) -> dict:
    """Scores of one case: trivial, classical (automatic), control, ws per prior (``known``:
    the scores an earlier run of the same revision measured, reused)."""
    task, truth = case["task"], case["truth"]
    scores = dict(known or {})
    priors = {name: prior for name, prior in priors.items() if name not in scores}
    if known:
        return _with_priors(case, scores, priors)
    scores["trivial"] = trivial_score(task, case["measurement"], truth)
    for method in CLASSICAL[task]:
        scores[method] = score(task, truth, API[task](case["measurement"], method=method,
                                                      **case["params"]))
    scores[CONTROL] = score(task, truth, clipped_classical(task, case["measurement"],
                                                           case["params"]))
    return _with_priors(case, scores, priors)


def _with_priors(case: dict, scores: dict, priors: dict[str, str]) -> dict:
    task, truth = case["task"], case["truth"]
    for name, prior in priors.items():
        started = time.perf_counter()
        estimate = API[task](case["measurement"], method="ws", prior=prior, **case["params"])
        scores[name] = score(task, truth, estimate)
        scores[f"{name} s"] = time.perf_counter() - started
    return dict(id=case["id"], task=task, specimen_kind=case["specimen_kind"],
                photons=case["photons"], scores=scores)


def _reusable(path: Path | None, priors: dict[str, str]) -> dict[str, dict]:
    """Case id → scores of an earlier run, without the priors it ran under other files."""
    if path is None:
        return {}
    earlier = json.loads(path.read_text())
    stale = {name for name, prior in earlier["priors"].items() if priors.get(name) != prior}
    return {row["id"]: {k: v for k, v in row["scores"].items()
                        if k not in stale and k.removesuffix(" s") not in stale}
            for row in earlier["rows"]}


def versus_classical(row: dict, method: str) -> float:
    """Deblur: dB over the better classical result; TIE/IDT: RMSE ratio to Tikhonov."""
    s = row["scores"]
    if row["task"] == "deblur_dehaze":
        return s[method] - max(s[m] for m in CLASSICAL["deblur_dehaze"])
    return s[method] / s["tikhonov"]


def worse_than_trivial(row: dict, method: str) -> bool:
    s = row["scores"]
    return s[method] < s["trivial"] if row["task"] == "deblur_dehaze" else s[method] > s["trivial"]


def light(row: dict) -> str:
    return "low light" if row["photons"] < LOW_LIGHT_PHOTONS else "normal"


def summary(rows: list[dict], methods: list[str]) -> list[dict]:
    """Per task, specimen kind and light: median, mean and worst comparison per method."""
    groups = {}
    for row in rows:
        groups.setdefault((row["task"], row["specimen_kind"], light(row)), []).append(row)
    table = []
    for (task, kind, regime), members in sorted(groups.items(), key=lambda g: (
            cases_module.TASKS.index(g[0][0]), SPECIMENS.index(g[0][1]), g[0][2])):
        for method in [m for m in methods if all(m in r["scores"] for r in members)]:
            values = np.array([versus_classical(r, method) for r in members])
            worst = values.min() if task == "deblur_dehaze" else values.max()
            table.append(dict(task=task, specimen=kind, light=regime, method=method,
                              cases=len(members), median=float(np.median(values)),
                              mean=float(values.mean()), worst=float(worst),
                              worse_than_trivial=sum(worse_than_trivial(r, method)
                                                     for r in members)))
    return table


def markdown(report: dict) -> str:
    lines = ["## Priors on the robustness cases", "",
             f"Command: `{report['command']}` (revision {report['revision']}, "
             f"{report['minutes']:.0f} min). The {report['part']} part of the robustness "
             "benchmark's cases; per case the automatic classical solvers, the control (the "
             "classical estimate clipped to the prior's range, no network) and the default "
             "`ws` sampler with each prior. Deblur + dehaze: PSNR gain (dB, gain/offset fitted) "
             "over the better automatic classical result (Wiener or RL); TIE and IDT: RMSE ratio "
             "to automatic Tikhonov (below 1 is better). Low light: under "
             f"{LOW_LIGHT_PHOTONS} photons per pixel. \"below trivial\": cases worse than the "
             "raw input (deblur) or the zero estimate (TIE, IDT).", ""]
    for name, prior in report["priors"].items():
        lines.append(f"- **{name}**: `{prior}`")
    lines += ["", "| task | specimen | light | cases | method | median | mean | worst | "
              "below trivial |", "|---|---|---|---|---|---|---|---|---|"]
    for e in report["summary"]:
        unit = " dB" if e["task"] == "deblur_dehaze" else "×"
        sign = "+" if e["task"] == "deblur_dehaze" else ""
        lines.append(f"| {e['task']} | {e['specimen']} | {e['light']} | {e['cases']} | "
                     f"{e['method']} | {e['median']:{sign}.2f}{unit} | {e['mean']:{sign}.2f}{unit}"
                     f" | {e['worst']:{sign}.2f}{unit} | {e['worse_than_trivial']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=cases_module.PARTS, default="validation")
    parser.add_argument("--tasks", nargs="+", default=list(cases_module.TASKS),
                        choices=list(cases_module.TASKS))
    parser.add_argument("--specimens", nargs="+", default=["real"], choices=SPECIMENS)
    parser.add_argument("--priors", nargs="+", metavar="NAME=PRIOR",
                        default=["shipped WS=default", "shipped conventional=conventional"])
    parser.add_argument("--limit", type=int, default=None, help="first N cases per task (a smoke test)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--reuse", type=Path, default=None, metavar="JSON",
                        help="an earlier run's JSON: its scores of the same priors (same names "
                             "and files) are reused, the new priors run")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--dry-run", action="store_true", help="print the section, write nothing")
    args = parser.parse_args(argv)
    priors = dict(item.split("=", 1) for item in args.priors)
    report_json = json.loads((ROOT / "benchmarks" / "results" / "robustness.json").read_text())
    known = _reusable(args.reuse, priors)
    started, rows = time.perf_counter(), []
    for task in args.tasks:
        specs = [s for s in cases_module.case_specs(task, args.part)
                 if s["specimen_kind"] in args.specimens]
        for spec in specs[:args.limit]:
            case = load_case(spec, args.cache_dir, report_json["deblur_n_medium_passed"])
            rows.append(evaluate_case(case, priors, known.get(spec["id"])))
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                              for k, v in rows[-1]["scores"].items()}), rows[-1]["id"], flush=True)
    methods = [*CLASSICAL["deblur_dehaze"], *CLASSICAL["tie"], CONTROL, *priors]
    report = dict(command=invoked_command("prior_cases.py", argv if argv is not None else sys.argv[1:]),
                  revision=_revision(), part=args.part, priors=priors,
                  minutes=(time.perf_counter() - started) / 60, rows=rows,
                  summary=summary(rows, methods))
    section = markdown(report)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=lambda v: None if
                                        isinstance(v, float) and math.isnan(v) else v))
    if not args.dry_run:
        write_section(args.output, section, marker="prior_cases")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
