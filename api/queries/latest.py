"""The newest rows, from the ``<table>_latest`` tables (migration 0010): one row per key,
kept current by the sinks in the same transaction as the hypertable's rows. A lookup is
one probe of a small table's primary key, whatever the history holds; the hypertables
themselves are planned over all their chunks (seconds with thousands of them)."""

from __future__ import annotations

from psycopg import sql

from api.queries.base import Conn, Row, fetch_one
from connectors.timescale.specs import SPECS


def probe_table(table: str) -> sql.Identifier:
    """Where to look for a symbol's rows of ``table``: its latest table when it has one
    (the keys are the sinks' specs'), else the table itself."""
    spec = SPECS.get(table)
    if spec is not None and spec.latest_key is not None:
        return sql.Identifier(f"{table}_latest")
    return sql.Identifier(table)


async def newest_bar(conn: Conn, symbol: str) -> Row | None:
    """The start and length of the symbol's newest bar."""
    return await fetch_one(
        conn, "SELECT time, bar_seconds FROM bars_latest WHERE symbol = %s", [symbol]
    )
