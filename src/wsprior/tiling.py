"""Tiled, out-of-core execution of per-plane solvers with dask (DESIGN.md §1).

A stack ``(..., [C,] Y, X)`` is cut into *blocks* (dask chunks: a few planes × at most
``BLOCK_EDGE`` pixels a side; one task, one zarr output chunk) and each block into *tiles*
(``tile`` pixels a side: the solver's unit of work, batched on the device). Every tile is solved
on a window that extends its core by the operator's *halo* (the reach of its kernel, measured by
``wsprior.halo``) plus a *blend* margin, so the solver sees the neighbourhood it sees in the whole
plane. Neighbouring tiles are cross-faded over ``2·blend`` pixels with raised-cosine weights that
sum to one (no seams, also for stochastic solvers whose tiles disagree). Beyond the image border
a window is continued the way the untiled solver pads (``operator.boundary``).

Everything data-dependent (regularisation weight, noise σ, haze level, offsets) is estimated once
per plane (``operator.estimate``) and passed to every tile, so all tiles apply the filter of the
whole-plane solve. The estimate reads the whole plane up to ``ESTIMATE_EDGE`` pixels a side and
the plane's centre ``ESTIMATE_EDGE``² crop beyond (smaller if even that would not fit the memory
budget): then the result differs from an untiled solve by the parameters' spread over the plane;
pass fixed parameters to avoid it. The halo is measured at those numbers; if
a window would not be smaller than the plane, or the kernel is non-local (TIE's inverse Laplacian
and IDT's phase transfer usually are), the plane is solved whole — exact by construction.

The graph (lazy; dask in → dask out, no compute until asked):

1. per leading chunk, the estimate (planes that span several blocks only; otherwise the block
   estimates on its own plane);
2. per block, one task that gets the block and its neighbour chunks (``Neighbourhood``), joins
   the ``halo + blend`` pixels of each neighbour its windows need (no padding at the image
   border: the block pads with ``operator.boundary`` itself) and solves its tiles in batches
   (``wsprior.batching``), weighted and summed into the block plus a ``blend`` margin on each
   side;
3. fold: per block, one task that adds the margins its neighbours computed for it.

A solver plugs in by implementing ``TileOperator`` (the classical solvers:
``solvers/classical/tiled.py``; the diffusion samplers: ``solvers/sampler_tiles.py``).
"""
from __future__ import annotations

import functools
import math
import threading
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from . import _validation as check
from . import memory, scheduling
from ._arrays import is_dask, resolve_device
from .batching import BatchSize, run_batches

#: Largest block edge (pixels): dask task and zarr chunk granularity; bounds the memory of a task.
BLOCK_EDGE = 1024
#: On a GPU a block holds up to this many planes (leading-axis chunks), so that one batch, one
#: forward pass, gathers the tiles of several planes when a plane has fewer tiles than fit.
GPU_BLOCK_PLANES = 16
#: Blend margin = tile // BLEND_DIVISOR. Deterministic tiles agree in their overlaps to the halo
#: tolerance; a cross-fade over 2·blend = tile/8 pixels hides that residue at a small cost in
#: window area. Stochastic solvers should blend wider (over their correlation length).
BLEND_DIVISOR = 16
_TILE_EDGES = (64, 128, 256, 512, 1024)
_PLANNING_HALO_FRACTION = 4  # memory planning assumes a halo of tile / 4 (measured later)
#: Largest edge (pixels) of the part of a plane its parameters are estimated on (the centre),
#: so that the estimate, a job's largest allocation, is no larger than a block's work and peak
#: memory does not grow with the plane (docs/benchmarks.md, scaling section). On two simulated
#: 2048² widefield planes, Wiener with the numbers of the centre 1024² (or 512²) crop came within
#: 0.03 dB of the whole plane's (benchmarks/scaling.py, table in docs/benchmarks.md).
ESTIMATE_EDGE = 1024
#: However little memory there is, the estimate reads at least this edge (pixels) of a plane:
#: the spectra of a smaller crop are too coarse to fit (a 64² crop of a 512² widefield plane
#: gave a filter that blew the tiled result up 10⁶×).
ESTIMATE_MIN_EDGE = 256
#: Parameter estimates run one at a time per process, beside the block solves.
_ESTIMATE_LOCK = threading.Lock()

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1): the part of a window inside the image


