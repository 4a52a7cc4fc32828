"""``wsprior`` command line: one subcommand per API entry point, flags generated from the
parameter models, so the CLI, ``--config params.yaml`` and the API always share names.

    wsprior tie stack.tif -o phase.tif --z-um -2 0 2 --wavelength-um 0.53 --pixel-size-um 0.3
    wsprior idt leds.tif -o dn.tif --config acquisition.yaml --method tikhonov
    wsprior deblur-dehaze big.zarr -o clean.zarr --config optics.yaml --method wiener --tile-size 512
    wsprior demo -o demo_output
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
from .settings import DeblurDehazeSettings, IdtSettings, TieSettings

_TASKS = {
    "deblur-dehaze": (api.deblur_dehaze, DeblurDehazeSettings, "YX"),
    "tie": (api.tie_phase, TieSettings, "YX"),
    "idt": (api.idt, IdtSettings, "ZYX"),
}


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"wsprior: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wsprior: interrupted; no complete output written (rerun the same command to "
              "resume a .zarr output)", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsprior", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"wsprior {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (function, model, _) in _TASKS.items():
        sub = commands.add_parser(name, help=function.__doc__.split("\n")[0],
                                  argument_default=argparse.SUPPRESS)
        sub.add_argument("input", help="input TIFF, zarr or OME-Zarr")
        sub.add_argument("-o", "--output", required=True,
                         help="output TIFF, or a .zarr store written chunk by chunk (rerun the "
                              "same command to resume an interrupted run)")
        sub.add_argument("--scheduler", metavar="ADDRESS",
                         help="run on this dask.distributed scheduler (e.g. tcp://host:8786)")
        sub.add_argument("--config", help="YAML file of parameters (same names as the API)")
        if name == "deblur-dehaze":
            sub.add_argument("--psf", help="measured PSF TIFF (instead of --na/--wavelength-um)")
        _add_model_flags(sub, model)
        sub.set_defaults(handler=_run_task, task=name)
    demo = commands.add_parser("demo", help="reconstruct the bundled sample data, write a figure")
    demo.add_argument("-o", "--output", default="demo_output", help="output folder")
    demo.add_argument("--device", default="auto", help="auto, cpu or cuda")
    demo.set_defaults(handler=_run_demo)
    _add_prior_commands(commands)
    return parser


def _add_model_flags(parser: argparse.ArgumentParser, model) -> None:
    for field_name, field in model.model_fields.items():
        flag = "--" + field_name.replace("_", "-")
        help_text = (field.description or "").replace("%", "%%")
        origin = typing.get_origin(field.annotation)
        args = typing.get_args(field.annotation)
        if field_name == "illumination_na":
            parser.add_argument(flag, dest=field_name, metavar="TABLE",
                                help="(L, 2) NA_x, NA_y table: .csv, .txt, .npy or .yaml")
        elif origin is list or list in [typing.get_origin(a) for a in args]:
            parser.add_argument(flag, dest=field_name, type=float, nargs="+", help=help_text)
        elif field.annotation is bool:
            parser.add_argument(flag, dest=field_name, action="store_true", help=help_text)
        else:
            parser.add_argument(flag, dest=field_name, type=_number_or_word, help=help_text)


def _number_or_word(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _run_task(args: argparse.Namespace) -> int:
    function, _, axes = _TASKS[args.task]
    params = io.read_parameters(args.config) if getattr(args, "config", None) else {}
    reserved = {"input", "output", "config", "handler", "task", "command", "psf", "scheduler"}
    params.update({k: v for k, v in vars(args).items() if k not in reserved})
    if isinstance(params.get("illumination_na"), (str, Path)):
        params["illumination_na"] = io.read_table(params["illumination_na"])
    if getattr(args, "psf", None):
        params["psf"] = io.read_image(args.psf)
    with _cluster(getattr(args, "scheduler", None)) as client:
        return _solve_and_write(function, args, params, axes, client)


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


def _solve_and_write(function, args, params: dict, axes: str, client) -> int:
    """TIFF → TIFF in memory; a zarr input or output keeps the data lazy (dask) and a zarr
    output is written chunk by chunk (``wsprior.storage``). With ``return_std`` the per-pixel
    standard deviation goes to ``OUTPUT_std`` beside the mean in ``OUTPUT``."""
    from . import scheduling, storage

    to_zarr = storage.is_zarr(args.output)
    lazy = to_zarr or storage.is_zarr(args.input)
    data = storage.open_array(args.input) if lazy else io.read_image(args.input)
    with tqdm(total=1, desc=args.task, unit="step", leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
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


def _named_outputs(output: Path, result) -> list[tuple[Path, object]]:
    """``[(OUTPUT, result)]``, or ``[(OUTPUT, mean), (OUTPUT_std, std)]`` for ``(mean, std)``."""
    if not isinstance(result, tuple):
        return [(output, result)]
    mean, std = result
    return [(output, mean), (output.with_name(f"{output.stem}_std{output.suffix}"), std)]


def _add_prior_commands(commands) -> None:
    train = commands.add_parser("train", help="train a diffusion prior (whitened-score, conventional or haze)")
    train.add_argument("-o", "--output", required=True, help="weights file (.safetensors)")
    train.add_argument("--config", help="YAML with TrainConfig fields (network, noise_family, ...)")
    train.add_argument("--kind", choices=["ws", "conventional", "haze"])
    train.add_argument("--data", nargs="+", help="'synthetic' and/or TIFF files or folders")
    for flag in ("steps", "batch-size", "patch-size", "seed", "synthetic-images", "synthetic-size"):
        train.add_argument(f"--{flag}", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--base-channels", type=int, help="UNet width")
    train.add_argument("--device", help="auto, cpu or cuda")
    train.add_argument("--init-from", help="start from this prior's weights ('default', "
                       "'conventional', 'haze' or a .safetensors path): fine-tuning")
    train.set_defaults(handler=_run_train)
    sample = commands.add_parser("sample", help="draw unconditional samples from a prior into a PNG grid")
    sample.add_argument("-o", "--output", required=True, help="PNG file")
    sample.add_argument("--prior", default="default", help="'default', 'conventional', 'haze' or a .safetensors path")
    sample.add_argument("--count", type=int, default=16)
    sample.add_argument("--size", type=int, default=64, help="image edge in pixels")
    sample.add_argument("--steps", type=int, default=50)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")
    sample.set_defaults(handler=_run_sample)


def _run_train(args: argparse.Namespace) -> int:
    from .prior.train import TrainConfig, train
    from .settings import validated

    values = io.read_parameters(args.config) if args.config else {}
    flags = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("output", "config", "handler", "command", "base_channels")}
    values.update(flags)
    if args.base_channels:
        values["network"] = {**values.get("network", {}), "base_channels": args.base_channels}
    config = validated(TrainConfig, **values)
    with tqdm(total=config.steps, desc=f"train {config.kind}", unit="step") as bar:
        def progress(step: int, total: int, loss: float) -> None:
            bar.n = step
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.refresh()
        path = train(config, args.output, command="wsprior " + " ".join(sys.argv[1:]), progress=progress)
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


def _run_sample(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._arrays import resolve_device
    from .prior.diffusion_prior import load_prior

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

    run_demo(Path(args.output), device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
