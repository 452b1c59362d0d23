"""The body shared by the per-bar series endpoints (``/bars``, ``/metrics/{symbol}``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from api import db
from api.errors import not_found
from api.params import SeriesQuery
from sentinel.settings import Settings

Fetch = Callable[[db.Conn, str, db.Window], Awaitable[list[db.Row]]]


async def fetch_series(
    pool: AsyncConnectionPool[Any],
    settings: Settings,
    table: str,
    fetch: Fetch,
    symbol: str,
    query: SeriesQuery,
    noun: str,
) -> list[db.Row]:
    """``fetch``'s rows of ``symbol`` for ``query``; a re-bucketed range without an end is
    placed from the symbol's newest row in ``table``. 404 for a symbol with no ticker and
    no rows there."""
    async with pool.connection() as conn:
        newest = await db.newest_time(conn, table, symbol) if query.interval_s else None
        rows = await fetch(conn, symbol, query.window(newest, settings))
        if not rows and not await db.symbol_known(conn, symbol, [table]):
            raise not_found(f"unknown symbol {symbol!r}: no ticker and no {noun}")
    return rows
