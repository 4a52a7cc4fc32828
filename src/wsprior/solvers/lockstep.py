"""Several windows sampled at once, with one batched network forward per step.

The samplers are written for one problem at a time (each window of a plane has its own data
and numbers). To batch the network over a tile batch without rewriting them, every window's
sampler runs in its own thread with a ``LockstepPrior``: the threads' network calls meet at a
barrier, where the last one to arrive runs a single forward on all their inputs. Every window
of a batch takes the same steps at the same times (same method, steps and samples), so the
calls line up. A call that needs gradients through the network (DPS) runs on its own.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import torch


class LockstepPrior:
    """A prior shared by ``count`` threads (``run_in_lockstep``) whose ``noise_prediction`` calls
    are batched; everything else is the wrapped prior's."""

    def __init__(self, prior, count: int):
        self._prior = prior
        self._inputs: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * count
        self._outputs: list[torch.Tensor | None] = [None] * count
        self._barrier = threading.Barrier(count, action=self._forward)
        self._slot = threading.local()
        self.calls = 0   # batched forwards run (for tests and benchmarks)

    def __getattr__(self, name):
        if name.startswith("_"):   # not set yet (e.g. while copying): no recursion into _prior
            raise AttributeError(name)
        return getattr(self._prior, name)

    def bind(self, slot: int) -> None:
        """Make the calling thread the sampler of window ``slot``."""
        self._slot.index = slot

    def abort(self) -> None:
        """Release the other threads (they raise ``threading.BrokenBarrierError``)."""
        self._barrier.abort()

    def noise_prediction(self, x: torch.Tensor, t) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return self._prior.noise_prediction(x, t)
        slot = self._slot.index
        self._inputs[slot] = (x, torch.as_tensor(t))
        self._barrier.wait()
        # Safe to read: the next forward overwrites it only once this thread has called again.
        return self._outputs[slot]

    def _forward(self) -> None:
        inputs, self._inputs = self._inputs, [None] * len(self._inputs)
        shapes = {tuple(x.shape) for x, _ in inputs}
        times = {float(t) for _, t in inputs}
        if len(shapes) == 1 and len(times) == 1:
            batch = torch.stack([x for x, _ in inputs])
            self._outputs = list(self._prior.noise_prediction(batch, inputs[0][1]).unbind(0))
        else:   # not in step: still correct, one forward per window
            self._outputs = [self._prior.noise_prediction(x, t) for x, t in inputs]
        self.calls += 1


def run_in_lockstep(tasks: Sequence[Callable[[int], object]], priors: Sequence[LockstepPrior]
                    ) -> list:
    """Run ``tasks[i](i)`` in one thread each and return their results in order; ``priors``
    (made for ``len(tasks)`` threads) batch the tasks' network calls. The first error of any
    task is raised (the others are released from the barrier and stop)."""
    results: list = [None] * len(tasks)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        for prior in priors:
            prior.bind(index)
        try:
            results[index] = tasks[index](index)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller below
            errors.append(error)
            for prior in priors:
                prior.abort()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)),
                   errors[0])
    return results
