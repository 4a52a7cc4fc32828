"""Prior-training dock widget: the options of ``wsprior train`` → ``wsprior.prior.train.train``
in a worker thread → a ``.safetensors`` prior (+ ``.json``), then optionally a layer of
unconditional samples drawn from it. A napari Image layer can add training images."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox
from napari.layers import Image

from .. import io
from .._arrays import resolve_device
from .._training_files import saved_state, trim_loss_log
from ..data import training_set
from ..prior.diffusion_prior import DEFAULT_PRIORS, load_prior
from ..prior.train import TrainConfig, fitted_to_starting_prior, train, training_state_files
from ._common import Cancelled, RunnerWidget
from ._fields import (Field, bool_field, choice_field, header, int_field, path_field,
                      scientific_field, seed_field)
from ._layers import has_length_units, image_layers, layer_data, layer_kwargs
from ._layout import note
from ._messages import check_settings
from ._preflight import check_device

SAMPLE_GAP_PX = 2
"""Gap between the samples in the mosaic layer (px)."""

DEFAULTS = TrainConfig()
KINDS = [("ws — whitened score (structured noise)", "ws"),
         ("conventional — white noise (K = I)", "conventional"),
         ("haze — haze fields (joint sampler)", "haze")]


@dataclass
class Trained:
    """What a run produced: the written prior and, unless cancelled, samples drawn from it."""
    path: Path
    samples: np.ndarray | None = None
    data_range: tuple[float, float] = (-1.0, 1.0)
    sampling_cancelled: bool = False


class TrainPriorWidget(RunnerWidget):
    """Trains a whitened-score, conventional or haze prior with the options of ``wsprior train``."""

    title = "Train diffusion prior"
    discard_result_on_cancel = False  # once training has ended the prior is on disk: report it

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._output: Path | None = None
        self._sampling_cancelled = False

        form = self.form
        form.append(header("Prior"))
        self._add_all(self._prior_fields())
        form.append(header("Training data"))
        self._add(bool_field("synthetic", "synthetic phantoms", True,
                             tooltip="cell phantoms (fluorescence, phase, RI); "
                                     "haze fields for kind 'haze'"))
        self._add_all(self._synthetic_fields())
        self._add(bool_field("real", "real micrographs", False,
                             tooltip="the fluorescence and EM images (and a few natural "
                                     "scenes) the shipped priors train on; they come with a "
                                     "source checkout of napari-wsprior (benchmarks/data/training)"))
        self.layer = ComboBox(name="layer", label="image layer (optional)", nullable=True,
                              value=None, choices=lambda _w: image_layers(self.viewer),
                              tooltip="random patches of this layer's 2D planes are added to "
                                      "the training data (each plane scaled to [-1, 1])")
        form.append(self.layer)
        self._add(path_field("tiff_folder", "TIFF folder (optional)", mode="d",
                             tooltip="every .tif/.tiff in this folder is added to the "
                                     "training data"))
        form.append(header("Training"))
        self._add_all(self._training_fields())
        form.append(header("Output"))
        self._add_all(self._output_fields())
        self.state_info = note("state_info")
        self.state_info.label = ""
        form.append(self.state_info)
        self._add_all(self._sample_fields())
        form.append(header("Compute"))
        self._add(choice_field("device", "device", ["auto", "cpu", "cuda"], DEFAULTS.device,
                               tooltip="auto = cuda if available, else cpu"))
        self._add_run_controls()

        self.fields["synthetic"].widget.changed.connect(self._update_enabled)
        self.fields["n_samples"].widget.changed.connect(self._update_enabled)
        self.fields["init_from"].widget.changed.connect(self._update_enabled)
        for name in ("output", "resume"):
            self.fields[name].widget.changed.connect(self._show_saved_state)
        self._update_enabled()
        self._show_saved_state()
        self._follow_layers()

    # -- fields -------------------------------------------------------------------------------
    def _add_all(self, fields: list[Field]) -> None:
        for field in fields:
            self._add(field)

    @staticmethod
    def _prior_fields() -> list[Field]:
        return [
            choice_field("kind", "kind", KINDS, DEFAULTS.kind,
                         tooltip="ws: learns structured (GRF) noise — the default prior; "
                                 "conventional: K = I on the same data; haze: a prior of the "
                                 "haze itself"),
            int_field("base_channels", "UNet width (channels)",
                      DEFAULTS.network.base_channels, minimum=4, maximum=256,
                      tooltip="UNet base channels (wsprior train --base-channels); "
                              "32 ≈ 2 M parameters"),
            path_field("init_from", "start from prior (optional)", filter="*.safetensors",
                       tooltip="fine-tune: start from this prior's weights (a .safetensors "
                               f"file, or {', '.join(map(repr, DEFAULT_PRIORS))} for a "
                               "shipped one); "
                               "its architecture replaces the UNet width"),
        ]

    @staticmethod
    def _synthetic_fields() -> list[Field]:
        return [
            int_field("synthetic_images", "phantoms", DEFAULTS.synthetic_images,
                      minimum=1, maximum=100_000, tooltip="number of synthetic phantoms"),
            int_field("synthetic_size", "phantom size (px)", DEFAULTS.synthetic_size,
                      minimum=16, maximum=4096, tooltip="edge of each synthetic phantom (square)"),
        ]

    @staticmethod
    def _training_fields() -> list[Field]:
        return [
            int_field("steps", "steps", DEFAULTS.steps, minimum=1, maximum=10_000_000,
                      tooltip="optimiser steps (total, including resumed ones)"),
            int_field("batch_size", "batch size", DEFAULTS.batch_size, minimum=1,
                      maximum=4096, tooltip="patches per step"),
            int_field("patch_size", "patch size (px)", DEFAULTS.patch_size, minimum=8,
                      maximum=4096, tooltip="edge of the random training patches; a multiple "
                                            "of the network's downsampling (8)"),
            scientific_field("learning_rate", "learning rate", DEFAULTS.learning_rate,
                             tooltip="AdamW learning rate"),
            seed_field(DEFAULTS.seed, tooltip="random seed of the phantoms, the patches, the "
                                              "noise draws and the samples: the same seed "
                                              "repeats a run"),
        ]

    @staticmethod
    def _output_fields() -> list[Field]:
        return [
            path_field("output", "output (.safetensors)", mode="w", filter="*.safetensors",
                       tooltip="prior weights to write; its metadata goes to the .json beside it"),
            bool_field("resume", "resume from saved training state", True,
                       tooltip="continue from OUTPUT.train.safetensors (saved every "
                               f"{DEFAULTS.checkpoint_every} steps) when it exists; untick to "
                               "discard it and start over"),
        ]

    @staticmethod
    def _sample_fields() -> list[Field]:
        return [
            int_field("n_samples", "samples (0 = none)", 4, maximum=64,
                      tooltip="unconditional samples (patch size²) drawn from the new "
                              "prior, added as a layer"),
            int_field("sample_steps", "sampling steps", 50, minimum=1, maximum=1000,
                      tooltip="network evaluations per sample"),
        ]

    def _update_enabled(self, *_args) -> None:
        synthetic = self.fields["synthetic"].get()
        for name in ("synthetic_images", "synthetic_size"):
            self.fields[name].widget.enabled = synthetic
        self.fields["sample_steps"].widget.enabled = self.fields["n_samples"].get() > 0
        self.fields["base_channels"].widget.enabled = self.fields["init_from"].get() is None

    def _show_saved_state(self, *_args) -> None:
        text = self.fields["output"].get()
        state = saved_state(Path(text)) if text else None
        if not text:
            self.state_info.value = ""
        elif state is None:
            self.state_info.value = "no saved training state: starts from scratch"
        else:
            action = "resumes" if self.fields["resume"].get() else "discards"
            self.state_info.value = (f"{action} saved state: step {state.steps}, {state.kind}, "
                                     f"{state.network.base_channels} channels")

    # -- parameters → library -----------------------------------------------------------------
    def training_config(self, params: dict) -> TrainConfig:
        """The ``TrainConfig`` of the current parameters (ValueError naming a bad one)."""
        data = ["synthetic"] if params["synthetic"] else []
        if params["real"]:
            data.append("real")
        if params["tiff_folder"]:
            data.append(params["tiff_folder"])
        start = params["init_from"]
        network = {} if start else {"network": {"base_channels": params["base_channels"]}}
        values = dict(kind=params["kind"], init_from=start, data=data, **network,
                      **{name: params[name] for name in (
                          "synthetic_images", "synthetic_size", "patch_size", "batch_size",
                          "steps", "learning_rate", "seed", "device")})
        check_settings(TrainConfig, values, self.field_labels())
        config = fitted_to_starting_prior(TrainConfig(**values))
        factor = config.network.downsampling
        if config.patch_size % factor:
            raise ValueError(f"patch size ({config.patch_size} px) must be a multiple of "
                             f"{factor}, the network's downsampling factor")
        return config

    def _prepare_run(self):
        params = self.parameters()
        config = self.training_config(params)
        output = writable_output(params["output"], self.fields["output"].label)
        layer = self.layer.value
        check_sources(config, layer)
        if params["resume"]:
            check_resumable(output, config)
        # a missing GPU is reported now, not after preparing the data
        check_device(config.device, self.fields["device"].label)
        self._output = output
        work = training_work(config, params, output, layer)
        return work, lambda result: self._finish(result, config, layer), \
            f"training a {config.kind} prior → {output.name} (preparing data)…"

    def _finish(self, result: Trained, config: TrainConfig, source: Image | None) -> list:
        self._sampling_cancelled = result.sampling_cancelled
        self._announce(f"wrote {result.path} and {result.path.with_suffix('.json').name}")
        if result.samples is None:
            return []
        low, _ = result.data_range
        layer = self.viewer.add_image(
            mosaic(result.samples, fill=low), name=f"prior samples ({config.kind})",
            colormap="gray", contrast_limits=result.data_range,
            metadata={"wsprior_prior": str(result.path), "wsprior_samples": len(result.samples),
                      "wsprior_sample_size_px": config.patch_size},
            **sample_geometry(self.viewer, source))
        return [layer]

    def _done_note(self, added: list) -> str:
        note = f"wrote {self._output.name}"
        if added:
            note += f"; added {', '.join(repr(a.name) for a in added)}"
        return note + ("; sampling cancelled" if self._sampling_cancelled else "")

    def _not_done_note(self) -> str:
        state = saved_state(self._output) if self._output else None
        kept = f" (training state at step {state.steps} kept for resume)" if state else ""
        return f"no prior written{kept}"

    def _on_finished(self) -> None:
        super()._on_finished()
        self._show_saved_state()


# ------------------------------------------------------------------------------------- work
def training_work(config: TrainConfig, params: dict, output: Path, layer: Image | None):
    """``work(progress)`` for the worker thread: train, then draw samples from the new prior."""
    n_samples, sample_steps = params["n_samples"], params["sample_steps"]
    total = config.steps + (sample_steps if n_samples else 0)
    command = cli_equivalent(config, output, layer)
    resume = params["resume"]

    def work(progress):
        if not resume:
            for file in training_state_files(output):
                file.unlink(missing_ok=True)
        extra = {f"napari layer {layer.name!r}": layer_data(layer)} if layer is not None else None
        try:
            path = train(config, output, command=command, extra_images=extra,
                         progress=lambda step, steps, loss: progress(
                             step, total, f"step {step}/{steps}, loss {loss:.3g}"))
        except Cancelled:
            trim_loss_log(output, config)
            raise
        if not n_samples:
            return Trained(path)
        prior = load_prior(path, device=resolve_device(config.device))
        try:
            samples = prior.sample(
                (n_samples, config.patch_size, config.patch_size), steps=sample_steps,
                seed=config.seed, progress=lambda i, n: progress(
                    config.steps + i, total, f"sampling {i}/{n}"))
        except Cancelled:
            return Trained(path, sampling_cancelled=True)
        return Trained(path, samples.float().cpu().numpy(), prior.data_range)

    return work


# ------------------------------------------------------------------------------ sample layer
def mosaic(samples: np.ndarray, *, fill: float) -> np.ndarray:
    """``(n, P, P)`` samples side by side in one 2D image (at most 8 per row, ``fill`` between
    them), like ``wsprior sample``'s grid."""
    count, height, width = samples.shape
    columns = min(count, 8)
    rows = -(-count // columns)
    gap = SAMPLE_GAP_PX
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), fill,
                   dtype=np.float32)
    for index, sample in enumerate(samples):
        row, column = divmod(index, columns)
        grid[row * (height + gap):row * (height + gap) + height,
             column * (width + gap):column * (width + gap) + width] = sample
    return grid


