"""``tickers``: the symbols the live dataflow follows, and whether a symbol is known."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from psycopg import sql

from api.queries.base import Conn, Row, column_list, fetch, fetch_one, where_equal

TICKER_COLUMNS = ("symbol", "active", "added_at", "updated_at")
Outcome = Literal["created", "reactivated", "unchanged"]


async def ticker_rows(conn: Conn, active: bool | None) -> list[Row]:
    where, params = where_equal({"active": active})
    query = sql.SQL("SELECT {} FROM tickers WHERE {} ORDER BY symbol").format(
        column_list(TICKER_COLUMNS), where
    )
    return await fetch(conn, query, params)


async def activate_ticker(conn: Conn, symbol: str) -> tuple[Row, Outcome]:
    """Insert or re-activate; returns the row and 'created', 'reactivated' or 'unchanged'.

    An active ticker is left untouched, so re-adding it notifies nobody."""
    row = await fetch_one(
        conn,
        """INSERT INTO tickers (symbol) VALUES (%s)
           ON CONFLICT (symbol) DO UPDATE SET active = TRUE, updated_at = now()
               WHERE NOT tickers.active
           RETURNING symbol, active, added_at, updated_at, (xmax = 0) AS inserted""",
        [symbol],
    )
    if row is not None:
        return row, "created" if row.pop("inserted") else "reactivated"
    row = await fetch_one(conn, "SELECT * FROM tickers WHERE symbol = %s", [symbol])
    assert row is not None
    return {k: row[k] for k in TICKER_COLUMNS}, "unchanged"


async def deactivate_ticker(conn: Conn, symbol: str) -> Row | None:
    return await fetch_one(
        conn,
        """UPDATE tickers SET active = FALSE,
                  updated_at = CASE WHEN active THEN now() ELSE updated_at END
           WHERE symbol = %s RETURNING symbol, active, added_at, updated_at""",
        [symbol],
    )


async def symbol_known(conn: Conn, symbol: str, tables: Sequence[str]) -> bool:
    """A row in ``tickers``, or any row of the symbol in one of ``tables``."""
    probes: list[sql.Composable] = [sql.SQL("EXISTS (SELECT 1 FROM tickers WHERE symbol = %(s)s)")]
    probes += [
        sql.SQL("EXISTS (SELECT 1 FROM {} WHERE symbol = %(s)s)").format(sql.Identifier(t))
        for t in tables
    ]
    query = sql.SQL("SELECT {} AS known").format(sql.SQL(" OR ").join(probes))
    row = await fetch_one(conn, query, {"s": symbol})
    return bool(row and row["known"])
