"""``wsprior`` command line: one subcommand per API entry point (``deblur-dehaze``, ``tie``,
``idt``), with the API's parameter names as flags and ``--config`` YAML keys; ``train`` and
``sample`` for priors; ``demo`` on the bundled samples.

Everything that can be checked before the work starts is checked first (parameters, the output
folder, the prior file, the device), so a mistake is one line on stderr and exit status 2, with
nothing written.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import typing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__, api, io
from .console_progress import ConsoleProgress
from .prior.diffusion_prior import DEFAULT_PRIORS
from .settings import (DIFFUSION_METHODS, DeblurDehazeSettings, IdtSettings, TieSettings,
                       validated)

DESCRIPTION = """\
Computational-microscopy reconstruction with a whitened-score diffusion prior: remove blur and
haze from widefield images, recover phase from a defocus stack (TIE) and refractive index from
images under LED illumination (IDT); train and sample diffusion priors.

Parameters are flags or keys of a YAML file given with --config (the same names as the Python
API, e.g. wavelength_um for --wavelength-um); flags override the file. Lengths are in µm."""

EPILOG = """\
examples:
  wsprior demo -o demo_output
  wsprior deblur-dehaze image.tif -o clean.tif --method rl --na 0.8 --wavelength-um 0.52 \\
      --pixel-size-um 0.1
  wsprior tie stack.tif -o phase.tif --method tikhonov --z-um -2 0 2 --wavelength-um 0.53 \\
      --pixel-size-um 0.2 --n-medium 1.33
  wsprior idt leds.tif -o dn.tif --method tikhonov --config acquisition.yaml

'wsprior COMMAND --help' lists a command's options with their units and defaults."""

DEVICES = ("auto", "cpu", "cuda")
SHIPPED_PRIORS = tuple(DEFAULT_PRIORS)
RECIPES_DIR = Path(__file__).resolve().parent / "prior" / "recipes"
TRAINING_RECIPES = ("cpu", "gpu")

_TASKS = {
    "deblur-dehaze": (api.deblur_dehaze, DeblurDehazeSettings, "YX"),
    "tie": (api.tie_phase, TieSettings, "YX"),
    "idt": (api.idt, IdtSettings, "ZYX"),
}
_TASK_HELP = {
    "deblur-dehaze": "remove blur and out-of-focus haze from widefield images (..., Y, X)",
    "tie": "phase in rad from a defocus stack (..., Z, Y, X): transport-of-intensity equation",
    "idt": "refractive-index slices from brightfield images under LED illumination "
           "(..., L, Y, X): intensity diffraction tomography",
}


def _method_help(task: str) -> str:
    diffusion = ("diffusion prior (see --prior; about 12 s per 512² plane on a 2-core CPU): "
                 "ws = whitened-score sampler; dps, score_ald, ddnm")
    if task == "deblur-dehaze":
        return ("reconstruction method. Classical (seconds): wiener = Tikhonov whitened by the "
                "haze spectrum (tikhonov names the same solver), rl = Richardson-Lucy. With a "
                f"{diffusion}; joint = signal and haze priors together")
    return f"reconstruction method. Classical (seconds): tikhonov. With a {diffusion}"