def sample_geometry(viewer, source: Image | None) -> dict:
    """Scale and units of the samples' pixels: the training layer's, else those of the viewer's
    newest image with length units (synthetic phantoms have no pixel size of their own: they
    were drawn at 0.08–0.4 µm), so the layer lines up with what is open without a units
    warning; else napari's default (pixels)."""
    if source is None or not has_length_units(source):
        source = next((layer for layer in reversed(viewer.layers)
                       if isinstance(layer, Image) and has_length_units(layer)), source)
    geometry = {"axis_labels": ("y", "x")}
    if source is not None:
        geometry["scale"] = tuple(float(v) for v in source.scale[-2:])
        if has_length_units(source):
            geometry["units"] = tuple(str(u) for u in source.units[-2:])
    return layer_kwargs(**geometry)


# ----------------------------------------------------------------------------------- checks
def writable_output(text: str | None, label: str = "output") -> Path:
    """The output path, checked before hours of training rather than at the end."""
    if not text:
        raise ValueError(f"{label}: choose the .safetensors file to write")
    path = Path(text)
    if path.suffix != ".safetensors":
        raise ValueError(f"{label} must end in .safetensors; got {path.name!r}")
    try:
        return io.check_writable(path)
    except ValueError as error:
        raise ValueError(f"{label}: {error}") from None


