"""The body shared by the per-bar series endpoints (``/bars``, ``/metrics/{symbol}``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from api.errors import not_found
from api.params import SeriesQuery
from api.queries.base import Conn, Row
from api.queries.latest import newest_time
from api.queries.series import Window
from api.queries.tickers import symbol_known
from sentinel.settings import Settings

SeriesSelect = Callable[[Conn, str, Window], Awaitable[list[Row]]]


async def per_bar_rows(
    pool: AsyncConnectionPool[Any],
    settings: Settings,
    table: str,
    select: SeriesSelect,
    symbol: str,
    query: SeriesQuery,
    noun: str,
) -> list[Row]:
    """``select``'s rows of ``symbol`` for ``query``; a re-bucketed range without an end is
    placed from the symbol's newest row in ``table``. 404 for a symbol with no ticker and
    no rows there."""
    async with pool.connection() as conn:
        newest = await newest_time(conn, table, symbol) if query.interval_s else None
        rows = await select(conn, symbol, query.window(newest, settings))
        if not rows and not await symbol_known(conn, symbol, [table]):
            raise not_found(f"unknown symbol {symbol!r}: no ticker and no {noun}")
    return rows
