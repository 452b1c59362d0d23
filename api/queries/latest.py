"""The newest rows, from the ``<table>_latest`` tables (migration 0010): one row per key,
kept current by the sinks in the same transaction as the hypertable's rows. A lookup is
one probe of a small table's primary key, whatever the history holds; the hypertables
themselves are planned over all their chunks (seconds with thousands of them)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import sql

from api.queries.base import Conn, Row, column_list, fetch, fetch_one, where_equal

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


async def latest_rows(
    conn: Conn, table: str, columns: Sequence[str], filters: Mapping[str, Any]
) -> list[Row]:
    """The newest row of each key of ``table`` among those matching ``filters`` (None:
    any), sorted by key."""
    given = {k: v for k, v in filters.items() if v is not None}
    query = _latest_rows_sql(table, tuple(columns), tuple(given))
    return await fetch(conn, query, {f"f_{k}": v for k, v in given.items()})


@functools.lru_cache(maxsize=256)
def _latest_rows_sql(table: str, columns: tuple[str, ...], filter_names: tuple[str, ...]) -> bytes:
    """Composed once per shape (and the same text each time, so the connection's prepared
    statement serves it)."""
    where, _ = where_equal(dict.fromkeys(filter_names, True))
    query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
        column_list(columns), latest_table(table), where, column_list(LATEST_KEYS[table])
    )
    return query.as_bytes(None)
