"""Pipeline health: throughput, dead letters, lag and the sinks.

Rates come from `bars` (each bar counts its trades), never from scanning `ticks` over the
time range: raw ticks are read only for the last minute, through their primary key.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, stat, table, timeseries
from grafana_foundation_sdk.models import common as common_models

from grafana.common import (
    color_cells,
    datetime_columns,
    new_dashboard,
    prop,
    stat_panel,
    symbol_variable,
    table_panel,
    thresholds,
    time_series_panel,
    with_panels,
)

UID = "sentinel-pipeline-health"
TITLE = "Stock Sentinel: pipeline health"

SYMBOLS = "symbol IN (${symbol:sqlstring})"
# A bucket is never shorter than the bars it counts (a 5 s bar in a 1 s bucket would
# read as five times its rate).
BUCKET_S = "greatest($__interval_ms / 1000.0, max(bar_seconds))"


def _rate_per_symbol(rate: str) -> str:
    """``rate`` of each selected symbol's bars, per time bucket."""
    return f"""
SELECT $__timeGroupAlias(time, $__interval), symbol AS metric,
       {rate}
FROM bars
WHERE $__timeFilter(time) AND {SYMBOLS}
GROUP BY 1, 2
ORDER BY 1
"""


def _stacked_counts(title: str, description: str, sql: str) -> timeseries.Panel:
    """Counts per bucket of ``sql``, drawn as stacked bars."""
    return (
        time_series_panel(title, description, sql)
        .draw_style(common_models.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builders.StackingConfig().mode(common_models.StackingMode.NORMAL))
        .height(8)
        .span(12)
    )


def _last_value_stat(title: str, description: str, sql: str) -> stat.Panel:
    """Each symbol's last value of ``sql``, to one decimal, with no graph."""
    return (
        stat_panel(title, description, sql)
        .decimals(1)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .height(5)
        .span(12)
    )


def ticks_per_second() -> timeseries.Panel:
    return (
        time_series_panel(
            "Ticks/s per symbol",
            "Trades per second that went into bars, per symbol.",
            _rate_per_symbol(f"sum(trades) / {BUCKET_S} AS ticks_per_s"),
        )
        .unit("reqps")
        .height(8)
        .span(12)
    )


def bars_per_second() -> timeseries.Panel:
    return (
        time_series_panel(
            "Bars/s per symbol",
            "Bars written per second, per symbol (one per bar length while it trades).",
            _rate_per_symbol(f"count(*) / {BUCKET_S} AS bars_per_s"),
        )
        .unit("reqps")
        .decimals(3)
        .height(8)
        .span(12)
    )


def ticks_last_minute() -> stat.Panel:
    sql = f"""
SELECT $__timeTo()::timestamptz AS time, symbol AS metric, count(*) / 60.0 AS ticks_per_s
FROM ticks
WHERE $__timeFilter(time) AND time > $__timeTo()::timestamptz - interval '1 minute'
  AND {SYMBOLS}
GROUP BY symbol
ORDER BY 1
"""
    return _last_value_stat(
        "Ticks/s, last minute",
        "Raw trades stored in the last minute of the range, per second.",
        sql,
    ).unit("reqps")


def feed_lag() -> stat.Panel:
    sql = """
SELECT $__timeTo()::timestamptz AS time, t.symbol AS metric,
       extract(epoch FROM $__timeTo()::timestamptz
                          - (b.time + b.bar_seconds * interval '1 second')) AS lag_s
FROM tickers t
CROSS JOIN LATERAL (
    SELECT time, bar_seconds FROM bars
    WHERE symbol = t.symbol AND $__timeFilter(time)
    ORDER BY time DESC LIMIT 1
) b
WHERE t.active AND t.symbol IN (${symbol:sqlstring})
ORDER BY 1
"""
    return (
        _last_value_stat(
            "Feed lag: seconds since the newest bar closed",
            "How far each active ticker's newest bar lags the end of the range. A bar is "
            "written one late allowance after it closes, so a healthy live feed stays "
            "within a bar length plus the allowance.",
            sql,
        )
        .unit("s")
        .color_mode(common_models.BigValueColorMode.BACKGROUND)
        .thresholds(thresholds((None, "green"), (30.0, "orange"), (120.0, "red")))
    )


def rejects_by_reason() -> timeseries.Panel:
    sql = """
SELECT $__timeGroupAlias(received_at, $__interval), reason AS metric, count(*) AS rejects
FROM ticks_rejected
WHERE $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY 1
"""
    return _stacked_counts(
        "Rejected ticks by reason",
        "Messages and trades the parser refused (ticks_rejected), by reason, per bucket.",
        sql,
    )


def late_ticks() -> timeseries.Panel:
    sql = """
SELECT $__timeGroupAlias(received_at, $__interval), coalesce(symbol, '?') AS metric,
       count(*) AS late_ticks
FROM ticks_rejected
WHERE $__timeFilter(received_at) AND reason = 'late'
GROUP BY 1, 2
ORDER BY 1
"""
    return _stacked_counts(
        "Late ticks by symbol",
        "Trades whose bar closed longer ago than the revision window "
        "(SENTINEL_REVISION_WINDOW_S): stored in ticks, left out of bars.",
        sql,
    )


def feed_status() -> table.Panel:
    sql = """
SELECT source, connected, url, cardinality(subscribed) AS subscribed,
       extract(epoch FROM $__timeTo()::timestamptz - last_message_at) AS since_last_message_s,
       reconnects, silent_reconnects, backfilled_trades, last_backfill_at, last_backfill,
       last_error, updated_at
FROM feed_status
WHERE $__timeFilter(updated_at)
ORDER BY source
"""
    panel = table_panel(
        "Feed connection",
        "The live feed's state as the feed last reported it (feed_status): reconnects, "
        "those after a silence, and the trades fetched to fill the gaps.",
        sql,
    ).override_by_name(
        "since_last_message_s", [prop("unit", "s"), prop("displayName", "Since last message")]
    )
    return datetime_columns(panel, "last_backfill_at", "updated_at").height(6).span(12)


def sink_status() -> table.Panel:
    sql = """
SELECT table_name, worker, rows_written, rows_skipped, retries, last_error, updated_at
FROM sink_status
WHERE $__timeFilter(updated_at)
ORDER BY (last_error IS NULL), retries DESC, table_name, worker
"""
    panel = table_panel(
        "Sinks: rows, retries and errors",
        "Each TimescaleDB sink partition's counters (sink_status). Retries count failed "
        "attempts; last_error is the latest failure, if any.",
        sql,
    ).override_by_name("retries", color_cells((None, "transparent"), (1, "red")))
    return datetime_columns(panel, "updated_at").height(6).span(12)


PANELS = (
    ticks_per_second,
    bars_per_second,
    ticks_last_minute,
    feed_lag,
    rejects_by_reason,
    late_ticks,
    feed_status,
    sink_status,
)


def build() -> dashboard.Dashboard:
    board = new_dashboard(
        TITLE,
        UID,
        "Throughput per symbol, rejected and late ticks, feed lag and connection, sinks.",
    ).with_variable(symbol_variable(multi=True))
    return with_panels(board, PANELS)
