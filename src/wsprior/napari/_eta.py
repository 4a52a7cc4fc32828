"""Remaining-time estimate of a running job from its progress reports.

The time per unit of progress is an exponential moving average of the intervals between
reports, so one slow step (a checkpoint being written, the first sample's classical warm start)
moves the estimate a little instead of tripling it. The interval up to the first report is not
counted (it holds start-up work: preparing data, loading a prior), and no estimate is given
until ``warmup`` intervals have been timed.
"""
from __future__ import annotations


class EtaEstimate:
    """``update(done, total, now)`` → seconds left, or None while there is too little to go on.

    >>> eta = EtaEstimate(smoothing=0.5, warmup=2)
    >>> [eta.update(done, 10, now) for done, now in [(1, 30.0), (2, 31.0), (3, 32.0), (4, 33.0)]]
    [None, None, 7.0, 6.0]
    """

    def __init__(self, smoothing: float = 0.2, warmup: int = 2):
        self.smoothing = smoothing
        self.warmup = warmup
        self._last: tuple[int, float] | None = None
        self._seconds_per_unit: float | None = None
        self._timed = 0

    def update(self, done: int, total: int, now: float) -> float | None:
        if self._last is not None and done > self._last[0]:
            rate = (now - self._last[1]) / (done - self._last[0])
            previous = self._seconds_per_unit
            self._seconds_per_unit = rate if previous is None else (
                (1 - self.smoothing) * previous + self.smoothing * rate)
            self._timed += 1
        if self._last is None or done > self._last[0]:
            self._last = (done, now)
        if self._timed < self.warmup or self._seconds_per_unit is None:
            return None
        return self._seconds_per_unit * max(total - done, 0)
