"""Rows of one symbol in a time window, stored or re-bucketed with ``time_bucket``:
``bars`` and ``bar_metrics`` (and the history of ``forecasts``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg import sql

from api.queries.base import Conn, Row, and_all, column_list, fetch, time_bounds, where_equal

BAR_COLUMNS = (
    "time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trades",
    "bar_seconds",
    "revision",
)
METRIC_COLUMNS = (
    "time",
    "log_return",
    "realized_vol",
    "ewma_vol",
    "realized_vol_ann",
    "ewma_vol_ann",
    "sharpe",
    "bars_seen",
)

# Re-bucketed bars: OHLCV re-aggregated (first open, max high, min low, last close, of
# the bars that have prices; summed volume and trades, volume-weighted VWAP over the bars
# that have one; the highest revision).
_BUCKETED_BARS = """
    time_bucket(make_interval(secs => %(interval_s)s), time) AS time,
    first(open, time) FILTER (WHERE open IS NOT NULL) AS open,
    max(high) AS high, min(low) AS low,
    last(close, time) FILTER (WHERE close IS NOT NULL) AS close, sum(volume) AS volume,
    sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL)
        / NULLIF(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vwap,
    sum(trades)::bigint AS trades, %(interval_s)s::integer AS bar_seconds,
    max(coalesce(revision, 0)) AS revision
"""
# Re-bucketed metrics: log returns add up over a bucket; volatilities, Sharpe ratio and
# the bar count are states "as of" a bar, so a bucket shows its last bar's values.
_BUCKETED_METRICS = """
    time_bucket(make_interval(secs => %(interval_s)s), time) AS time,
    sum(log_return) AS log_return, last(realized_vol, time) AS realized_vol,
    last(ewma_vol, time) AS ewma_vol, last(realized_vol_ann, time) AS realized_vol_ann,
    last(ewma_vol_ann, time) AS ewma_vol_ann, last(sharpe, time) AS sharpe,
    last(bars_seen, time) AS bars_seen
"""
_SET = datetime.max.replace(tzinfo=UTC)  # a bound that is given, when composing the text
_RAW = "SELECT {cols} FROM {t} WHERE {where} ORDER BY time {dir} LIMIT %(limit)s"
_BUCKETED = "SELECT {cols} FROM {t} WHERE {where} GROUP BY 1 ORDER BY 1 {dir} LIMIT %(limit)s"


@dataclass(frozen=True)
class Window:
    """Which rows of a series: ``start <= time < end``, sorted by ``order``, the first
    ``limit`` of them; ``interval_s`` re-buckets them with ``time_bucket``."""

    start: datetime | None
    end: datetime | None
    limit: int
    order: Literal["asc", "desc"] = "desc"
    interval_s: int | None = None


async def series_rows(
    conn: Conn,
    table: str,
    columns: Sequence[str],
    symbol: str,
    window: Window,
    *,
    bucketed: str | None = None,
    filters: Mapping[str, Any] | None = None,
) -> list[Row]:
    """Rows of one symbol in a window, raw or (``bucketed`` select list) re-bucketed."""
    given = {k: v for k, v in (filters or {}).items() if v is not None}
    query = _series_sql(
        table,
        tuple(columns),
        bucketed,
        tuple(given),
        window.start is not None,
        window.end is not None,
        window.order,
    )
    params = {f"f_{k}": v for k, v in given.items()} | {"f_symbol": symbol}
    params |= {"start": window.start, "end": window.end, "limit": window.limit}
    if bucketed is not None:
        params["interval_s"] = window.interval_s
    return await fetch(conn, query, params)


@functools.lru_cache(maxsize=256)
def _series_sql(
    table: str,
    columns: tuple[str, ...],
    bucketed: str | None,
    filter_names: tuple[str, ...],
    has_start: bool,
    has_end: bool,
    order: str,
) -> bytes:
    """Composed once per shape (the same text each time: the connection's prepared
    statement serves it)."""
    where, _ = where_equal(dict.fromkeys(("symbol", *filter_names), True))
    bounds, _ = time_bounds(
        "time", _SET if has_start else None, _SET if has_end else None, ("start", "end")
    )
    query = sql.SQL(_RAW if bucketed is None else _BUCKETED).format(
        cols=column_list(columns) if bucketed is None else sql.SQL(bucketed),
        t=sql.Identifier(table),
        where=and_all([where, *bounds]),
        dir=sql.SQL("ASC" if order == "asc" else "DESC"),
    )
    return query.as_bytes(None)


async def bar_rows(conn: Conn, symbol: str, window: Window) -> list[Row]:
    bucketed = _BUCKETED_BARS if window.interval_s else None
    return await series_rows(conn, "bars", BAR_COLUMNS, symbol, window, bucketed=bucketed)


async def metric_rows(conn: Conn, symbol: str, window: Window) -> list[Row]:
    bucketed = _BUCKETED_METRICS if window.interval_s else None
    return await series_rows(conn, "bar_metrics", METRIC_COLUMNS, symbol, window, bucketed=bucketed)
