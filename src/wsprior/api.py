"""Public entry points (DESIGN.md §4): ``deblur_dehaze``, ``tie_phase``, ``idt``.

Each validates its parameters (``wsprior.settings``) and the data before any compute, then runs
the chosen solver over the leading (batch) axes. numpy in → numpy out, torch → torch, dask →
lazy dask (one block per group of whole images; with ``tile_size``, or planes too large for
memory, tiles with a halo: ``wsprior.tiling``).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from . import _validation as check
from ._arrays import is_dask, resolve_device, to_tensor
from .settings import DeblurDehazeSettings, IdtSettings, TieSettings, validated
from .solvers.classical.tiled import classical_tiles
from .solvers.samplers import is_diffusion

Progress = Callable[[int, int], None] | None
_DIFFUSION = ("ws", "dps", "score_ald", "ddnm")
_AVAILABLE = {"deblur_dehaze": (*_DIFFUSION, "joint", "wiener", "tikhonov", "rl"),
              "tie": (*_DIFFUSION, "tikhonov"), "idt": (*_DIFFUSION, "tikhonov")}


def deblur_dehaze(image, *, psf=None, na=None, wavelength_um=None, pixel_size_um=None,
                  method="ws", prior="default", progress: Progress = None, **options):
    """Remove blur and out-of-focus haze from widefield images ``(..., Y, X)`` → ``(..., Y, X)``.

    The PSF is the measured ``psf`` array or an Airy PSF from ``na``, ``wavelength_um`` and
    ``pixel_size_um``. ``method``: ``"wiener"``/``"tikhonov"`` (whitened Tikhonov, haze as
    coloured noise), ``"rl"`` (Richardson–Lucy with a haze background), the diffusion samplers
    ``"ws"`` (default), ``"dps"``, ``"score_ald"``, ``"ddnm"`` with ``prior``, or ``"joint"``
    (signal prior + the shipped haze prior). Further options: ``haze_sigma_um``, ``haze_std``,
    ``background``, ``iterations``, ``regularization`` and the solver keywords of
    ``wsprior.settings.SolverSettings`` (``steps``, ``guidance``, ``n_samples``,
    ``return_std``, ``seed``, ``device``, ``tile_size``). With ``return_std=True`` the result
    is ``(mean, std)``.
    """
    settings = validated(DeblurDehazeSettings, na=na, wavelength_um=wavelength_um,
                         pixel_size_um=pixel_size_um, method=method, **_prior_option(prior),
                         **options)
    _require_psf_source(psf, settings)
    check.image_array("image", image, 2, "(..., Y, X)")
    _require_available("deblur_dehaze", settings.method)
    from .physics.blur_haze import make_psf

    kernel = make_psf(psf=psf, na=settings.na, wavelength_um=settings.wavelength_um,
                      pixel_size_um=settings.pixel_size_um)
    common = dict(pixel_size_um=settings.pixel_size_um, haze_sigma_um=settings.haze_sigma_um,
                  haze_std=settings.haze_std, background=settings.background)
    if is_diffusion(settings.method):
        from .solvers.problems import deblur_problem

        from . import tiling
        from .solvers.sampler_tiles import DeblurSamplerTiles

        solve = _sampler(settings, prior,
                         lambda image: deblur_problem(image[0], kernel.to(image), **common))
        tiles = DeblurSamplerTiles(kernel, settings, _prior_source(settings, prior))
        if not settings.return_std and tiling.wanted(image, tiles, core_in=settings.image_axes,
                                                     settings=settings):
            return tiling.apply(image, tiles, core_in=settings.image_axes, settings=settings,
                                progress=progress)
        return _run_diffusion(image, solve, core_out=lambda s: s, settings=settings,
                              progress=progress, name="image", tiled_here=True)

    tiles = classical_tiles("deblur_dehaze", settings, kernel)

    def solve(batch: torch.Tensor, report: Progress) -> torch.Tensor:
        return tiles.whole_plane(batch[0], progress=report)[None]

    return _run(image, solve, core_out=lambda s: s, settings=settings,
                progress=progress, name="image", tiles=tiles)


def tie_phase(stack, *, z_um, wavelength_um, pixel_size_um, n_medium=1.0, method="ws",
              prior="default", progress: Progress = None, **options):
    """Phase (rad) from a defocus stack ``(..., Z, Y, X)`` at depths ``z_um`` → ``(..., Y, X)``.

    ``method="tikhonov"``: FFT inverse Laplacian of the transport-of-intensity equation with
    Tikhonov weight ``regularization`` (``"auto"``: the least expected error on simulated
    fields like the measured one). ``"ws"`` (default),
    ``"dps"``, ``"score_ald"``, ``"ddnm"``: diffusion posterior sampling with ``prior`` around
    the Tikhonov solution. The phase is defined up to a constant: each result has zero mean.
    """
    settings = validated(TieSettings, z_um=_as_list(z_um), wavelength_um=wavelength_um,
                         pixel_size_um=pixel_size_um, n_medium=n_medium, method=method,
                         **_prior_option(prior), **options)
    check.image_array("stack", stack, 3, "(..., Z, Y, X)")
    check.length_matches("z_um", settings.z_um, stack.shape[-3], "plane of stack (axis -3)")
    _require_available("tie", settings.method)
    from .solvers.classical.tie import tie_tikhonov

    def solve(batch: torch.Tensor, report: Progress) -> torch.Tensor:
        return tie_tikhonov(batch, settings.z_um, wavelength_um=settings.wavelength_um,
                            pixel_size_um=settings.pixel_size_um, n_medium=settings.n_medium,
                            regularization=settings.regularization)

    if is_diffusion(settings.method):
        from .solvers.problems import tie_problem

        optics = dict(wavelength_um=settings.wavelength_um, pixel_size_um=settings.pixel_size_um,
                      n_medium=settings.n_medium)
        sampler = _sampler(settings, prior, lambda batch: tie_problem(
            batch[0], settings.z_um, classical=solve(batch, None)[0], **optics))

        def centred(batch: torch.Tensor, report: Progress) -> torch.Tensor:
            out = sampler(batch, report)
            return out - out.mean(dim=(-2, -1), keepdim=True)  # phase up to a constant

        return _run_diffusion(stack, centred, core_out=lambda s: s[1:],
                              settings=settings, progress=progress, name="stack")

    return _run(stack, solve, core_out=lambda s: s[1:], settings=settings,
                progress=progress, name="stack", tiles=classical_tiles("tie", settings))


def idt(images, *, illumination_na, wavelength_um, na, pixel_size_um, n_medium, z_um,
        slice_thickness_um=None, method="ws", components="ri", prior="default",
        progress: Progress = None, **options):
    """3D refractive index (or permittivity) from brightfield images under oblique illumination.

    ``images`` ``(..., L, Y, X)``, one per row of ``illumination_na`` ``(L, 2)`` = (NA_x, NA_y);
    slices at ``z_um`` (0 = focal plane, positive downstream) of thickness ``slice_thickness_um``
    (default: the spacing of ``z_um``). Returns ``(..., M, Y, X)``: Δn = n − n_medium
    (``components="ri"``) or complex Δε = n² − n_medium² (``"permittivity"``). ``method``:
    ``"tikhonov"`` (joint per-frequency solve over all slices) or a diffusion sampler (``"ws"``,
    ``"dps"``, ``"score_ald"``, ``"ddnm"``) with ``prior`` on every slice's Re Δε, coupled
    through the multi-slice data term.
    """
    settings = validated(IdtSettings, illumination_na=_as_pairs(illumination_na),
                         wavelength_um=wavelength_um, na=na, pixel_size_um=pixel_size_um,
                         n_medium=n_medium, z_um=_as_list(z_um),
                         slice_thickness_um=_as_list_or_scalar(slice_thickness_um),
                         method=method, components=components, **_prior_option(prior),
                         **options)
    check.image_array("images", images, 3, "(..., L, Y, X)")
    check.length_matches("illumination_na", settings.illumination_na, images.shape[-3],
                         "image of images (axis -3)")
    _require_available("idt", settings.method)
    from .physics.idt import permittivity_to_ri
    from .solvers.classical.idt import idt_tikhonov

    def solve(batch: torch.Tensor, report: Progress) -> torch.Tensor:
        eps = idt_tikhonov(batch, illumination_na=np.asarray(settings.illumination_na),
                           wavelength_um=settings.wavelength_um, na=settings.na,
                           pixel_size_um=settings.pixel_size_um, n_medium=settings.n_medium,
                           z_um=settings.z_um, slice_thickness_um=settings.slice_thickness_um,
                           regularization=settings.regularization)
        if settings.components == "ri":
            return permittivity_to_ri(eps, settings.n_medium)
        return eps

    n_slices = len(settings.z_um)
    out_dtype = np.float32 if settings.components == "ri" else np.complex64
    if is_diffusion(settings.method):
        from .solvers.problems import idt_problem

        optics = dict(illumination_na=np.asarray(settings.illumination_na),
                      wavelength_um=settings.wavelength_um, na=settings.na,
                      pixel_size_um=settings.pixel_size_um, n_medium=settings.n_medium,
                      z_um=settings.z_um, slice_thickness_um=settings.slice_thickness_um,
                      components=settings.components)
        solve = _sampler(settings, prior, lambda batch: idt_problem(batch[0], **optics))
        return _run_diffusion(images, solve, core_out=lambda s: (n_slices,) + s[1:],
                              settings=settings, progress=progress, name="images",
                              out_dtype=out_dtype)
    return _run(images, solve, core_out=lambda s: (n_slices,) + s[1:],
                settings=settings, progress=progress, name="images", out_dtype=out_dtype,
                tiles=classical_tiles("idt", settings))


def _run(array, solve, *, core_out, settings, progress: Progress, name: str,
         out_dtype=np.float32, tiles=None):
    """Apply ``solve`` (torch batch (N, *core) → (N, *core_out)) image by image over the leading
    axes, reporting ``progress(done, total)``; dispatch on the array type. With ``tile_size``, or
    planes too large for memory, the tile operator ``tiles`` runs instead (``wsprior.tiling``)."""
    from . import tiling

    core_in = settings.image_axes
    if tiling.wanted(array, tiles, core_in=core_in, settings=settings):
        return tiling.apply(array, tiles, core_in=core_in, settings=settings, progress=progress)
    device = resolve_device(settings.device)
    if is_dask(array):
        return _run_dask(array, solve, core_in, core_out, device, name, out_dtype)
    tensor = to_tensor(array, device)
    lead, core = tensor.shape[:-core_in], tuple(tensor.shape[-core_in:])
    batch = tensor.reshape(-1, *core)
    results = []
    for index in range(batch.shape[0]):
        results.append(solve(batch[index:index + 1], _nested(progress, index, batch.shape[0])))
        if progress is not None:
            progress(index + 1, batch.shape[0])
    out = torch.cat(results).reshape(*lead, *core_out(core))
    if isinstance(array, torch.Tensor):
        return out
    return out.cpu().numpy().astype(out_dtype, copy=False)


def _run_dask(array, solve, core_in, core_out, device, name, out_dtype):
    import dask.array as da

    lead = array.ndim - core_in
    array = array.rechunk({axis: -1 for axis in range(lead, array.ndim)})
    out_core = core_out(tuple(array.shape[lead:]))

    def block(chunk: np.ndarray) -> np.ndarray:
        check.finite_chunk(name, chunk)
        tensor = to_tensor(chunk, device)
        batch = tensor.reshape(-1, *tensor.shape[lead:])
        result = torch.cat([solve(batch[i:i + 1], None) for i in range(batch.shape[0])])
        return result.reshape(*chunk.shape[:lead], *out_core).cpu().numpy().astype(out_dtype)

    chunks = array.chunks[:lead] + tuple((n,) for n in out_core)
    extra = len(out_core) - core_in
    kwargs = {}
    if extra < 0:
        kwargs["drop_axis"] = list(range(lead, lead - extra))
    return da.map_blocks(block, array, chunks=chunks, dtype=out_dtype,
                         meta=np.empty((0,) * (lead + len(out_core)), dtype=out_dtype), **kwargs)


def _prior_option(prior) -> dict:
    """The ``prior`` keyword as a setting: names and paths are validated, a loaded prior object
    passes through to the sampler untouched."""
    return {"prior": str(prior)} if isinstance(prior, (str, Path)) else {}


def _prior_source(settings, prior):
    """The validated name or path of the prior, or the loaded prior object passed in."""
    return settings.prior if isinstance(prior, (str, Path)) else prior


def _sampler(settings, prior, build_problem):
    """``solve(batch, report)`` for a diffusion method: the posterior mean of each image (and
    its std, stacked on a new axis 1, with ``return_std``)."""
    from .solvers import samplers

    prior_source = _prior_source(settings, prior)
    device = resolve_device(settings.device)
    samplers.prior_for(prior_source, device)  # a missing or broken checkpoint fails here, early
    if settings.method == "joint":
        samplers.prior_for("haze", device)

    def solve(batch: torch.Tensor, report: Progress) -> torch.Tensor:
        model = samplers.prior_for(prior_source, batch.device)
        mean, std = samplers.sample(settings.method, build_problem(batch), model, settings, report)
        if settings.return_std:
            std = torch.zeros_like(mean) if std is None else std
            return torch.stack((mean, std.to(mean.dtype)))[None]
        return mean[None]

    return solve


def _run_diffusion(array, solve, *, core_out, settings, progress, name,
                   out_dtype=np.float32, tiled_here=False):
    """``_run`` for the samplers on whole planes, and ``(mean, std)`` when ``return_std``.
    ``tile_size`` is honoured by the deblur samplers without ``return_std`` (``tiled_here``)."""
    if settings.tile_size is not None and (settings.return_std or not tiled_here):
        reason = ("return_std=True needs whole planes" if tiled_here else
                  "this task's samplers solve whole planes in this version")
        warnings.warn(f"tile_size is ignored by method={settings.method!r}: {reason}",
                      stacklevel=3)
    if not settings.return_std:
        return _run(array, solve, core_out=core_out, settings=settings,
                    progress=progress, name=name, out_dtype=out_dtype)
    both = _run(array, solve, core_out=lambda s: (2, *core_out(s)),
                settings=settings, progress=progress, name=name, out_dtype=out_dtype)
    axis = both.ndim - len(core_out(tuple(array.shape[-settings.image_axes:]))) - 1
    index = [slice(None)] * both.ndim
    mean, std = (both[tuple(index[:axis] + [k])] for k in (0, 1))
    return mean, _real(std)


def _real(array):
    """The real part of a complex array (the std of complex Δε samples is real)."""
    complex_ = array.is_complex() if isinstance(array, torch.Tensor) else np.iscomplexobj(array)
    return array.real if complex_ else array


def _nested(progress: Progress, index: int, total: int) -> Progress:
    """Map a solver's inner progress (k of n) onto the whole job (image ``index`` of ``total``)."""
    if progress is None:
        return None

    def report(done: int, steps: int) -> None:
        progress(index * steps + done, total * steps)

    return report


