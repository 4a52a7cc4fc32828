"""Where a dask graph runs and how it reports: the local threaded scheduler, or the workers of an
active ``dask.distributed`` client, with progress (work units done / total) and cancellation.

Locally, the blocks report after every tile batch through a ``LocalControl`` shared by the
threads, and a raising progress callback cancels the job: the other blocks stop before their
next batch. On a cluster the callback runs here, in the client, as blocks complete; cancelling
sets a ``distributed.Event`` that the blocks check before every batch, and cancels the futures.
"""
from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Sequence

import dask
import dask.array
import numpy as np
from dask.callbacks import Callback

from .batching import Cancelled

Progress = Callable[[int, int], None] | None


def active_client():
    """The ``dask.distributed`` client of this process, or ``None`` (also when distributed is not
    installed): when a client is active, tiled jobs run on its workers."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def local_workers() -> int:
    """Threads of the local scheduler: one per core (torch releases the GIL in its kernels)."""
    return max(1, os.cpu_count() or 1)


class NullControl:
    """No progress reports, no cancellation (lazy results: dask reports on its own)."""

    def check(self) -> None:
        pass

    def cancel(self) -> None:
        pass

    def advance(self, count: int) -> None:
        pass


class LocalControl:
    """Progress and cancellation shared by the threads of one local job."""

    def __init__(self, progress: Progress, total: int):
        self.progress, self.total, self.done = progress, int(total), 0
        self._lock, self._cancelled = threading.Lock(), threading.Event()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled("the job was cancelled")

    def cancel(self) -> None:
        self._cancelled.set()

    def advance(self, count: int) -> None:
        with self._lock:
            self.done += count
            if self.progress is None:
                return
            try:
                self.progress(self.done, self.total)
            except BaseException:
                self._cancelled.set()
                raise


class EventControl:
    """Cancellation on a cluster: blocks check the named ``distributed.Event`` between batches
    (progress is reported by the client as blocks complete)."""

    def __init__(self, name: str | None = None):
        self.name = name or f"wsprior-cancel-{uuid.uuid4().hex}"

    def check(self) -> None:
        from distributed import Event

        if Event(self.name).is_set():
            raise Cancelled("the job was cancelled")

    def cancel(self) -> None:
        from distributed import Event

        Event(self.name).set()

    def advance(self, count: int) -> None:
        pass


def compute_array(array, *, client, control, progress: Progress, total: int,
                  units: Callable[[tuple], int]) -> np.ndarray:
    """Compute a dask array here (threads) or on ``client``'s workers. On a cluster
    ``progress(done, total)`` is called as blocks complete, ``units(block_index)`` giving each
    block's share of ``total``; locally the blocks report through ``control`` themselves and
    are written into the result as they finish (not held and concatenated at the end)."""
    if client is None:
        result = np.empty(array.shape, dtype=array.dtype)
        try:
            dask.array.store(array, result, lock=False, scheduler="threads",
                             num_workers=local_workers())
        except BaseException:
            control.cancel()
            raise
        return result
    persisted = client.persist(array)
    _report_as_completed(client, _futures(persisted), progress, total,
                         lambda future: units(tuple(future.key[1:])), on_cancel=control.cancel)
    return persisted.compute()


def compute_chunks(array, *, client, progress: Progress) -> np.ndarray:
    """Compute any dask array here (threads; ``progress(tasks done, tasks)``) or on ``client``'s
    workers (``progress(chunks done, chunks)``)."""
    if client is None:
        with _TaskProgress(progress):
            return array.compute(scheduler="threads", num_workers=local_workers())
    persisted = client.persist(array)
    futures = _futures(persisted)
    _report_as_completed(client, futures, progress, len(futures), lambda _: 1)
    return persisted.compute()


def compute_each(collections: Sequence, *, client, progress: Progress) -> list:
    """Compute dask ``collections`` together (work they share runs once), here (threads) or on
    ``client``'s workers; on a cluster ``progress(done, len(collections))`` is reported as each
    completes (locally the tasks report through a ``LocalControl`` themselves)."""
    if client is None:
        return list(dask.compute(*collections, scheduler="threads", num_workers=local_workers()))
    futures = client.compute(list(collections))
    _report_as_completed(client, futures, progress, len(collections), lambda _: 1)
    return client.gather(futures)


class _TaskProgress(Callback):
    """``progress(tasks done, tasks)`` of a local dask computation (dask renames the tasks it
    optimises, so finished tasks are counted, not looked up)."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress, self.total = progress, 0

    def _start_state(self, dsk, state):
        self.total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))

    def _posttask(self, key, result, dsk, state, worker_id):
        if self.progress is not None:
            self.progress(len(state["finished"]), self.total)


def _futures(persisted) -> list:
    from distributed import futures_of

    return futures_of(persisted)


def _report_as_completed(client, futures, progress: Progress, total: int, units, *,
                         on_cancel: Callable[[], None] = lambda: None) -> None:
    """Report ``progress`` as ``futures`` complete; on any error (a failed task, or the callback
    raising to cancel) stop the running blocks (``on_cancel``), cancel the rest and re-raise."""
    from distributed import as_completed

    done = 0
    try:
        for future in as_completed(futures):
            if future.status == "error":
                future.result()  # raises the task's exception here
            done += units(future)
            if progress is not None:
                progress(done, total)
    except BaseException:
        on_cancel()
        client.cancel(futures)
        raise
