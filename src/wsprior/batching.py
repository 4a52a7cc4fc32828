"""Running a tile solver on batches of windows: one batch on a GPU at a time, a smaller batch after
an out-of-memory error, and a cancellation check and a progress report between batches.

Why here and not in dask: dask runs several blocks at once on threads (or on workers). On a CPU
that is what we want; on a GPU it would oversubscribe the device, so every batch holds a
per-device lock (within one process; across processes one dask-cuda worker per GPU, or worker
resources ``{"GPU": 1}``, do the same: ``docs/distributed.md``). The batch size is shared by all
blocks of one job in a process, so once a batch ran out of memory the next blocks start from the
size that fitted.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch

_DEVICE_LOCKS: dict[str, threading.Lock] = {}
_BATCH_SIZES: dict[str, int] = {}
_REGISTRY_LOCK = threading.Lock()


class Cancelled(Exception):
    """A job was cancelled (its progress callback raised, or its cancel event was set)."""


def device_lock(device: torch.device | str):
    """The lock serialising work on one CUDA device in this process (no lock on the CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return nullcontext()
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    with _REGISTRY_LOCK:
        return _DEVICE_LOCKS.setdefault(str(device), threading.Lock())


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA (or other accelerator) out-of-memory, which a smaller batch may avoid."""
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


class BatchSize:
    """The current batch size of one job, shared by its blocks in this process (keyed by
    ``job``, so a pickled copy on a dask worker shares it with that worker's other blocks)."""

    def __init__(self, job: str, initial: int):
        if initial < 1:
            raise ValueError(f"batch size must be >= 1; got {initial}")
        self.job, self.initial = job, int(initial)

    def get(self) -> int:
        with _REGISTRY_LOCK:
            return _BATCH_SIZES.setdefault(self.job, self.initial)

    def halve(self, failed: int) -> int:
        """Record that ``failed`` items did not fit; returns the new size (≥ 1)."""
        with _REGISTRY_LOCK:
            size = max(1, min(_BATCH_SIZES.get(self.job, self.initial), failed) // 2)
            _BATCH_SIZES[self.job] = size
            return size


def run_batches(solve: Callable[[slice], torch.Tensor], count: int, *, size: BatchSize,
                device: torch.device | str, check: Callable[[], None] = lambda: None
                ) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(items, solve(items))`` for consecutive slices covering ``range(count)``.

    ``check()`` runs before every batch (it raises ``Cancelled`` to stop within one batch).
    A batch that runs out of device memory is retried with half as many items (and the shared
    size remembers it); a single item that does not fit re-raises the error.
    """
    start = 0
    while start < count:
        check()
        items = slice(start, min(count, start + size.get()))
        try:
            with device_lock(device):
                result = solve(items)
        except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled
            n = items.stop - items.start
            if not is_out_of_memory(error) or n == 1:
                raise
            _release_cached_memory(device)
            size.halve(n)
            continue
        yield items, result
        start = items.stop


def _release_cached_memory(device) -> None:
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
