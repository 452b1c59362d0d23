"""Market overview: every active ticker at a glance.

Every query starts from the active rows of `tickers` or filters on them, and reads the
hypertables through their ``(symbol, time)`` keys inside ``$__timeFilter``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat, table, timeseries
from grafana_foundation_sdk.models import common as common_models

from grafana.common import (
    color_cells,
    datetime_columns,
    label_columns,
    new_dashboard,
    prop,
    stat_panel,
    table_panel,
    time_series_panel,
    with_panels,
)
from online_models.config import FORECAST_MODEL

UID = "sentinel-market-overview"
TITLE = "Stock Sentinel: market overview"

ACTIVE = "symbol IN (SELECT symbol FROM tickers WHERE active)"
SEVERITY_COLORS = [
    {
        "type": "value",
        "options": {
            "info": {"color": "blue", "index": 0},
            "warning": {"color": "orange", "index": 1},
            "critical": {"color": "red", "index": 2},
        },
    }
]


def tickers_table() -> table.Panel:
    sql = f"""
SELECT t.symbol,
       b.close AS price,
       b.close / d.open - 1 AS return_today,
       m.realized_vol_ann AS realized_vol,
       f.value * m.realized_vol_ann / NULLIF(m.realized_vol, 0) AS forecast_vol,
       m.sharpe,
       coalesce(a.alerts, 0) AS alerts,
       b.time AS last_bar
FROM tickers t
LEFT JOIN LATERAL (
    SELECT time, close FROM bars
    WHERE symbol = t.symbol AND $__timeFilter(time)
    ORDER BY time DESC LIMIT 1
) b ON true
LEFT JOIN LATERAL (
    SELECT open FROM bars
    WHERE symbol = t.symbol
      AND time >= date_trunc('day', b.time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
      AND time <= b.time
    ORDER BY time LIMIT 1
) d ON true
LEFT JOIN LATERAL (
    SELECT realized_vol, realized_vol_ann, sharpe FROM bar_metrics
    WHERE symbol = t.symbol AND $__timeFilter(time) AND realized_vol IS NOT NULL
    ORDER BY time DESC LIMIT 1
) m ON true
LEFT JOIN LATERAL (
    SELECT value FROM forecasts
    WHERE symbol = t.symbol AND model = '{FORECAST_MODEL}' AND target = 'volatility'
      AND horizon = 1
      AND $__timeFilter(time)
    ORDER BY time DESC LIMIT 1
) f ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS alerts FROM alerts
    WHERE symbol = t.symbol AND $__timeFilter(time)
) a ON true
WHERE t.active
ORDER BY t.symbol
"""
    columns = {
        "symbol": ("Symbol", None),
        "price": ("Last price", "currencyUSD"),
        "return_today": ("Return today (UTC day)", "percentunit"),
        "realized_vol": ("Realized vol (ann.)", "percentunit"),
        "forecast_vol": (f"Forecast vol, next bar ({FORECAST_MODEL}, ann.)", "percentunit"),
        "sharpe": ("Sharpe (rolling, ann.)", "none"),
        "alerts": ("Alerts in range", "none"),
        "last_bar": ("Last bar", "dateTimeAsIso"),
    }
    panel = (
        table_panel(
            "Tickers",
            "Every active ticker: last close, return since the first bar of the UTC day, "
            "realized and forecast (har model) volatility annualized, rolling Sharpe ratio "
            "and the number of alerts in the time range.",
            sql,
        )
        .decimals(2)
        .height(8)
        .span(24)
    )
    panel = label_columns(panel, columns)
    return panel.override_by_name("alerts", color_cells((None, "transparent"), (1, "orange")))


def _per_ticker_sql(table: str, column: str) -> str:
    """``column`` of each active ticker's rows of ``table``, per time bucket."""
    return f"""
SELECT $__timeGroupAlias(time, $__interval), symbol AS metric, {column}
FROM {table}
WHERE $__timeFilter(time) AND {ACTIVE}
GROUP BY 1, 2
ORDER BY 1
"""


def price_sparklines() -> stat.Panel:
    return (
        stat_panel(
            "Last price",
            "Last close of each active ticker, with its price over the time range.",
            _per_ticker_sql("bars", "last(close, time) AS close"),
        )
        .unit("currencyUSD")
        .decimals(2)
        .graph_mode(common_models.BigValueGraphMode.AREA)
        .color_mode(common_models.BigValueColorMode.NONE)
        .height(6)
        .span(24)
    )


def volatility_by_ticker() -> timeseries.Panel:
    return (
        time_series_panel(
            "EWMA volatility (annualized)",
            "RiskMetrics EWMA volatility of each active ticker, annualized for its bar length.",
            _per_ticker_sql("bar_metrics", "avg(ewma_vol_ann) AS ewma_vol"),
        )
        .unit("percentunit")
        .height(8)
        .span(12)
    )


def sharpe_by_ticker() -> timeseries.Panel:
    return (
        time_series_panel(
            "Sharpe ratio (rolling, annualized)",
            "Rolling Sharpe ratio of each active ticker, net of the risk-free rate.",
            _per_ticker_sql("bar_metrics", "last(sharpe, time) AS sharpe"),
        )
        .decimals(2)
        .height(8)
        .span(12)
    )


def recent_alerts() -> table.Panel:
    sql = """
SELECT time, symbol, kind, severity, value, threshold, message
FROM alerts
WHERE $__timeFilter(time)
ORDER BY time DESC
LIMIT 200
"""
    panel = table_panel(
        "Alerts",
        "Alerts the dataflow raised: volatility spikes, price jumps, stale feeds.",
        sql,
    )
    return (
        datetime_columns(panel, "time")
        .override_by_name(
            "severity",
            [prop("custom.cellOptions", {"type": "color-text"}), prop("mappings", SEVERITY_COLORS)],
        )
        .height(8)
        .span(12)
    )


def alert_notifications() -> table.Panel:
    sql = """
SELECT received_at AS time, status, rule_uid, title, message
FROM alert_notifications
WHERE $__timeFilter(received_at)
ORDER BY received_at DESC
LIMIT 100
"""
    panel = table_panel(
        "Grafana alert notifications",
        "Notifications Grafana's alert rules sent to the API webhook "
        "(POST /alerts/notifications), as the API stored them.",
        sql,
    )
    return datetime_columns(panel, "time").height(8).span(12)


PANELS = (
    tickers_table,
    price_sparklines,
    volatility_by_ticker,
    sharpe_by_ticker,
    recent_alerts,
    alert_notifications,
)


def build() -> dashboard.Dashboard:
    board = new_dashboard(
        TITLE,
        UID,
        "Every active ticker with its last price, return today, volatility, Sharpe ratio "
        "and alerts.",
    )
    return with_panels(board, PANELS)