def check_sources(config: TrainConfig, layer: Image | None) -> None:
    """At least one training source, each with images no smaller than a patch."""
    if not config.data and layer is None:
        raise ValueError("training data: tick 'synthetic phantoms' or 'real micrographs', "
                         "choose an image layer or a TIFF folder")
    patch = config.patch_size
    if "synthetic" in config.data and config.synthetic_size < patch:
        raise ValueError(f"phantom size ({config.synthetic_size} px) must be at least "
                         f"the patch size ({patch} px)")
    if "real" in config.data:
        training_set.check_real_images()
    for source in config.data:
        if source not in ("synthetic", "real"):
            check_tiff_folder(Path(source))
    if layer is not None:
        if layer.rgb:
            raise ValueError(f"image layer {layer.name!r} is RGB; split it into channels first")
        ny, nx = (layer.data[0] if layer.multiscale else layer.data).shape[-2:]
        if min(ny, nx) < patch:
            raise ValueError(f"image layer {layer.name!r} ({ny}×{nx} px) is smaller than the "
                             f"patch size ({patch} px)")


def check_tiff_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ValueError(f"TIFF folder: {folder} is not a folder")
    if not any(p.suffix.lower() in (".tif", ".tiff") for p in folder.iterdir()):
        raise ValueError(f"TIFF folder: no .tif/.tiff files in {folder}")


