"""``tickers``: the symbols the live dataflow follows, and whether a symbol is known."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from psycopg import sql

from api.queries.base import Conn, Row, column_list, fetch, fetch_one, where_equal
from api.queries.latest import probe_table

TICKER_COLUMNS = ("symbol", "active", "added_at", "updated_at", "calendar")
_RETURNING = sql.SQL("RETURNING {}").format(column_list(TICKER_COLUMNS))
Outcome = Literal["created", "updated", "unchanged"]


async def ticker_rows(conn: Conn, active: bool | None) -> list[Row]:
    where, params = where_equal({"active": active})
    query = sql.SQL("SELECT {} FROM tickers WHERE {} ORDER BY symbol").format(
        column_list(TICKER_COLUMNS), where
    )
    return await fetch(conn, query, params)


async def ticker_row(conn: Conn, symbol: str) -> Row | None:
    query = sql.SQL("SELECT {} FROM tickers WHERE symbol = %s").format(column_list(TICKER_COLUMNS))
    return await fetch_one(conn, query, [symbol])


async def activate_ticker(
    conn: Conn, symbol: str, calendar: str | None, default_calendar: str
) -> tuple[Row, Outcome]:
    """Insert (on ``calendar``, else ``default_calendar``) or re-activate, moving it to
    ``calendar`` when one is given; returns the row and 'created', 'updated' or
    'unchanged'.

    A ticker that is already as asked is left untouched, so re-adding it notifies nobody."""
    query = sql.SQL(
        """INSERT INTO tickers (symbol, calendar) VALUES (%(s)s, coalesce(%(c)s, %(d)s))
           ON CONFLICT (symbol) DO UPDATE
               SET active = TRUE, calendar = coalesce(%(c)s, tickers.calendar),
                   updated_at = now()
               WHERE NOT tickers.active OR tickers.calendar <> coalesce(%(c)s, tickers.calendar)
           {}, (xmax = 0) AS inserted"""
    ).format(_RETURNING)
    row = await fetch_one(conn, query, {"s": symbol, "c": calendar, "d": default_calendar})
    if row is not None:
        return row, "created" if row.pop("inserted") else "updated"
    row = await ticker_row(conn, symbol)
    assert row is not None
    return row, "unchanged"


async def update_ticker(
    conn: Conn, symbol: str, calendar: str | None, active: bool | None
) -> Row | None:
    """Set what is given (not None) of a ticker; ``None`` for an unknown symbol. A change
    to nothing new leaves the row (and ``updated_at``) alone and notifies nobody."""
    query = sql.SQL(
        """UPDATE tickers SET calendar = coalesce(%(c)s, calendar),
                  active = coalesce(%(a)s, active), updated_at = now()
           WHERE symbol = %(s)s
             AND (calendar <> coalesce(%(c)s, calendar) OR active <> coalesce(%(a)s, active))
           {}"""
    ).format(_RETURNING)
    row = await fetch_one(conn, query, {"s": symbol, "c": calendar, "a": active})
    return row if row is not None else await ticker_row(conn, symbol)


async def deactivate_ticker(conn: Conn, symbol: str) -> Row | None:
    query = sql.SQL(
        """UPDATE tickers SET active = FALSE,
                  updated_at = CASE WHEN active THEN now() ELSE updated_at END
           WHERE symbol = %s {}"""
    ).format(_RETURNING)
    return await fetch_one(conn, query, [symbol])


async def symbol_known(conn: Conn, symbol: str, tables: Sequence[str]) -> bool:
    """A row in ``tickers``, or any row of the symbol in one of ``tables`` (in its latest
    table if it has one: a probe of a hypertable is planned over all its chunks)."""
    probes: list[sql.Composable] = [sql.SQL("EXISTS (SELECT 1 FROM tickers WHERE symbol = %(s)s)")]
    probes += [
        sql.SQL("EXISTS (SELECT 1 FROM {} WHERE symbol = %(s)s)").format(probe_table(t))
        for t in tables
    ]
    query = sql.SQL("SELECT {} AS known").format(sql.SQL(" OR ").join(probes))
    row = await fetch_one(conn, query, {"s": symbol})
    return bool(row and row["known"])
