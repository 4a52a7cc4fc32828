"""Remaining-time estimate of a running job from its progress reports.

The time per unit of progress is a moving average of the intervals between reports: the plain
mean at first, then an exponential moving average that remembers about ``1 / smoothing``
intervals, so one slow step (a checkpoint being written) moves the estimate by a few percent
instead of tripling it, while a lasting change of pace (training done, sampling begun) is
followed. The interval up to the first report is not counted (it holds start-up work:
preparing data, loading a prior, a classical warm start), and no estimate is given until
``warmup`` intervals have been timed.
"""
from __future__ import annotations


class EtaEstimate:
    """``update(done, total, now)`` → seconds left, or None while there is too little to go on.

    >>> eta = EtaEstimate(warmup=2)
    >>> [eta.update(done, 10, now) for done, now in [(1, 30.0), (2, 31.0), (3, 32.0), (4, 33.0)]]
    [None, None, 7.0, 6.0]
    """

    def __init__(self, smoothing: float = 0.02, warmup: int = 2):
        self.smoothing = smoothing
        self.warmup = warmup
        self._last: tuple[int, float] | None = None
        self._seconds_per_unit: float | None = None
        self._timed = 0

    def update(self, done: int, total: int, now: float) -> float | None:
        if self._last is not None and done > self._last[0]:
            rate = (now - self._last[1]) / (done - self._last[0])
            self._timed += 1
            weight = max(1 / self._timed, self.smoothing)
            previous = self._seconds_per_unit or 0.0
            self._seconds_per_unit = previous + weight * (rate - previous)
        if self._last is None or done > self._last[0]:
            self._last = (done, now)
        if self._timed < self.warmup or self._seconds_per_unit is None:
            return None
        return self._seconds_per_unit * max(total - done, 0)