def check_resumable(output: Path, config: TrainConfig) -> None:
    """A saved state of another kind or network would fail to load (or silently mix kinds)."""
    state = saved_state(output)
    if state is not None and (state.kind, state.network) != (config.kind, config.network):
        raise ValueError(
            f"the saved training state of {output.name} is a {state.kind} prior with "
            f"{state.network.base_channels} channels, not {config.kind} with "
            f"{config.network.base_channels}; untick 'resume' to start over or choose another "
            f"output")


def cli_equivalent(config: TrainConfig, output: Path, layer: Image | None) -> str:
    """The ``wsprior train`` command of this run (recorded in the checkpoint metadata)."""
    args = ["wsprior", "train", "-o", str(output), "--kind", config.kind]
    if config.data:
        args += ["--data", *config.data]
    args += ["--steps", config.steps, "--batch-size", config.batch_size,
             "--patch-size", config.patch_size, "--learning-rate", f"{config.learning_rate:g}",
             "--seed", config.seed, "--synthetic-images", config.synthetic_images,
             "--synthetic-size", config.synthetic_size,
             "--device", config.device]
    args += (["--init-from", config.init_from] if config.init_from
             else ["--base-channels", config.network.base_channels])
    command = "napari widget, as " + shlex.join(map(str, args))
    return command + (f" + napari layer {layer.name!r}" if layer is not None else "")
