"""The trading day's tables: ``daily_summary`` (one row per symbol per session, written at
its close) and ``session_events`` (the sessions' opens and closes the dataflow saw)."""

from __future__ import annotations

from datetime import date

from psycopg import sql

from api.queries.base import Conn, Row, and_all, column_list, fetch, fetch_one
from api.schemas import Order

SUMMARY_COLUMNS = (
    "session_date",
    "calendar",
    "open_time",
    "close_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trades",
    "bars",
    "realized_vol",
    "realized_vol_ann",
    "sharpe",
    "overnight_return",
    "alerts",
    "model_scores",
)


async def summary_rows(
    conn: Conn, symbol: str, first: date | None, last: date | None, limit: int, order: Order
) -> list[Row]:
    """The symbol's sessions dated ``first`` to ``last`` (both inclusive, either open),
    sorted by date, the first ``limit`` of them (the primary key's index)."""
    where: list[sql.Composable] = [sql.SQL("symbol = %(s)s")]
    if first is not None:
        where.append(sql.SQL("session_date >= %(first)s"))
    if last is not None:
        where.append(sql.SQL("session_date <= %(last)s"))
    query = sql.SQL(
        "SELECT {cols} FROM daily_summary WHERE {where} ORDER BY session_date {dir} LIMIT %(limit)s"
    ).format(
        cols=column_list(SUMMARY_COLUMNS),
        where=and_all(where),
        dir=sql.SQL("ASC" if order == "asc" else "DESC"),
    )
    params = {"s": symbol, "first": first, "last": last, "limit": limit}
    return await fetch(conn, query, params)


async def ticker_calendar(conn: Conn, symbol: str) -> str | None:
    row = await fetch_one(conn, "SELECT calendar FROM tickers WHERE symbol = %s", [symbol])
    return row["calendar"] if row else None


async def last_session_event(conn: Conn, symbol: str) -> Row | None:
    return await fetch_one(
        conn,
        """SELECT time, event, session_date, calendar FROM session_events
           WHERE symbol = %s ORDER BY time DESC LIMIT 1""",
        [symbol],
    )
