"""Loading a symbol's newest model checkpoint (written by the ``model_checkpoints`` sink)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

__all__ = ["checkpoint_loader"]


def checkpoint_loader(dsn: str) -> Callable[[str], list[tuple[Any, ...]]]:
    """Reads a symbol's newest `model_checkpoints` rows (one per model, same time), from
    `model_checkpoints_latest` (one probe, however many chunks the history holds)."""

    def load(symbol: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            rows = conn.execute(
                """SELECT (extract(epoch FROM time) * 1e6)::bigint, symbol, model, version,
                          bars_seen, state, metrics
                   FROM model_checkpoints_latest
                   WHERE symbol = %s
                     AND time = (SELECT max(time) FROM model_checkpoints_latest
                                 WHERE symbol = %s)""",
                [symbol, symbol],
            ).fetchall()
        return [tuple(r) for r in rows]

    return load