@dataclass(frozen=True)
class Window:
    """Where a window lies: its plane (index over the leading axes), the image pixel of its
    top-left corner (negative beyond the border) and its part inside the image. Stochastic
    solvers seed each tile from ``plane`` and ``origin``, so a result does not depend on how
    tiles were batched or scheduled."""
    plane: tuple[int, ...]
    origin: tuple[int, int]
    inside: Box


class TileOperator(Protocol):
    """A per-plane solver split into what tiling needs (see ``solvers/classical/tiled.py``).
    Optionally ``blend`` (pixels): the cross-fade margin, else ``tile // BLEND_DIVISOR``; and
    ``estimate_bytes(shape, channels)`` when ``estimate`` needs less memory than a solve."""
    boundary: str             # numpy.pad mode continuing an image beyond its border
    dtype: np.dtype           # output dtype
    prefers_whole_planes: bool  # usually non-local: plan one block per plane

    def out_channels(self, channels: int) -> int | None:
        """Output channels for ``channels`` input channels; ``None``: no channel axis."""

    def workspace_bytes(self, shape: tuple[int, int], channels: int) -> int:
        """Device memory to solve one window of ``shape`` (Y, X) with ``channels`` channels."""

    def estimate(self, planes: torch.Tensor) -> list[dict]:
        """The automatic parameters of each plane ``(P, C, Y, X)`` as fixed numbers."""

    def halo_floor(self, limit: int) -> tuple[int | None, int | None] | None:
        """The smallest halo any estimate can give (``None`` per axis: non-local for every
        admissible parameter), or ``None`` if that needs the data."""

    def halo(self, params: dict, limit: int) -> tuple[int | None, int | None]:
        """Per-axis kernel reach at ``params`` (``None``: wider than ``limit / 4``)."""

    def __call__(self, windows: torch.Tensor, params: Sequence[dict] | None,
                 where: Sequence[Window]) -> torch.Tensor:
        """Solve ``windows`` (B, C, Wy, Wx) → (B, C', Wy, Wx) with each window's plane
        parameters (``None``: estimate on the window itself, which is then a whole plane)."""


