"""The API's queries. Each one is bounded by an index and a LIMIT, or by a time range.

Every table's primary key starts with ``symbol`` and ends with ``time``, so "the newest
row of a symbol" is one index probe (``ORDER BY time DESC LIMIT 1``), and "the newest row
of each model of a symbol" is a loose index scan: a recursive CTE that hops from one key
to the next through the primary key, then one probe per key. Nothing here scans raw
ticks over a range.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from api.notifications import NotificationRow

Row = dict[str, Any]
Query = str | bytes | sql.SQL | sql.Composed
Conn = AsyncConnection[Any]

INTERNAL_MODELS = ("_shared", "_pipeline")

BAR_COLUMNS = ("time", "open", "high", "low", "close", "volume", "vwap", "trades", "bar_seconds")
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
FORECAST_COLUMNS = ("model", "target", "horizon", "time", "value", "lower", "upper", "made_at")
ALERT_COLUMNS = ("time", "symbol", "kind", "severity", "value", "threshold", "message")
TICKER_COLUMNS = ("symbol", "active", "added_at", "updated_at")
NOTIFICATION_COLUMNS = ("id", "received_at", "status", "rule_uid", "title", "message", "payload")

# Re-bucketed bars: OHLCV re-aggregated (first open, max high, min low, last close, summed
# volume and trades, volume-weighted VWAP over the bars that have one).
_BUCKETED_BARS = """
    time_bucket(make_interval(secs => %(interval_s)s), time) AS time,
    first(open, time) AS open, max(high) AS high, min(low) AS low,
    last(close, time) AS close, sum(volume) AS volume,
    sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL)
        / NULLIF(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vwap,
    sum(trades)::bigint AS trades, %(interval_s)s::integer AS bar_seconds
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


@dataclass(frozen=True)
class Window:
    """Which rows of a series: ``start <= time < end``, sorted by ``order``, the first
    ``limit`` of them; ``interval_s`` re-buckets them with ``time_bucket``."""

    start: datetime | None
    end: datetime | None
    limit: int
    order: Literal["asc", "desc"] = "desc"
    interval_s: int | None = None


async def fetch(conn: Conn, query: Query, params: Any = None) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def fetch_one(conn: Conn, query: Query, params: Any = None) -> Row | None:
    rows = await fetch(conn, query, params)
    return rows[0] if rows else None


def _columns(names: Sequence[str], prefix: str | None = None) -> sql.Composable:
    if prefix:
        return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _conditions(filters: Mapping[str, Any]) -> tuple[sql.Composable, dict[str, Any]]:
    """``col = %(f_col)s AND ...`` for the filters that are not None."""
    parts, params = [], {}
    for col, value in filters.items():
        if value is not None:
            parts.append(
                sql.SQL("{} = {}").format(sql.Identifier(col), sql.Placeholder(f"f_{col}"))
            )
            params[f"f_{col}"] = value
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE"), params


# -- generic series ------------------------------------------------------------------------


LATEST_LOOKBACK = timedelta(days=31)


async def newest_time(conn: Conn, table: str, symbol: str) -> datetime | None:
    query = sql.SQL("SELECT time FROM {} WHERE symbol = %s ORDER BY time DESC LIMIT 1").format(
        sql.Identifier(table)
    )
    row = await fetch_one(conn, query, [symbol])
    return row["time"] if row else None


async def symbol_known(conn: Conn, symbol: str, tables: Sequence[str]) -> bool:
    """A row in ``tickers``, or any row of the symbol in one of ``tables``."""
    probes: list[sql.Composable] = [sql.SQL("EXISTS (SELECT 1 FROM tickers WHERE symbol = %(s)s)")]
    probes += [
        sql.SQL("EXISTS (SELECT 1 FROM {} WHERE symbol = %(s)s)").format(sql.Identifier(t))
        for t in tables
    ]
    row = await fetch_one(
        conn, sql.SQL("SELECT {} AS known").format(sql.SQL(" OR ").join(probes)), {"s": symbol}
    )
    return bool(row and row["known"])


async def series(
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
    where, params = _conditions({"symbol": symbol, **(filters or {})})
    bounds = []
    if window.start is not None:
        bounds.append(sql.SQL("time >= %(start)s"))
    if window.end is not None:
        bounds.append(sql.SQL("time < %(end)s"))
    where = sql.SQL(" AND ").join([where, *bounds])
    params |= {"start": window.start, "end": window.end, "limit": window.limit}
    direction = sql.SQL("ASC" if window.order == "asc" else "DESC")
    if bucketed is not None:
        params["interval_s"] = window.interval_s
        query = sql.SQL(
            "SELECT {sel} FROM {t} WHERE {where} GROUP BY 1 ORDER BY 1 {dir} LIMIT %(limit)s"
        ).format(sel=sql.SQL(bucketed), t=sql.Identifier(table), where=where, dir=direction)
    else:
        query = sql.SQL(
            "SELECT {cols} FROM {t} WHERE {where} ORDER BY time {dir} LIMIT %(limit)s"
        ).format(cols=_columns(columns), t=sql.Identifier(table), where=where, dir=direction)
    return await fetch(conn, query, params)


async def bars(conn: Conn, symbol: str, window: Window) -> list[Row]:
    bucketed = _BUCKETED_BARS if window.interval_s else None
    return await series(conn, "bars", BAR_COLUMNS, symbol, window, bucketed=bucketed)


async def bar_metrics(conn: Conn, symbol: str, window: Window) -> list[Row]:
    bucketed = _BUCKETED_METRICS if window.interval_s else None
    return await series(conn, "bar_metrics", METRIC_COLUMNS, symbol, window, bucketed=bucketed)


# -- newest row per key ----------------------------------------------------------------------


async def latest_per_key(
    conn: Conn,
    table: str,
    keys: Sequence[str],
    columns: Sequence[str],
    filters: Mapping[str, Any],
) -> list[Row]:
    """The newest row (by ``time``) of each distinct ``keys`` value among the rows that
    match ``filters``; a loose index scan over a primary key ``(symbol, *keys, time)``.

    Each probe of a loose index scan visits every chunk of the hypertable, so the scan is
    confined to the ``LATEST_LOOKBACK`` before the symbol's newest row (found first by
    one ordered probe): a couple of chunks, however long the history. A key with no row
    in that window is no longer current and is left out."""
    newest = await newest_time(conn, table, filters["symbol"])
    if newest is None:
        return []
    given = {k: v for k, v in filters.items() if v is not None}
    query = _latest_per_key_sql(table, tuple(keys), tuple(columns), tuple(given))
    params = {f"f_{k}": v for k, v in given.items()}
    return await fetch(conn, query, params | {"since": newest - LATEST_LOOKBACK})


@functools.lru_cache(maxsize=256)
def _latest_per_key_sql(
    table: str, keys: tuple[str, ...], columns: tuple[str, ...], filter_names: tuple[str, ...]
) -> bytes:
    """Composed once per shape: the endpoints that use it are the hot ones."""
    where, _ = _conditions(dict.fromkeys(filter_names, True))
    where = sql.SQL("{} AND time >= %(since)s").format(where)
    key_list = _columns(keys)
    after = sql.SQL("({}) > ({})").format(key_list, _columns(keys, "k"))
    same = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Identifier("k", key)) for key in keys
    )
    query = sql.SQL(
        """WITH RECURSIVE k AS (
               (SELECT {keys} FROM {t} WHERE {where} ORDER BY {keys} LIMIT 1)
               UNION ALL
               SELECT n.* FROM k CROSS JOIN LATERAL (
                   SELECT {keys} FROM {t} WHERE {where} AND {after} ORDER BY {keys} LIMIT 1
               ) n
           )
           SELECT r.* FROM k CROSS JOIN LATERAL (
               SELECT {cols} FROM {t} WHERE {where} AND {same} ORDER BY time DESC LIMIT 1
           ) r"""
    ).format(
        keys=key_list,
        t=sql.Identifier(table),
        where=where,
        after=after,
        same=same,
        cols=_columns(columns),
    )
    return query.as_bytes(None)


