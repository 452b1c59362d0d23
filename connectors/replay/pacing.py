"""Pacing a replay by event time: which rows are due now, and when the next ones are.

A paced replay at speed X releases a row with time t no earlier than (t - t0) / X seconds
after its first row (time t0), which goes at once. Each row is paced by :func:`pace_times`
and released by a :class:`Pacer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dataflows.times import BoolArray, IntArray

# The pace of a row with no time: due at once.
DUE_AT_ONCE = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max
# Paced replays release rows at most this often (fewer, fuller batches), and one batch
# spans at most _PACE_SPAN_US of wall time even when the worker fell behind.
_PACE_TICK_US = 50_000
_PACE_SPAN_US = 100_000
# A row is paced by its own time or the median time of it and the next rows, whichever
# is earlier, so that one far-future timestamp cannot stall a paced replay.
PACE_WINDOW = 9


def pace_times(time_us: IntArray, time_ok: BoolArray, ahead: IntArray) -> IntArray:
    """The event time each row is paced by: its own time, or the median time of it and
    the next rows if that is earlier (a lone far-future time must not stall the replay).
    ``ahead`` holds the valid times of the rows that follow (the next chunk's). Rows with
    no time are due at once (:data:`DUE_AT_ONCE`)."""
    n = len(time_us)
    pace = np.full(n, DUE_AT_ONCE, dtype=np.int64)
    if not time_ok.any():
        return pace
    tail = ahead[: PACE_WINDOW - 1]
    padded = np.full(n + PACE_WINDOW - 1, np.nan)
    padded[:n] = np.where(time_ok, time_us, np.nan)
    padded[n : n + len(tail)] = tail
    medians = np.nanmedian(sliding_window_view(padded, PACE_WINDOW)[time_ok], axis=1)
    pace[time_ok] = np.minimum(time_us[time_ok], np.floor(medians).astype(np.int64))
    return pace


class Pacer:
    """Releases rows at ``speed`` times real speed, from the wall ``clock`` (us).

    The first row with a time sets the origin: it goes at once, and every later row is
    due when as much wall time (times ``speed``) has passed as event time since it.
    """

    def __init__(self, speed: float, clock: Callable[[], int]) -> None:
        self.speed = speed
        self.clock = clock
        self.origin: tuple[int, int] | None = None  # (wall, event) us of the first paced row

    def release(self, pace: IntArray) -> tuple[int, int | None]:
        """How many of the next rows (paced by ``pace``) are due now, and, if some are
        not, the wall time (us) to wake up at for the next one (None: no need to wait)."""
        timed = np.flatnonzero(pace != DUE_AT_ONCE)
        now = self.clock()
        if self.origin is None:
            if len(timed) == 0:
                return len(pace), None
            self.origin = (now, int(pace[timed[0]]))
        wall0, event0 = self.origin
        allowed = min(event0 + math.floor((now - wall0) * self.speed), _INT64_MAX)
        cap = allowed
        if len(timed):
            cap = min(allowed, int(pace[timed[0]]) + math.floor(_PACE_SPAN_US * self.speed))
        late = np.flatnonzero(pace > cap)
        if len(late) == 0:
            return len(pace), None
        due = int(late[0])
        next_pace = int(pace[due])
        if next_pace <= allowed:  # cut by the span cap but due already: no waiting
            return due, None
        wake = wall0 + math.ceil((next_pace - event0) / self.speed)
        return due, max(wake, now + _PACE_TICK_US) if due else wake