@dataclass(frozen=True)
class TilePlan:
    """Static geometry of a tiled job (the runtime halo only changes windows inside blocks)."""
    plane: tuple[int, int]
    tile: tuple[int, int]
    block: tuple[int, int]
    blend: int
    planes_per_block: int
    batch: int
    estimate_edge: tuple[int, int]  # window the parameters are estimated on (the plane if it fits)

    def block_chunks(self, axis: int) -> tuple[int, ...]:
        """Block sizes along ``axis``: ``block`` each, the remainder merged into the last one
        (a block must be at least as large as the context its neighbours take from it)."""
        n, size = self.plane[axis], self.block[axis]
        sizes = [size] * max(1, n // size)
        sizes[-1] += n - sum(sizes)
        return tuple(sizes)

    def context(self, axis: int) -> int:
        """Pixels of each neighbour a block sees (0 when the axis is one block)."""
        return self.block[axis] if len(self.block_chunks(axis)) > 1 else 0

    def fold(self, axis: int) -> int:
        """Margin exchanged with neighbouring blocks (0 when the axis is one block)."""
        return self.blend if self.context(axis) else 0

    def tiles_per_plane(self) -> int:
        return math.prod(math.ceil(n / t) for n, t in zip(self.plane, self.tile))

    def tiles_in_block(self, index: tuple[int, int]) -> int:
        counts = []
        for axis in (0, 1):
            chunks = self.block_chunks(axis)
            start = sum(chunks[:index[axis]])
            tile = self.tile[axis]
            counts.append(math.ceil((start + chunks[index[axis]]) / tile) - start // tile)
        return counts[0] * counts[1]


def plan_tiles(plane: tuple[int, int], channels: int, operator: TileOperator, *,
               tile_size: int | None = None, device="cpu", workers: int = 1) -> TilePlan:
    """Tile, block and batch sizes: ``tile_size`` or the largest tile whose window fits the
    memory budget (``wsprior.memory``); blocks of up to ``BLOCK_EDGE`` (whole planes for
    operators that are usually non-local); as many windows per batch as the budget holds."""
    budget = memory.budget_bytes(device, workers)
    edge = tile_size or _largest_tile(operator, channels, budget)
    tile = tuple(min(edge, n) for n in plane)
    if operator.prefers_whole_planes:
        block = tuple(plane)
    else:
        block = tuple(min(n, max(t, BLOCK_EDGE // t * t)) for n, t in zip(plane, tile))
    split = min([t for t, n in zip(tile, plane) if t < n] or tile)  # smallest tile edge in use
    blend = getattr(operator, "blend", None) or max(1, split // BLEND_DIVISOR)
    if 2 * blend > split:
        raise ValueError(f"the blend margin ({blend} px) must be at most half the tile "
                         f"({split} px); use a larger tile_size")
    window = tuple(t + 2 * (t // _PLANNING_HALO_FRACTION + blend) for t in tile)
    batch = int(min(4096, max(1, budget // max(1, operator.workspace_bytes(window, channels)))))
    planes = max(1, BLOCK_EDGE ** 2 // (block[0] * block[1]))
    if torch.device(device).type == "cuda":  # a batch gathers the tiles of several planes
        tiles = math.prod(math.ceil(b / t) for b, t in zip(block, tile))
        planes = max(planes, min(GPU_BLOCK_PLANES, math.ceil(batch / tiles)))
    return TilePlan(tuple(plane), tile, block, blend, planes, batch,
                    _estimate_edge(plane, channels, operator, budget))


def _estimate_edge(plane, channels: int, operator: TileOperator, budget: int) -> tuple[int, int]:
    """The plane up to ``ESTIMATE_EDGE`` a side if estimating on it fits ``budget``, else the
    largest centre crop that does (halving the larger side). An operator whose estimate is
    cheaper than its solve says so with ``estimate_bytes`` (same signature as
    ``workspace_bytes``)."""
    cost = getattr(operator, "estimate_bytes", operator.workspace_bytes)
    edge = list(_capped(plane))
    while cost(tuple(edge), channels) > budget and max(edge) > ESTIMATE_MIN_EDGE:
        axis = int(edge[1] > edge[0])
        edge[axis] = max(min(ESTIMATE_MIN_EDGE, plane[axis]), edge[axis] // 2)
    return tuple(edge)


def _capped(plane) -> tuple[int, int]:
    return tuple(min(n, ESTIMATE_EDGE) for n in plane)


def centre_slices(plane, edge) -> tuple[slice, slice]:
    """The centre ``edge`` (Y, X) of a ``plane`` (Y, X): where parameters are estimated."""
    return tuple(slice((n - e) // 2, (n - e) // 2 + e) for n, e in zip(plane, edge))


def needs_tiling(plane: tuple[int, int], channels: int, operator: TileOperator, *,
                 tile_size: int | None, device="cpu") -> bool:
    """Tile when asked to (``tile_size``) or when solving a whole plane would not fit the
    memory budget of one worker."""
    if tile_size is not None:
        return True
    return operator.workspace_bytes(plane, channels) > memory.budget_bytes(device)


def _largest_tile(operator: TileOperator, channels: int, budget: int) -> int:
    fitting = [e for e in _TILE_EDGES
               if operator.workspace_bytes((e + 2 * (e // _PLANNING_HALO_FRACTION),) * 2,
                                           channels) <= budget]
    return fitting[-1] if fitting else _TILE_EDGES[0]


def apply(array, operator: TileOperator, *, core_in: int, settings, progress=None):
    """Run ``operator`` tile by tile over ``array`` ``(..., [C,] Y, X)`` (``core_in`` = 2 without
    a channel axis, 3 with one). numpy/torch in → computed here or on the active
    ``dask.distributed`` client, with ``progress(tiles done, total)`` (which may raise to
    cancel); dask in → lazy dask out."""
    import dask.array as da

    device = resolve_device(settings.device)
    lazy = is_dask(array)
    # name=False: a random name instead of hashing the whole array
    source = array if lazy else da.from_array(_host_array(array), chunks=-1, name=False)
    if core_in == 2:
        source = source[..., None, :, :]
    plane, channels = tuple(source.shape[-2:]), int(source.shape[-3])
    workers = 1 if device.type == "cuda" else scheduling.local_workers()
    plan = plan_tiles(plane, channels, operator, tile_size=settings.tile_size, device=device,
                      workers=workers)
    client = scheduling.active_client()
    control = _control(lazy, client, progress, plan, source)
    out = tiled(source, operator, plan, device=settings.device, control=control,
                gpu_resources=client is not None and _cluster_has_gpus(client))
    if operator.out_channels(channels) is None:
        out = out[..., 0, :, :]
    if lazy:
        return out
    lead = out.ndim - (2 if operator.out_channels(channels) is None else 3)
    result = scheduling.compute_array(
        out, client=client, control=control, progress=progress,
        total=plan.tiles_per_plane() * _planes(source),
        units=lambda index: _block_planes(out, index[:lead]) * plan.tiles_in_block(index[-2:]))
    if isinstance(array, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(result)).to(array.device)
    return result


def tiled(x, operator: TileOperator, plan: TilePlan, *, device="auto", control=None,
          gpu_resources: bool = False):
    """The lazy tiled solve of ``x`` (dask, ``(..., C, Y, X)``) → ``(..., C', Y, X)``;
    ``control`` reports progress and checks for cancellation (``wsprior.scheduling``)."""
    import dask

    control = scheduling.NullControl() if control is None else control

    lead = x.ndim - 3
    x = x.rechunk(_lead_chunks(x, plan.planes_per_block)
                  + ((x.shape[-3],), plan.block_chunks(0), plan.block_chunks(1)))
    whole = plan.context(0) == 0 and plan.context(1) == 0
    if not whole and plan.estimate_edge != _capped(plan.plane):
        warnings.warn(f"estimating each plane's automatic parameters on its centre "
                      f"{plan.estimate_edge[0]}x{plan.estimate_edge[1]} crop: a larger crop "
                      f"of the {plan.plane[0]}x{plan.plane[1]} plane would not fit the memory "
                      "budget. Pass fixed parameters for results independent of the crop.",
                      RuntimeWarning, stacklevel=3)
    params = None if whole else _estimates(x, operator, device, plan.estimate_edge)
    solver = _BlockSolver(operator, plan, device, control,
                          BatchSize(f"wsprior-{uuid.uuid4().hex}", plan.batch))
    channels = operator.out_channels(x.shape[-3]) or 1
    margins = tuple(tuple(c + 2 * plan.fold(axis) for c in plan.block_chunks(axis))
                    for axis in (0, 1))
    annotations = {"resources": {"GPU": 1}} if gpu_resources else {}
    with dask.annotate(**annotations):
        blocks = _neighbourhood_map(x, solver, label="solve", block_info=True, params=params,
                                    chunks=x.chunks[:lead] + ((channels,),) + margins,
                                    dtype=operator.dtype)
    folds = (plan.fold(0), plan.fold(1))
    if not any(folds):
        return blocks
    return _neighbourhood_map(blocks, functools.partial(_fold, folds=folds), label="fold",
                              chunks=x.chunks[:lead] + ((channels,),) + x.chunks[-2:],
                              dtype=operator.dtype)


def _neighbourhood_map(x, func, *, label: str, chunks, dtype, block_info: bool = False,
                       params=None):
    """``map_blocks`` over ``x`` where ``func`` gets each block's ``Neighbourhood`` (the block
    and its neighbour chunks) instead of the block, in one task per block, and joins the pixels
    it needs itself. With ``dask.array.overlap`` the joined copies and neighbour slices are
    separate tasks that dask runs ahead and holds (about a plane's worth of 3 × 3 copies: 400 MB
    at 4096², measured); and the depth of the join would have to be fixed when the graph is
    built, before the halo is measured. ``block_info``: called as ``func(neighbourhood, params,
    block_info)`` (``params``: a dask array with one chunk per leading chunk, or ``None``), as
    ``map_blocks`` would; else ``func(neighbourhood)``."""
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    name = f"wsprior-{label}-{uuid.uuid4().hex}"
    lead = x.ndim - 3
    starts = [np.cumsum((0,) + c) for c in x.chunks]
    graph = {}
    for index in np.ndindex(*x.numblocks):
        grid = [[_neighbour_key(x, index, dy, dx) for dx in (-1, 0, 1)] for dy in (-1, 0, 1)]
        extra = []
        if block_info:
            location = {"chunk-location": index, "array-location":
                        [(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index)]}
            extra = [None if params is None else (params.name, *index[:lead], 0, 0, 0),
                     {0: location}]
        graph[(name, *index)] = (_call_with_neighbourhood, func, grid, extra)
    dependencies = [x] if params is None else [x, params]
    layer = HighLevelGraph.from_collections(name, graph, dependencies=dependencies)
    return da.Array(layer, name, chunks, meta=np.empty((0,) * x.ndim, dtype=dtype))


def _neighbour_key(x, index: tuple, dy: int, dx: int):
    *head, i, j = index
    if 0 <= i + dy < x.numblocks[-2] and 0 <= j + dx < x.numblocks[-1]:
        return (x.name, *head, i + dy, j + dx)
    return None


def _call_with_neighbourhood(func, grid, extra: list):
    return func(Neighbourhood(grid), *extra)


class Neighbourhood:
    """A block (``grid[1][1]``) and the chunks around it (``None`` beyond the image)."""

    def __init__(self, grid):
        self.grid = grid

    @property
    def block(self) -> np.ndarray:
        return self.grid[1][1]

    def has(self, axis: int, side: int) -> bool:
        """Whether there is a neighbour on ``side`` (-1, +1) along ``axis`` (0: Y, 1: X)."""
        return (self.grid[side + 1][1] if axis == 0 else self.grid[1][side + 1]) is not None

    def join(self, depth: tuple[int, int], fill: bool) -> np.ndarray:
        """The block extended by the ``depth`` (Y, X) pixels of its neighbours that face it;
        where there is no neighbour, nothing (``fill=False``) or zeros (``fill=True``).
        ``depth`` is at most a neighbour's extent."""
        centre = self.block
        rows = [dy for dy in (-1, 0, 1) if not dy or (depth[0] and (fill or self.has(0, dy)))]
        columns = [dx for dx in (-1, 0, 1) if not dx or (depth[1] and (fill or self.has(1, dx)))]
        joined = []
        for dy in rows:
            pieces = []
            for dx in columns:
                piece = self.grid[dy + 1][dx + 1]
                if piece is None:
                    shape = centre.shape[:-2] + (depth[0] if dy else centre.shape[-2],
                                                 depth[1] if dx else centre.shape[-1])
                    pieces.append(np.zeros(shape, dtype=centre.dtype))
                else:
                    pieces.append(_facing(_facing(piece, dy, depth[0], -2), dx, depth[1], -1))
            joined.append(np.concatenate(pieces, axis=-1) if len(pieces) > 1 else pieces[0])
        return np.concatenate(joined, axis=-2) if len(joined) > 1 else joined[0]


def _facing(piece: np.ndarray, side: int, depth: int, axis: int) -> np.ndarray:
    """The ``depth`` pixels of a neighbour on ``side`` that face the block (0: the block)."""
    if side == 0:
        return piece
    index = [slice(None)] * piece.ndim
    index[axis] = slice(-depth, None) if side < 0 else slice(0, depth)
    return piece[tuple(index)]


def blend_profile(core: int, blend: int, first: bool, last: bool) -> np.ndarray:
    """1-D weights of a tile over its core ± ``blend``: raised-cosine ramps over ``2·blend``
    pixels centred on the core's edges, so that the two tiles meeting there sum to exactly 1;
    flat at the image border (no neighbour there)."""
    weights = np.ones(core + 2 * blend)
    if blend:
        ramp = np.sin(0.5 * np.pi * (np.arange(2 * blend) + 0.5) / (2 * blend)) ** 2
        if not first:
            weights[:2 * blend] = ramp
        if not last:
            weights[-2 * blend:] = ramp[::-1]
    return weights


def _fold(neighbourhood: Neighbourhood, folds: tuple[int, int]) -> np.ndarray:
    """Sum a block's core with the margins its neighbours computed for it. Along each folded
    axis the joined block reads [neighbour's margin | own margin | core | own margin |
    neighbour's margin], each margin ``fold`` pixels."""
    block = neighbourhood.join(folds, fill=True)
    for axis, fold in zip((-2, -1), folds):
        if not fold:
            continue
        block = np.moveaxis(block, axis, 0)
        core = block[2 * fold: block.shape[0] - 2 * fold].copy()
        core[:fold] += block[:fold]
        core[-fold:] += block[-fold:]
        block = np.moveaxis(core, 0, axis)
    return block


@dataclass(frozen=True)
class _Axis:
    """How one block axis is tiled at run time."""
    tile: int      # core edge
    margin: int    # halo + blend: window = tile + 2·margin
    blend: int
    start: int     # first pixel of the block (global)
    stop: int      # end of the block (global)
    size: int      # the plane's extent

    @property
    def count(self) -> int:
        return math.ceil((self.stop - self.start) / self.tile)

    def profile(self, k: int) -> np.ndarray:
        first = self.start + k * self.tile == 0
        last = self.start + (k + 1) * self.tile >= self.size
        return blend_profile(self.tile, self.blend, first, last)

    def origin(self, k: int) -> int:
        """Image pixel of the first pixel of tile ``k``'s window."""
        return self.start + k * self.tile - self.margin

    def inside(self, k: int) -> tuple[int, int]:
        """Window pixels of tile ``k`` that lie inside the image."""
        origin = self.origin(k)
        return max(0, -origin), min(self.tile + 2 * self.margin, self.size - origin)


class _BlockSolver:
    """The per-block task: pad, cut windows, solve in batches, blend (picklable for workers)."""

    def __init__(self, operator: TileOperator, plan: TilePlan, device, control, batch: BatchSize):
        self.operator, self.plan, self.device = operator, plan, device
        self.control, self.batch = control, batch
        self.starts = tuple(np.cumsum((0,) + plan.block_chunks(axis)) for axis in (0, 1))

    def __call__(self, neighbourhood: Neighbourhood, params=None, block_info=None) -> np.ndarray:
        block = neighbourhood.block
        index = block_info[0]["chunk-location"][-2:]
        lead_shape = block.shape[:-3]
        lead_start = [start for start, _ in block_info[0]["array-location"][:-3]]
        check.finite_chunk("input", block)
        planes = block.reshape(-1, *block.shape[-3:])
        names = [tuple(int(a + b) for a, b in zip(lead_start, np.unravel_index(p, lead_shape)))
                 for p in range(len(planes))]
        device = resolve_device(self.device)
        params = None if params is None else [p for p in params.reshape(-1)]
        params, axes = self._layout(planes, params, index, device)
        context = self._context(neighbourhood, axes)
        tiles = self.plan.tiles_in_block(index) * len(planes)
        out = self._solve(context, params, axes, device, tiles, names)
        del context, planes, block, neighbourhood
        memory.release_free_memory()
        return out.reshape(*lead_shape, *out.shape[1:])

    def _layout(self, planes, params, index, device):
        """Parameters and per-axis tiling of this block from the operator's halo."""
        limit = self._halo_limit()
        if params is None:  # the block is the whole plane
            floor = self.operator.halo_floor(limit)
            if floor is not None and self._whole_plane(floor):
                return None, self._axes((None, None), index)
            sample = planes[(..., *centre_slices(self.plan.plane, _capped(self.plan.plane)))]
            params = self.operator.estimate(torch.as_tensor(sample, dtype=torch.float32,
                                                            device=device))
        halos = [self.operator.halo(p, limit) for p in params]
        halo = tuple(None if any(h[a] is None for h in halos) else max(h[a] for h in halos)
                     for a in (0, 1))
        return params, self._axes(halo, index)

    def _halo_limit(self) -> int:
        """Largest grid the halo needs measuring on: reaches up to half a one-block axis decide
        whether to tile it; on a multi-block axis only reaches up to the block context fit."""
        return max(2 * n if self.plan.context(a) == 0 else 4 * self.plan.context(a)
                   for a, n in enumerate(self.plan.plane))

    def _whole_plane(self, halo) -> bool:
        return all(self.plan.context(a) == 0 and self._spans(halo[a], a) for a in (0, 1))

    def _spans(self, halo: int | None, axis: int) -> bool:
        """A window would be at least the plane: solve the axis whole."""
        size = self.plan.plane[axis]
        return halo is None or self.plan.tile[axis] + 2 * (halo + self.plan.blend) >= size

    def _axes(self, halo, index) -> tuple[_Axis, _Axis]:
        axes = []
        for a in (0, 1):
            start, stop = int(self.starts[a][index[a]]), int(self.starts[a][index[a] + 1])
            size, blend, depth = self.plan.plane[a], self.plan.blend, self.plan.context(a)
            if depth == 0 and self._spans(halo[a], a):
                axes.append(_Axis(size, 0, 0, 0, size, size))
                continue
            reach = halo[a]
            if depth and (reach is None or reach + blend > depth):
                reaches = "beyond the plane" if reach is None else f"{reach} px"
                warnings.warn(f"the solver's kernel reaches {reaches} along axis {a - 2}, more "
                              f"than the {depth - blend} px a block can see; the tiled result "
                              "is approximate there. Solve whole planes (tile_size larger than "
                              "the plane) for the exact result.", RuntimeWarning, stacklevel=2)
                reach = depth - blend
            axes.append(_Axis(self.plan.tile[a], reach + blend, blend, start, stop, size))
        return tuple(axes)

    def _context(self, neighbourhood: Neighbourhood, axes) -> np.ndarray:
        """The block's tiles plus ``margin`` pixels on every side: the neighbours' pixels where
        there are neighbours, the operator's boundary continuation beyond the image (also
        filling the last, partial tile to full size). The join gives exactly ``margin`` pixels
        where there is a neighbour, and only a block without a neighbour after it ends in a
        partial tile, so padding is all that is left to do."""
        depth = tuple(axis.margin if self.plan.context(a) else 0 for a, axis in enumerate(axes))
        joined = neighbourhood.join(depth, fill=False)
        planes = joined.reshape(-1, *joined.shape[-3:])
        pads = []
        for a, axis in enumerate(axes):
            before = depth[a] if neighbourhood.has(a, -1) else 0     # what the join gave
            end = before + axis.count * axis.tile + axis.margin     # the last window's end
            pads.append((axis.margin - before, end - planes.shape[2 + a]))
        if not any(sum(p) for p in pads):
            return planes
        return np.pad(planes, ((0, 0), (0, 0), *pads), mode=self.operator.boundary)

    def _solve(self, context: np.ndarray, params, axes, device, tiles: int,
               names: list[tuple[int, ...]]) -> np.ndarray:
        ay, ax = axes
        jobs = [(p, i, j) for p in range(context.shape[0]) for i in range(ay.count)
                for j in range(ax.count)]
        channels = self.operator.out_channels(context.shape[1]) or 1
        out = np.zeros((context.shape[0], channels, ay.count * ay.tile + 2 * ay.blend,
                        ax.count * ax.tile + 2 * ax.blend), dtype=self.operator.dtype)
        wy, wx = ay.tile + 2 * ay.margin, ax.tile + 2 * ax.margin
        reported = 0

        def solve(items: slice) -> np.ndarray:
            batch = jobs[items]
            windows = np.stack([context[p, :, i * ay.tile: i * ay.tile + wy,
                                        j * ax.tile: j * ax.tile + wx] for p, i, j in batch])
            tensor = torch.as_tensor(windows, dtype=torch.float32, device=device)
            where = [Window(names[p], (ay.origin(i), ax.origin(j)), ay.inside(i) + ax.inside(j))
                     for p, i, j in batch]
            chosen = None if params is None else [params[p] for p, _, _ in batch]
            result = self.operator(tensor, chosen, where)
            return result.detach().cpu().numpy()

        for items, result in run_batches(solve, len(jobs), size=self.batch, device=device,
                                         check=self.control.check):
            for (p, i, j), tile in zip(jobs[items], result):
                core = tile[:, ay.margin - ay.blend: ay.margin + ay.tile + ay.blend,
                            ax.margin - ax.blend: ax.margin + ax.tile + ax.blend]
                weights = np.outer(ay.profile(i), ax.profile(j))
                out[p, :, i * ay.tile: i * ay.tile + core.shape[1],
                    j * ax.tile: j * ax.tile + core.shape[2]] += core * weights
            done = round(tiles * items.stop / len(jobs))  # in planned tiles (progress total)
            self.control.advance(done - reported)
            reported = done
        return self._crop(out, axes)

    def _crop(self, out: np.ndarray, axes) -> np.ndarray:
        """The block core plus the static ``fold`` margin on each side."""
        for a, axis in enumerate(axes):
            fold = self.plan.fold(a)
            first = axis.blend - fold
            length = axis.stop - axis.start + 2 * fold
            out = out[(slice(None),) * (2 + a) + (slice(first, first + length),)]
        return out


def _estimates(x, operator: TileOperator, device, edge: tuple[int, int]):
    """Lazy per-plane parameters (an object array, one dict per plane, shaped ``lead + (1, 1,
    1)``) from each plane's centre ``edge`` (the whole plane when it fits).

    One ``from_delayed`` task per leading chunk, not ``map_blocks``: dask fuses blockwise layers
    into their consumers, which would repeat the estimate in every block of the plane. The
    estimate reads the input through its own (cloned) tasks: shared reads would pin every
    estimated plane in memory until its blocks are solved."""
    import dask
    import dask.array as da
    from dask.graph_manipulation import clone

    sample = clone(x[(..., *centre_slices(x.shape[-2:], edge))])
    sample = sample.rechunk({x.ndim - 2: -1, x.ndim - 1: -1})
    estimator = _Estimator(operator, device)
    pieces = sample.to_delayed()
    blocks = np.empty(pieces.shape, dtype=object)
    for index in np.ndindex(*pieces.shape):
        shape = tuple(c[i] for c, i in zip(x.chunks[:-3], index)) + (1, 1, 1)
        blocks[index] = da.from_delayed(dask.delayed(estimator)(pieces[index]), shape=shape,
                                        dtype=object, meta=np.empty((0,) * x.ndim, dtype=object))
    return da.block(blocks.tolist())


class _Estimator:
    def __init__(self, operator: TileOperator, device):
        self.operator, self.device = operator, device

    def __call__(self, block: np.ndarray) -> np.ndarray:
        check.finite_chunk("input", block)
        planes = torch.as_tensor(block.reshape(-1, *block.shape[-3:]), dtype=torch.float32,
                                 device=resolve_device(self.device))
        out = np.empty(len(planes), dtype=object)
        with _ESTIMATE_LOCK:
            out[:] = self.operator.estimate(planes)
        del planes
        memory.release_free_memory()
        return out.reshape(*block.shape[:-3], 1, 1, 1)


def _lead_chunks(x, planes_per_block: int) -> tuple:
    """Leading axes: one index per block, except the last leading axis (several planes)."""
    lead = x.ndim - 3
    return tuple(1 if a < lead - 1 else planes_per_block for a in range(lead))


def _control(lazy: bool, client, progress, plan: TilePlan, source):
    if lazy:
        return scheduling.NullControl()
    if client is not None:
        return scheduling.EventControl()
    return scheduling.LocalControl(progress, plan.tiles_per_plane() * _planes(source))


def _planes(array) -> int:
    return math.prod(array.shape[:-3])


def _block_planes(array, lead_index: tuple) -> int:
    return math.prod(array.chunks[a][i] for a, i in enumerate(lead_index))


def _cluster_has_gpus(client) -> bool:
    workers = client.scheduler_info().get("workers", {})
    return any("GPU" in info.get("resources", {}) for info in workers.values())


def _host_array(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def wanted(array, operator: TileOperator | None, *, core_in: int, settings) -> bool:
    """Whether the API should tile ``array``: a tile operator exists and ``settings.tile_size``
    is given, or a whole plane would not fit the memory budget (``needs_tiling``)."""
    if operator is None:
        return False
    channels = 1 if core_in == 2 else int(array.shape[-3])
    return needs_tiling(tuple(array.shape[-2:]), channels, operator, tile_size=settings.tile_size,
                        device=resolve_device(settings.device))