def _require_psf_source(psf, settings: DeblurDehazeSettings) -> None:
    if settings.pixel_size_um is None:
        raise ValueError("pixel_size_um is required (µm per pixel in the sample plane): the PSF "
                         "and the haze width haze_sigma_um are physical lengths")
    if psf is not None:
        check.image_array("psf", psf, 2, "(Py, Px)")
        if np.asarray(psf).ndim != 2:
            raise ValueError(f"psf must be a 2D array (Py, Px); got shape {np.shape(psf)}")
        return
    missing = [n for n in ("na", "wavelength_um") if getattr(settings, n) is None]
    if missing:
        raise ValueError(f"give either psf (a 2D array) or both na and wavelength_um; "
                         f"missing: {', '.join(missing)}")


def available_methods(task: str) -> tuple[str, ...]:
    """Methods this version can run for ``task`` ("deblur_dehaze", "tie" or "idt")."""
    if task not in _AVAILABLE:
        raise ValueError(f"task must be one of {', '.join(_AVAILABLE)}; got {task!r}")
    return _AVAILABLE[task]


def _require_available(task: str, method: str) -> None:
    if method not in _AVAILABLE[task]:
        raise ValueError(f"method={method!r} is not available for {task}; available methods: "
                         f"{', '.join(_AVAILABLE[task])}")


def _as_list(values):
    if values is None:
        return None
    return [float(v) for v in np.atleast_1d(np.asarray(values, dtype=float))]


def _as_list_or_scalar(values):
    if values is None or np.ndim(values) == 0:
        return values if values is None else float(values)
    return _as_list(values)


def _as_pairs(values):
    pairs = np.asarray(values, dtype=float)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"illumination_na must be an (L, 2) array of (NA_x, NA_y); "
                         f"got shape {pairs.shape}")
    return [tuple(p) for p in pairs.tolist()]
