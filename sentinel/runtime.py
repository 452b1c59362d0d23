"""Tuning shared by every long-running process of the product (dataflows, the API)."""

from __future__ import annotations

import gc

_GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """Everything loaded so far moves to the collector's permanent generation (never
    walked again), and young collections run every 100,000 allocations instead of 700.

    In a dataflow, half of the parse step's time was the collector; in the API, a full
    collection walked every object of the application (FastAPI's routes and models,
    pandas, exchange_calendars) now and then, in the middle of a request."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