_FLAG_HELP = {  # parameter → (metavar, what it is); the default is added from the settings model
    # acquisition
    "na": ("NA", "numerical aperture of the objective, in (0, 1.7]"),
    "wavelength_um": ("λ", "wavelength in µm, 0.2-2"),
    "pixel_size_um": ("PIXEL", "sample-plane pixel size in µm: camera pixel / magnification"),
    "haze_sigma_um": ("σ", "correlation width of the out-of-focus haze in µm"),
    "haze_std": ("STD", "haze standard deviation in image units, or auto = estimated "
                             "from the image"),
    "background": ("LEVEL", "constant offset in image units, or auto = estimated"),
    "iterations": ("N", "Richardson-Lucy iterations of --method rl, 1-10000"),
    "z_um": ("Z", None),  # task-specific, below
    "n_medium": ("INDEX", "refractive index of the medium, 1-2"),
    "illumination_na": ("TABLE", "illumination NAs: a table with one row NA_x, NA_y per LED "
                                 "image, in image order (.csv, .txt, .npy or .yaml)"),
    "slice_thickness_um": ("DZ", "thickness of each slice in µm: one value, or one per slice"),
    "components": (None, "what to reconstruct: ri = refractive-index contrast Δn = n - "
                         "n_medium (float32); permittivity = complex Δε = n² - n_medium² "
                         "(complex64)"),
    # method
    "method": (None, None),
    "regularization": ("WEIGHT", "weight of the classical solver, > 0, or auto = chosen "
                                      "by the discrepancy principle"),
    "prior": ("PRIOR", "diffusion prior for the diffusion methods: default (the shipped "
                       "whitened-score prior), conventional, or a .safetensors file from "
                       "'wsprior train'"),
    "steps": ("N", "sampler steps per posterior sample, 1-1000"),
    "guidance": ("λ", "data-consistency weight λ > 0 of the diffusion methods, or auto"),
    "n_samples": ("N", "posterior samples averaged into the result, 1-256"),
    "return_std": (None, "also write the per-pixel standard deviation over the samples to "
                         "OUTPUT_std beside OUTPUT (diffusion methods; needs --n-samples 2 or "
                         "more to be non-zero)"),
    "seed": ("N", "random seed of the diffusion sampler: the same seed gives the same result"),
    "start_from_noise": (None, "start sampling from structured noise at t = 1 instead of the "
                               "classical solution diffused to t = 0.5 (needs more --steps)"),
    "stochasticity": ("η", "fresh noise per step of ws, ddnm and joint, 0-1: 0 = "
                                "deterministic, 1 = ancestral"),
    # compute
    "device": ("DEVICE", "where to compute: cpu, cuda (an NVIDIA GPU; cuda:N picks one) or "
                         "auto = cuda if available, else cpu"),
    "tile_size": ("PX", "solve in tiles of this edge in pixels (32-65536) with overlapping "
                        "margins, for planes larger than memory"),
}
_TASK_FLAG_HELP = {
    ("tie", "z_um"): "defocus of each plane of the stack in µm, in stack order, e.g. --z-um "
                     "-2 0 2 (at least 2 distinct values)",
    ("idt", "z_um"): "depths of the reconstructed slices in µm, 0 = focal plane, positive "
                     "downstream, e.g. --z-um -2 0 2",
    ("tie", "n_medium"): "refractive index of the immersion / mounting medium, 1-2",
    ("idt", "n_medium"): "refractive index of the medium around the sample, 1-2",
    ("deblur-dehaze", "n_medium"): "refractive index of the objective's immersion medium: "
                                   "1.0 air, 1.33 water, 1.515 oil; above --na",
    ("idt", "na"): "numerical aperture of the objective, below --n-medium",
    ("tie", "wavelength_um"): "illumination wavelength in µm, 0.2-2",
    ("idt", "wavelength_um"): "illumination wavelength in µm, 0.2-2",
    ("deblur-dehaze", "wavelength_um"): "emission wavelength in µm, 0.2-2",
}
_REQUIRED = "required: here or in --config"
_DEFAULT_WORDS = {  # defaults that need words: None, or 'auto' with a meaning
    ("deblur-dehaze", "na"): "none; required unless --psf is given",
    ("deblur-dehaze", "wavelength_um"): "none; required unless --psf is given",
    ("deblur-dehaze", "pixel_size_um"): "none; required",
    ("deblur-dehaze", "n_medium"): "chosen from --na: air below NA 1",
    ("idt", "slice_thickness_um"): "the spacing of --z-um; required for a single slice",
    ("idt", "steps"): "6 steps per sample for ws, 12 for the other samplers",
    ("*", "steps"): "5 steps per sample for ws, 12 for the other samplers",
    ("*", "n_samples"): "2 samples for ws, 4 for the other samplers",
    ("*", "stochasticity"): "auto = 0.85",
    ("*", "tile_size"): "whole planes, tiled automatically when a plane needs more than "
                        "half the free memory",
    ("*", "haze_sigma_um"): "auto = fitted to the image",
    ("*", "iterations"): "auto = until the data misfit reaches the noise level, at most 100",
}