async def latest_forecasts(
    conn: Conn,
    symbol: str,
    model: str | None = None,
    target: str | None = None,
    horizon: int | None = None,
) -> list[Row]:
    filters = {"symbol": symbol, "model": model, "target": target, "horizon": horizon}
    rows = await latest_per_key(
        conn, "forecasts", ("model", "target", "horizon"), FORECAST_COLUMNS, filters
    )
    return sorted(rows, key=lambda r: (r["model"], r["target"], r["horizon"]))


async def latest_scores(conn: Conn, symbol: str, model: str | None = None) -> list[Row]:
    filters = {"symbol": symbol, "model": model}
    return await latest_per_key(
        conn,
        "model_scores",
        ("model", "target", "metric"),
        ("model", "target", "metric", "value", "time"),
        filters,
    )


async def latest_checkpoints(conn: Conn, symbol: str, model: str | None = None) -> list[Row]:
    filters = {"symbol": symbol, "model": model}
    rows = await latest_per_key(
        conn, "model_checkpoints", ("model",), ("model", "time", "version", "bars_seen"), filters
    )
    return [r for r in rows if r["model"] not in INTERNAL_MODELS]


async def forecast_history(
    conn: Conn,
    symbol: str,
    window: Window,
    model: str | None,
    target: str | None,
    horizon: int | None,
) -> list[Row]:
    filters = {"model": model, "target": target, "horizon": horizon}
    return await series(conn, "forecasts", FORECAST_COLUMNS, symbol, window, filters=filters)


