"""``wsprior`` command line: one subcommand per API entry point, flags generated from the
parameter models, so the CLI, ``--config params.yaml`` and the API always share names.

    wsprior tie stack.tif -o phase.tif --z-um -2 0 2 --wavelength-um 0.53 --pixel-size-um 0.3
    wsprior idt leds.tif -o dn.tif --config acquisition.yaml --method tikhonov
    wsprior demo -o demo_output
"""
from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

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
        print("wsprior: interrupted; no output written", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsprior", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"wsprior {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (function, model, _) in _TASKS.items():
        sub = commands.add_parser(name, help=function.__doc__.split("\n")[0],
                                  argument_default=argparse.SUPPRESS)
        sub.add_argument("input", help="input TIFF")
        sub.add_argument("-o", "--output", required=True, help="output TIFF")
        sub.add_argument("--config", help="YAML file of parameters (same names as the API)")
        if name == "deblur-dehaze":
            sub.add_argument("--psf", help="measured PSF TIFF (instead of --na/--wavelength-um)")
        _add_model_flags(sub, model)
        sub.set_defaults(handler=_run_task, task=name)
    demo = commands.add_parser("demo", help="reconstruct the bundled sample data, write a figure")
    demo.add_argument("-o", "--output", default="demo_output", help="output folder")
    demo.add_argument("--device", default="auto", help="auto, cpu or cuda")
    demo.set_defaults(handler=_run_demo)
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
    reserved = {"input", "output", "config", "handler", "task", "command", "psf"}
    params.update({k: v for k, v in vars(args).items() if k not in reserved})
    if isinstance(params.get("illumination_na"), (str, Path)):
        params["illumination_na"] = io.read_table(params["illumination_na"])
    if getattr(args, "psf", None):
        params["psf"] = io.read_image(args.psf)
    data = io.read_image(args.input)
    with tqdm(total=1, desc=args.task, unit="step", leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
        result = function(data, progress=progress, **params)
    io.write_image(args.output, result, pixel_size_um=params.get("pixel_size_um"),
                   axes=axes[-result.ndim:] if result.ndim <= len(axes) else None)
    print(f"wrote {args.output} {result.shape} {result.dtype}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.output), device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