def _flag_help(task: str, name: str, field) -> str:
    """What the flag is, then its default (from the settings model) or that it is required."""
    _, text = _FLAG_HELP.get(name, (None, None))
    text = _method_help(task) if name == "method" else _TASK_FLAG_HELP.get((task, name), text)
    text = text or field.description or name.replace("_", " ")
    if field.annotation is bool:
        return text
    if field.is_required():
        return f"{text} ({_REQUIRED})"
    words = _DEFAULT_WORDS.get((task, name)) or (
        _DEFAULT_WORDS.get(("*", name)) if field.default in (None, "auto") else None)
    return f"{text} (default: {words or _plain_default(field.default)})"


def _accepts_auto(field) -> bool:
    return "auto" in [value for arg in typing.get_args(field.annotation)
                      for value in typing.get_args(arg)]


def _plain_default(value) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


_GROUPS = {  # argument group → the parameters it holds, in help order; the rest: acquisition
    "method": ("method", "regularization", "iterations", "components"),
    "diffusion prior (diffusion methods only)": (
        "prior", "steps", "n_samples", "guidance", "seed", "return_std", "start_from_noise",
        "stochasticity"),
    "compute": ("device", "tile_size"),
}


class _HelpFormatter(argparse.HelpFormatter):
    """Option help wrapped in a wide column."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=30, width=100)


class _ExamplesHelpFormatter(_HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The top level's description and examples as written."""


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"wsprior: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the disk filled up while writing
        print(f"wsprior: error: {error}; no complete output written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("wsprior: interrupted; no complete output written (rerun the same command to "
              "resume a .zarr output)", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsprior", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_ExamplesHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wsprior {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, model, _) in _TASKS.items():
        sub = commands.add_parser(name, help=_TASK_HELP[name], description=_TASK_HELP[name],
                                  formatter_class=_HelpFormatter,
                                  argument_default=argparse.SUPPRESS)
        sub.add_argument("input", help="input TIFF, zarr or OME-Zarr")
        sub.add_argument("-o", "--output", required=True,
                         help="output TIFF (float32, pixel size in µm in its resolution "
                              "tags), or a .zarr store written chunk by chunk (rerun the same "
                              "command to resume an interrupted run)")
        sub.add_argument("--config", metavar="YAML",
                         help="parameters in a YAML file, with the API's names "
                              "(e.g. sample_data/*.yaml); flags override it")
        groups = _add_model_flags(sub, model, name)
        groups["compute"].add_argument(
            "--scheduler", metavar="ADDRESS", help="run the tiles on this dask.distributed "
            "scheduler (e.g. tcp://host:8786; default: this computer)")
        if name == "deblur-dehaze":
            groups["acquisition"].add_argument(
                "--psf", metavar="TIFF", help="measured 2D PSF with the image's pixel size, "
                "instead of the Airy PSF from --na and --wavelength-um")
        sub.set_defaults(handler=_run_task, task=name)
    demo = commands.add_parser(
        "demo", help="reconstruct the bundled samples with every method; write TIFFs, "
                     "metrics.md and demo.png (1-2 minutes on a 2-core CPU)",
        description="Reconstruct the bundled samples (deblur + dehaze, TIE, IDT) with every "
                    "method and write the results as TIFFs, their metrics against the ground "
                    "truth (metrics.md) and a figure (demo.png); 1-2 minutes on a 2-core CPU.",
        formatter_class=_HelpFormatter)
    demo.add_argument("-o", "--output", default="demo_output", metavar="FOLDER",
                      help="output folder (default: %(default)s)")
    demo.add_argument("--device", default="auto", choices=DEVICES,
                      help="where to compute; auto = cuda if available (default: %(default)s)")
    demo.set_defaults(handler=_run_demo)
    _add_prior_commands(commands)
    return parser


def _add_model_flags(parser: argparse.ArgumentParser, model, task: str) -> dict:
    """One flag per settings field, in argument groups; returns the groups by title."""
    groups = {"acquisition": parser.add_argument_group("acquisition (lengths in µm)")}
    groups.update({title: parser.add_argument_group(title) for title in _GROUPS})
    grouped = [name for names in _GROUPS.values() for name in names]
    acquisition = [name for name in model.model_fields if name not in grouped]
    order = acquisition + [name for name in grouped if name in model.model_fields]
    for field_name in order:
        field = model.model_fields[field_name]
        parser = groups[next((title for title, names in _GROUPS.items()
                              if field_name in names), "acquisition")]
        flag = "--" + field_name.replace("_", "-")
        metavar = _FLAG_HELP.get(field_name, (None, None))[0]
        if metavar and _accepts_auto(field):
            metavar += "|auto"
        kwargs = dict(dest=field_name,
                      help=_flag_help(task, field_name, field).replace("%", "%%"))
        origin = typing.get_origin(field.annotation)
        args = typing.get_args(field.annotation)
        if field_name == "illumination_na":
            parser.add_argument(flag, metavar=metavar, **kwargs)
        elif origin is typing.Literal:
            parser.add_argument(flag, choices=args, **kwargs)
        elif origin is list or list in [typing.get_origin(a) for a in args]:
            parser.add_argument(flag, type=float, nargs="+", metavar=metavar, **kwargs)
        elif field.annotation is bool:
            parser.add_argument(flag, action="store_true", **kwargs)
        else:
            parser.add_argument(flag, type=_number_or_word, metavar=metavar, **kwargs)
    return groups


def _number_or_word(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


# ------------------------------------------------------------------------------------ tasks
def _run_task(args: argparse.Namespace) -> int:
    function, model, axes = _TASKS[args.task]
    params = io.read_parameters(args.config) if getattr(args, "config", None) else {}
    reserved = {"input", "output", "config", "handler", "task", "command", "psf", "scheduler"}
    params.update({k: v for k, v in vars(args).items() if k not in reserved})
    if isinstance(params.get("illumination_na"), (str, Path)):
        params["illumination_na"] = io.read_table(params["illumination_na"])
    settings = _checked(model, params)
    outputs = [Path(args.output)]
    if settings.return_std:
        outputs.append(_std_path(outputs[0]))
    for output in outputs:
        _check_output(output)
    _check_compute(settings.method, settings.prior, settings.device)
    if getattr(args, "psf", None):
        params["psf"] = io.read_image(args.psf)
    with _cluster(getattr(args, "scheduler", None)) as client:
        return _solve_and_write(function, args, params, settings, axes, client)


def _checked(model, params: dict):
    """The settings model of ``params``: every parameter checked before any data is read."""
    values = dict(params)
    if values.get("illumination_na") is not None:
        values["illumination_na"] = np.asarray(values["illumination_na"]).tolist()
    return validated(model, **values)


def _check_output(path: Path) -> None:
    try:
        io.check_writable(path)
    except ValueError as error:
        raise ValueError(f"-o/--output: {error}") from None


def _check_compute(method: str | None, prior: str | None, device: str) -> None:
    """The prior of a diffusion method exists and is a prior; a CUDA device exists."""
    if method in DIFFUSION_METHODS:
        _check_prior(prior)
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this computer has no CUDA GPU (or torch was "
                             f"installed without CUDA); use --device auto or cpu")


def _check_prior(prior: str | None, flag: str = "--prior") -> None:
    """A shipped prior's name, or a .safetensors file that exists and holds a prior."""
    from .prior.diffusion_prior import check_prior_source

    check_prior_source(prior, flag, f" (give a .safetensors file from 'wsprior train', or one "
                                    f"of {', '.join(SHIPPED_PRIORS)})")


_SHAPE_RULES = {  # task → (parameter counted, its count as a sentence, what is needed)
    "tie": ("z_um", "planes", "--z-um lists {} defocus values",
            "the stack needs one plane per defocus value"),
    "idt": ("illumination_na", "images", "the illumination NA table has {} rows",
            "IDT needs one image per LED (table row)"),
}


def _check_shape(task: str, shape: tuple, params: dict) -> None:
    """The input has one plane per --z-um value (TIE) or one image per LED (IDT)."""
    if task not in _SHAPE_RULES:
        return
    name, items, counted, needed = _SHAPE_RULES[task]
    found = shape[-3] if len(shape) >= 3 else 1
    if found != len(params[name]):
        raise ValueError(f"the input has {found} {items} (shape {shape}) but "
                         f"{counted.format(len(params[name]))}: {needed}")


@contextlib.contextmanager
def _cluster(address: str | None):
    """The dask.distributed client for ``--scheduler`` (active while the job runs, so the
    tiled solvers use its workers), else the client already active, if any."""
    from . import scheduling

    if not address:
        yield scheduling.active_client()
        return
    from distributed import Client

    with Client(address) as client:
        yield client


def _solve_and_write(function, args, params: dict, settings, axes: str, client) -> int:
    """TIFF → TIFF in memory; a zarr input or output keeps the data lazy (dask) and a zarr
    output is written chunk by chunk (``wsprior.storage``). With ``return_std`` the per-pixel
    standard deviation goes to ``OUTPUT_std`` beside the mean in ``OUTPUT``."""
    from . import scheduling, storage

    to_zarr = storage.is_zarr(args.output)
    lazy = to_zarr or storage.is_zarr(args.input)
    data = storage.open_array(args.input) if lazy else io.read_image(args.input)
    _check_shape(args.task, data.shape, params)
    print(announcement(args.task, function, data, params, settings), flush=True)
    with ConsoleProgress(args.task) as progress:
        result = function(data, progress=progress, **params)
        outputs = _named_outputs(Path(args.output), result)
        if to_zarr:
            for index, (path, array) in enumerate(outputs):
                job = storage.fingerprint(task=args.task, input=str(Path(args.input).resolve()),
                                          shape=data.shape, dtype=str(data.dtype), output=index,
                                          parameters={**params, "psf": getattr(args, "psf", None)})
                wrote = storage.write_zarr(array, str(path), job=job, axes=axes,
                                           pixel_size_um=params.get("pixel_size_um"),
                                           progress=progress, client=client)
                print(f"{'wrote' if wrote else 'already complete:'} {path} {array.shape} "
                      f"{array.dtype}")
            return 0
        outputs = [(path, scheduling.compute_chunks(array, client=client, progress=progress)
                    if not isinstance(array, np.ndarray) and hasattr(array, "dask") else array)
                   for path, array in outputs]
    for path, array in outputs:
        io.write_image(path, array, pixel_size_um=params.get("pixel_size_um"),
                       axes=axes[-array.ndim:] if array.ndim <= len(axes) else None)
        print(f"wrote {path} {array.shape} {array.dtype}")
    return 0


def announcement(task: str, function, data, params: dict, settings) -> str:
    """What is about to run (``params``, validated as ``settings``): the method (and a
    sampler's budget), the data, the device and the expected duration
    (``wsprior.expected_time``)."""
    import torch

    from ._arrays import resolve_device
    from .expected_time import describe_seconds, expected_seconds

    device = resolve_device(settings.device)
    where = (f"{device} ({torch.get_num_threads()} threads)" if device.type == "cpu"
             else f"{device} ({torch.cuda.get_device_name(device)})")
    core = settings.image_axes
    images = int(np.prod(data.shape[:-core]))
    try:
        expected = describe_seconds(expected_seconds(function, data, params, core))
    except ValueError as error:   # the 128 px calibration crop itself is refused
        expected = f"not estimated ({error})"
    return (f"{task}: method {_method_words(settings)}; {images} image(s) of "
            f"{' × '.join(map(str, data.shape[-core:]))}; device {where}; expected {expected}")


def _method_words(settings) -> str:
    from .solvers.samplers import budget

    if settings.method not in DIFFUSION_METHODS:
        return f"{settings.method} (classical, no network)"
    samples, steps = budget(settings.method, settings)
    return (f"{settings.method} ({samples} samples × {steps} steps = {samples * steps} network "
            f"evaluations per image, prior {settings.prior})")


def _std_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}_std{output.suffix}")


def _named_outputs(output: Path, result) -> list[tuple[Path, object]]:
    """``[(OUTPUT, result)]``, or ``[(OUTPUT, mean), (OUTPUT_std, std)]`` for ``(mean, std)``."""
    if not isinstance(result, tuple):
        return [(output, result)]
    mean, std = result
    return [(output, mean), (_std_path(output), std)]


# ----------------------------------------------------------------------------------- priors
def _add_prior_commands(commands) -> None:
    from .prior.train import TrainConfig

    defaults = TrainConfig()
    train = commands.add_parser(
        "train", formatter_class=_HelpFormatter,
        help="train a diffusion prior (whitened-score, conventional or haze)",
        description="Train a diffusion prior on synthetic phantoms and/or your images; "
                    "resumes from OUTPUT.train.safetensors when it exists. Unset options take "
                    "the --config file's value, else the default shown.")
    train.add_argument("-o", "--output", required=True, metavar="PRIOR.safetensors",
                       help="weights to write (.safetensors; its metadata goes to the .json "
                            "beside it)")
    train.add_argument("--recipe", choices=TRAINING_RECIPES,
                       help="start from a shipped set of settings: cpu = a long resumable run "
                            "on 2 cores, gpu = one large GPU (bf16, compiled, batch 64 of 128 px); "
                            "--config and flags override it")
    train.add_argument("--config", metavar="YAML",
                       help="YAML with the training settings (network, noise_family, ...)")
    train.add_argument("--kind", choices=["ws", "conventional", "haze"],
                       help="ws = whitened score (learns structured noise), conventional = "
                            "white noise (K = I), haze = a prior of haze fields for the joint "
                            f"sampler (default: {defaults.kind})")
    train.add_argument("--data", nargs="+", metavar="SOURCE",
                       help="'synthetic' (cell phantoms), 'real' (the real images the shipped "
                            "priors train on, see the README) and/or TIFF files or folders "
                            f"(default: {' '.join(defaults.data)})")
    numbers = {
        "steps": ("N", f"optimiser steps in all, resumed ones included (default: {defaults.steps})"),
        "batch-size": ("N", f"patches per step (default: {defaults.batch_size})"),
        "patch-size": ("PX", "edge of the training patches in pixels, a multiple of 8 "
                             f"(default: {defaults.patch_size})"),
        "seed": ("N", f"random seed of phantoms, patches and noise (default: {defaults.seed})"),
        "synthetic-images": ("N", f"number of synthetic phantoms (default: "
                                  f"{defaults.synthetic_images})"),
        "synthetic-size": ("PX", f"edge of each synthetic phantom in pixels (default: "
                                 f"{defaults.synthetic_size})"),
    }
    for flag, (metavar, text) in numbers.items():
        train.add_argument(f"--{flag}", type=int, metavar=metavar, help=text)
    train.add_argument("--learning-rate", type=float, metavar="RATE",
                       help=f"AdamW learning rate (default: {defaults.learning_rate:g})")
    train.add_argument("--base-channels", type=int, metavar="N",
                       help="UNet width: base channels (default: "
                            f"{defaults.network.base_channels}, about 2 M parameters)")
    train.add_argument("--device", metavar="DEVICE",
                       help="cpu, cuda[:N] or auto = cuda if available (default: "
                            f"{defaults.device})")
    train.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the network (for long GPU runs)")
    train.add_argument("--init-from", metavar="PRIOR",
                       help="fine-tune: start from this prior's weights "
                            f"({', '.join(SHIPPED_PRIORS)} or a .safetensors file; default: none)")
    train.set_defaults(handler=_run_train)
    sample = commands.add_parser(
        "sample", formatter_class=_HelpFormatter,
        help="draw unconditional samples from a prior into a PNG grid (what it learned)",
        description="Draw unconditional samples from a diffusion prior into a PNG grid: what "
                    "the prior has learned.")
    sample.add_argument("-o", "--output", required=True, metavar="PNG", help="PNG file")
    sample.add_argument("--prior", default="default", metavar="PRIOR",
                        help=f"{', '.join(SHIPPED_PRIORS)} or a .safetensors file "
                             "(default: %(default)s)")
    sample.add_argument("--count", type=int, default=16, metavar="N",
                        help="number of samples (default: %(default)s)")
    sample.add_argument("--size", type=int, default=64, metavar="PX",
                        help="sample edge in pixels (default: %(default)s)")
    sample.add_argument("--steps", type=int, default=50, metavar="N",
                        help="sampler steps (default: %(default)s)")
    sample.add_argument("--seed", type=int, default=0, metavar="N",
                        help="random seed (default: %(default)s)")
    sample.add_argument("--device", default="auto", metavar="DEVICE",
                        help="cpu, cuda[:N] or auto (default: %(default)s)")
    sample.set_defaults(handler=_run_sample)


def _run_train(args: argparse.Namespace) -> int:
    from .prior.train import TrainConfig, train

    values = io.read_parameters(RECIPES_DIR / f"{args.recipe}.yaml") if args.recipe else {}
    values.update(io.read_parameters(args.config) if args.config else {})
    flags = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("output", "config", "recipe", "handler", "command",
                                            "base_channels")}
    values.update(flags)
    if args.base_channels:
        values["network"] = {**values.get("network", {}), "base_channels": args.base_channels}
    config = validated(TrainConfig, **values)
    _check_output(Path(args.output))
    _check_prior(config.init_from, "--init-from")
    _check_compute(None, None, config.device)
    try:
        with ConsoleProgress(f"train {config.kind}", keep=True) as progress:
            path = train(config, args.output, command="wsprior " + " ".join(sys.argv[1:]),
                         progress=lambda step, total, loss: progress(step, total,
                                                                     f"loss {loss:.4f}"))
    except KeyboardInterrupt:
        # the loss log keeps the steps of the saved state (a rerun appends from there), or goes
        from ._training_files import trim_loss_log

        state = trim_loss_log(args.output, config)
        kept = (f"training state at step {state.steps} kept: rerun the same command to resume"
                if state else "no training state saved yet (one every "
                              f"{config.checkpoint_every} steps)")
        print(f"wsprior: interrupted; no prior written ({kept})", file=sys.stderr)
        return 130
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def _run_sample(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._arrays import resolve_device
    from .prior.diffusion_prior import load_prior

    _check_output(Path(args.output))
    _check_prior(args.prior)
    _check_compute(None, None, args.device)
    prior = load_prior(args.prior, device=resolve_device(args.device))
    with tqdm(total=args.steps, desc="sample", unit="step") as bar:
        samples = prior.sample((args.count, args.size, args.size), steps=args.steps, seed=args.seed,
                               progress=lambda done, total: bar.update(1)).cpu().numpy()
    columns = int(np.ceil(np.sqrt(args.count)))
    rows = int(np.ceil(args.count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, samples):
        ax.imshow(image, cmap="gray", vmin=-1, vmax=1)
    fig.suptitle(f"{args.prior}: {prior.metadata.kind} prior, {args.steps} DDIM steps", fontsize=9)
    fig.savefig(args.output, dpi=100)
    plt.close(fig)
    print(f"wrote {args.output}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _check_output(Path(args.output) / "demo.png")
    _check_compute(None, None, args.device)
    run_demo(Path(args.output), device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
