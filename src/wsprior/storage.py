"""Arrays larger than memory: lazy inputs (zarr, OME-Zarr, TIFF) and a resumable zarr output.

Inputs open as dask arrays without reading pixels: zarr arrays, zarr groups (an OME-Zarr
image's first, full-resolution dataset, or the group's only array), and TIFF files,
memory-mapped through ``tifffile`` when their pixels are stored uncompressed and contiguously,
else read chunk by chunk through ``tifffile``'s zarr view.

The output is a zarr (v3) group: the result in array ``"0"`` with OME-NGFF 0.5 ``multiscales``
metadata (one scale) when its axes allow it, and ``attrs["wsprior"]`` holding the job's
fingerprint (task, parameters, input) and ``"complete"``. Each dask block is written into the
zarr chunks it covers, then marked done in the small array ``"wsprior_done"`` (one element per
zarr chunk, so concurrent blocks never write the same chunk). Rerunning the same job skips the
chunks marked done; once all are written the marks are removed and ``"complete": true`` is
written last. A store without it is incomplete, and ``open_array`` refuses to read it.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from . import scheduling

RESULT = "0"
DONE = "wsprior_done"
_SPACE = {"y": "space", "x": "space", "z": "space", "t": "time", "c": "channel"}


def is_zarr(path: str | Path) -> bool:
    """A path that names a zarr store (existing, or to be created: ``*.zarr``)."""
    path = Path(path)
    if path.suffix == ".zarr":
        return True
    markers = ("zarr.json", ".zarray", ".zgroup")
    return path.is_dir() and any((path / name).exists() for name in markers)


def open_array(path: str | Path):
    """A lazy dask array of the image at ``path`` (zarr, OME-Zarr or TIFF); no pixels are read."""
    import dask.array as da

    path = Path(path)
    if not path.exists():
        raise ValueError(f"input {str(path)!r} does not exist")
    if is_zarr(path):
        return da.from_zarr(_zarr_image(path))
    if path.suffix.lower() in (".tif", ".tiff"):
        return _tiff_array(path)
    raise ValueError(f"input {str(path)!r} is neither a zarr store nor a TIFF file")


def _zarr_image(path: Path):
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Array):
        return node
    job = node.attrs.get("wsprior")
    if job is not None and not job.get("complete", False):
        raise ValueError(f"{str(path)!r} is an incomplete wsprior output (the run that wrote it "
                         "was interrupted); rerun the same command to finish it")
    multiscales = node.attrs.get("ome", {}).get("multiscales") or node.attrs.get("multiscales")
    if multiscales:
        return node[multiscales[0]["datasets"][0]["path"]]
    arrays = [name for name, _ in node.arrays()]
    if len(arrays) != 1:
        raise ValueError(f"zarr group {str(path)!r} holds {len(arrays)} arrays and no OME-Zarr "
                         "metadata; give the path of the array to read")
    return node[arrays[0]]


def _tiff_array(path: Path):
    import dask.array as da
    import tifffile
    import zarr

    try:
        pixels = tifffile.memmap(path, mode="r")
    except ValueError:  # compressed or scattered: read through tifffile's chunked zarr view
        return da.from_zarr(zarr.open(tifffile.imread(path, aszarr=True), mode="r"))
    return da.from_array(pixels, chunks=(1,) * (pixels.ndim - 2) + pixels.shape[-2:])


def fingerprint(**job) -> str:
    """A digest of the job description (JSON-serialisable values) stored with the output."""
    return hashlib.sha256(json.dumps(job, sort_keys=True, default=_plain).encode()).hexdigest()


def _plain(value):
    """JSON fallback: arrays as nested lists, anything else as its text."""
    return np.asarray(value).tolist() if hasattr(value, "__array__") else str(value)


def write_zarr(array, path: str | Path, *, job: str, axes: str | None = None,
               pixel_size_um: float | None = None, progress=None, client=None) -> bool:
    """Write the dask ``array`` to the zarr group at ``path`` chunk by chunk, resuming an
    interrupted run of the same ``job`` (a ``fingerprint``). Returns ``False`` if the store was
    already complete (nothing written). ``progress(chunks done, total)`` is reported for the
    chunks written by this run."""
    group = _open_output(Path(path), array, job, axes, pixel_size_um)
    if group.attrs["wsprior"].get("complete"):
        return False
    target = group[RESULT]
    array = _aligned(array, target.chunks)
    done = np.asarray(group[DONE][...], dtype=bool)
    pending = [index for index in np.ndindex(*array.numblocks)
               if not done[_chunk_range(array, index, target.chunks)].all()]
    # One collection of per-block writes; computing a selection of its blocks together lets
    # dask optimise them jointly, so work shared between blocks runs once. Locally the writes
    # report progress themselves; on a cluster the client does, as they complete.
    report = None if client is not None else scheduling.LocalControl(progress, len(pending))
    writes = array.map_blocks(_write_block, path=str(path), zarr_chunks=target.chunks,
                              report=report, chunks=tuple((1,) * len(c) for c in array.chunks),
                              dtype=np.uint8, meta=np.empty((0,) * array.ndim, dtype=np.uint8))
    scheduling.compute_each([writes.blocks[index] for index in pending], client=client,
                            progress=progress)
    _finish(group)
    return True


def _open_output(path: Path, array, job: str, axes, pixel_size_um):
    import zarr

    if path.exists():
        group = zarr.open_group(str(path), mode="r+")
        record = group.attrs.get("wsprior")
        if record is None:
            raise ValueError(f"{str(path)!r} exists and is not a wsprior output; "
                             "choose another path")
        if record.get("job") != job:
            raise ValueError(f"{str(path)!r} holds the output of another job (other input or "
                             "parameters); delete it or choose another path")
        return group
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    chunks = tuple(c[0] for c in array.chunks)
    group.create_array(RESULT, shape=array.shape, chunks=chunks, dtype=array.dtype, fill_value=0)
    grid = tuple(math.ceil(n / c) for n, c in zip(array.shape, chunks))
    group.create_array(DONE, shape=grid, chunks=(1,) * len(grid), dtype="uint8", fill_value=0)
    attributes = {"wsprior": {"job": job, "complete": False}}
    metadata = _ome_metadata(array.ndim, axes, pixel_size_um)
    if metadata:
        attributes["ome"] = metadata
    group.attrs.update(attributes)
    return group


def _aligned(array, chunks: tuple[int, ...]):
    """``array`` with every block a union of whole zarr chunks (blocks write concurrently)."""
    aligned = all(all(start % size == 0 for start in np.cumsum((0,) + sizes[:-1]))
                  for sizes, size in zip(array.chunks, chunks))
    return array if aligned else array.rechunk(chunks)


def _chunk_range(array, index: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[slice, ...]:
    """The zarr chunks (indices into the done marks) that block ``index`` covers."""
    region = tuple(slice(sum(sizes[:i]), sum(sizes[:i + 1]))
                   for sizes, i in zip(array.chunks, index))
    return _marks(region, chunks)


def _marks(region: tuple[slice, ...], chunks: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(r.start // c, math.ceil(r.stop / c)) for r, c in zip(region, chunks))


def _write_block(data: np.ndarray, path: str, zarr_chunks: tuple[int, ...], report=None,
                 block_info=None) -> np.ndarray:
    """Runs on a worker: write the block, then mark its zarr chunks done."""
    import zarr

    region = tuple(slice(start, stop) for start, stop in block_info[0]["array-location"])
    zarr.open_array(f"{path}/{RESULT}", mode="r+")[region] = data
    zarr.open_array(f"{path}/{DONE}", mode="r+")[_marks(region, zarr_chunks)] = 1
    if report is not None:
        report.advance(1)
    return np.ones((1,) * data.ndim, dtype=np.uint8)


def _finish(group) -> None:
    """Drop the done marks, then record completion: the last write of a run."""
    del group[DONE]
    record = dict(group.attrs["wsprior"], complete=True)
    group.attrs.update({"wsprior": record})


def _ome_metadata(ndim: int, axes: str | None, pixel_size_um: float | None) -> dict | None:
    """OME-NGFF 0.5 multiscales for one scale, when the axes fit its (t, c, z, y, x) model."""
    names = _axis_names(ndim, axes)
    if names is None:
        return None
    scale = [float(pixel_size_um) if pixel_size_um and n in "yx" else 1.0 for n in names]
    entries = [dict(name=n, type=_SPACE[n]) for n in names]
    for entry in entries:
        if entry["name"] in "yx" and pixel_size_um:
            entry["unit"] = "micrometer"
    return {"version": "0.5", "multiscales": [{
        "axes": entries,
        "datasets": [{"path": RESULT,
                      "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]}


def _axis_names(ndim: int, axes: str | None) -> list[str] | None:
    core = list((axes or "YX").lower())[-ndim:]
    lead = ["t", "c"][: ndim - len(core)]
    names = lead + core
    if len(names) != ndim or not 2 <= ndim <= 5 or len(set(names)) != ndim:
        return None
    return names
