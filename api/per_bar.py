"""The body shared by the per-bar series endpoints (``/bars``, ``/metrics/{symbol}``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from api.errors import not_found
from api.params import EARLIEST, SeriesQuery
from api.queries.base import Conn, Row
from api.queries.latest import newest_bar
from api.queries.series import Window
from api.queries.tickers import symbol_known
from sentinel.settings import Settings

SeriesSelect = Callable[[Conn, str, Window], Awaitable[list[Row]]]

# The newest rows without a range are looked for in growing windows ending at the newest
# bar: a query with constant time bounds is planned over the chunks it can touch, not
# over the whole history. The first window holds twice `limit` bars and a week of gaps
# (nights, weekends, holidays); the next one is 64 times longer; after it, the whole
# table (a symbol with fewer rows than `limit`): at most three queries.
_GAPS = timedelta(days=7)
_GROWTH = 64
_WINDOWS = 2


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
    placed from the symbol's newest bar. 404 for a symbol with no ticker and no rows in
    ``table``; 422 for a range asked whole that holds too many."""
    async with pool.connection() as conn:
        if query.interval_s:
            newest = await newest_bar(conn, symbol) if query.end is None else None
            newest_time = newest["time"] if newest else None
            rows = await select(conn, symbol, query.window(newest_time, settings))
        else:
            rows = await _raw_rows(conn, select, symbol, query.window(None, settings))
        if not rows and not await symbol_known(conn, symbol, [table]):
            raise not_found(f"unknown symbol {symbol!r}: no ticker and no {noun}")
    return query.checked(rows, settings)


async def _raw_rows(conn: Conn, select: SeriesSelect, symbol: str, window: Window) -> list[Row]:
    """The window's rows; without a start, newest first, in growing windows from the
    symbol's newest bar."""
    if window.start is not None or window.order != "desc":
        return await select(conn, symbol, window)
    newest = await newest_bar(conn, symbol)
    if newest is None:
        return []
    end = window.end or newest["time"] + timedelta(microseconds=1)
    span = timedelta(seconds=2 * window.limit * newest["bar_seconds"]) + _GAPS
    for _ in range(_WINDOWS):
        start = end - span if end - EARLIEST > span else EARLIEST
        rows = await select(conn, symbol, replace(window, start=start, end=end))
        if len(rows) >= window.limit:
            return rows
        span *= _GROWTH
    return await select(conn, symbol, window)
