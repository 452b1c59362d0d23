"""The newest rows, from the ``<table>_latest`` tables (migration 0010): one row per key,
kept current by the sinks in the same transaction as the hypertable's rows. A lookup is
one probe of a small table's primary key, whatever the history holds; the hypertables
themselves are planned over all their chunks (seconds with thousands of them)."""

from __future__ import annotations

from psycopg import sql

from api.queries.base import Conn, Row, fetch_one

# The hypertables that have a ``_latest`` table, and its key.
LATEST_KEYS: dict[str, tuple[str, ...]] = {
    "ticks": ("symbol",),
    "bars": ("symbol",),
    "bar_metrics": ("symbol",),
    "forecasts": ("symbol", "model", "target", "horizon"),
    "model_scores": ("symbol", "model", "target", "metric"),
    "model_checkpoints": ("symbol", "model"),
}


def latest_table(table: str) -> sql.Identifier:
    if table not in LATEST_KEYS:
        raise ValueError(f"{table!r} has no latest table")
    return sql.Identifier(f"{table}_latest")


async def newest_bar(conn: Conn, symbol: str) -> Row | None:
    """The start and length of the symbol's newest bar."""
    return await fetch_one(
        conn, "SELECT time, bar_seconds FROM bars_latest WHERE symbol = %s", [symbol]
    )