# -- tickers -------------------------------------------------------------------------------


async def list_tickers(conn: Conn, active: bool | None) -> list[Row]:
    where, params = _conditions({"active": active})
    query = sql.SQL("SELECT {} FROM tickers WHERE {} ORDER BY symbol").format(
        _columns(TICKER_COLUMNS), where
    )
    return await fetch(conn, query, params)


async def add_ticker(conn: Conn, symbol: str) -> tuple[Row, str]:
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


# -- health and pipeline status ------------------------------------------------------------------


async def server_info(conn: Conn) -> Row:
    row = await fetch_one(
        conn,
        """SELECT current_setting('server_version') AS server_version,
                  (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')
                      AS timescaledb_version,
                  current_setting('timescaledb.license', true) AS timescaledb_license""",
    )
    assert row is not None
    return row


async def feeds(conn: Conn) -> list[Row]:
    return await fetch(
        conn,
        """SELECT source, url, connected, subscribed, last_message_at, reconnects, last_error,
                  updated_at FROM feed_status ORDER BY source""",
    )


async def symbol_progress(conn: Conn) -> list[Row]:
    """Per ticker: the newest tick and bar, one index probe each (no scan of ticks)."""
    return await fetch(
        conn,
        """SELECT t.symbol, t.active, lt.time AS last_tick, lb.time AS last_bar,
                  lb.bar_seconds
           FROM tickers t
           LEFT JOIN LATERAL (SELECT time FROM ticks WHERE symbol = t.symbol
                              ORDER BY time DESC LIMIT 1) lt ON TRUE
           LEFT JOIN LATERAL (SELECT time, bar_seconds FROM bars WHERE symbol = t.symbol
                              ORDER BY time DESC LIMIT 1) lb ON TRUE
           ORDER BY t.symbol""",
    )


async def sink_status(conn: Conn) -> list[Row]:
    return await fetch(
        conn,
        """SELECT table_name, worker, rows_written, rows_skipped, rows_failed, retries,
                  updated_at
           FROM sink_status ORDER BY table_name, worker""",
    )


async def rejects_by_reason(conn: Conn, since: datetime) -> list[Row]:
    return await fetch(
        conn,
        """SELECT reason, count(*) AS n FROM ticks_rejected WHERE received_at >= %s
           GROUP BY reason ORDER BY reason""",
        [since],
    )


# -- alerts and Grafana notifications ---------------------------------------------------------


async def alerts(
    conn: Conn,
    *,
    symbol: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[Row]:
    where, params = _conditions({"symbol": symbol, "kind": kind, "severity": severity})
    parts = [where]
    if since is not None:
        parts.append(sql.SQL("time >= %(since)s"))
    if until is not None:
        parts.append(sql.SQL("time < %(until)s"))
    params |= {"since": since, "until": until, "limit": limit}
    query = sql.SQL(
        "SELECT {} FROM alerts WHERE {} ORDER BY time DESC, symbol, kind LIMIT %(limit)s"
    ).format(_columns(ALERT_COLUMNS), sql.SQL(" AND ").join(parts))
    return await fetch(conn, query, params)


async def store_notifications(conn: Conn, rows: Sequence[NotificationRow]) -> list[int]:
    ids = []
    async with conn.transaction():
        for row in rows:
            got = await fetch_one(
                conn,
                """INSERT INTO alert_notifications (status, rule_uid, title, message, payload)
                   VALUES (%s, %s, %s, %s, %s::jsonb) RETURNING id""",
                [row.status, row.rule_uid, row.title, row.message, json.dumps(row.payload)],
            )
            assert got is not None
            ids.append(int(got["id"]))
    return ids


async def notifications(
    conn: Conn, *, status: str | None, since: datetime | None, limit: int
) -> list[Row]:
    where, params = _conditions({"status": status})
    parts = [where]
    if since is not None:
        parts.append(sql.SQL("received_at >= %(since)s"))
    params |= {"since": since, "limit": limit}
    query = sql.SQL(
        "SELECT {} FROM alert_notifications WHERE {} ORDER BY received_at DESC, id DESC "
        "LIMIT %(limit)s"
    ).format(_columns(NOTIFICATION_COLUMNS), sql.SQL(" AND ").join(parts))
    return await fetch(conn, query, params)
