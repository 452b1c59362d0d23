"""Symbol detail: one ticker (``$symbol``) in bars of ``$interval``.

Bars are re-aggregated with ``time_bucket`` (TimescaleDB's ``first``/``last`` give the
open and close), so any ``$interval`` at least as long as the pipeline's bar works.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import candlestick, dashboard, table, timeseries
from grafana_foundation_sdk.models import candlestick as candlestick_models
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

from grafana.common import (
    Sql,
    SqlAnnotation,
    color_cells,
    datasource,
    datetime_columns,
    label_columns,
    new_dashboard,
    prop,
    shade_between,
    sql_panel,
    symbol_variable,
    table_panel,
    time_series_panel,
    with_panels,
)
from online_models.config import BAND_MODELS, FORECAST_MODEL

UID = "sentinel-symbol-detail"
TITLE = "Stock Sentinel: symbol detail"

SYMBOL = "${symbol:sqlstring}"
INTERVALS = ("5s", "15s", "1m", "5m", "15m", "1h", "1d")
DEFAULT_INTERVAL = "1m"


def _interval_option(interval: str) -> dashboard_models.VariableOption:
    selected = interval == DEFAULT_INTERVAL
    return dashboard_models.VariableOption(selected=selected, text=interval, value=interval)


def interval_variable() -> dashboard.IntervalVariable:
    return (
        dashboard.IntervalVariable("interval")
        .label("Interval")
        .values(",".join(INTERVALS))
        .current(_interval_option(DEFAULT_INTERVAL))
        .options([_interval_option(i) for i in INTERVALS])
    )


def alerts_annotation() -> dashboard.AnnotationQuery:
    sql = f"""
SELECT time, kind || ' (' || severity || '): ' || message AS text, kind AS tags
FROM alerts
WHERE symbol = {SYMBOL} AND $__timeFilter(time)
ORDER BY time
"""
    return (
        dashboard.AnnotationQuery()
        .name("Alerts")
        .datasource(datasource())
        .enable(True)
        .icon_color("red")
        .target(SqlAnnotation(sql))
    )


def _bar_metric_sql(column: str) -> str:
    """``column`` of the symbol's bar metrics, per ``$interval`` bucket."""
    return f"""
SELECT $__timeGroupAlias(time, $interval), {column}
FROM bar_metrics
WHERE symbol = {SYMBOL} AND $__timeFilter(time)
GROUP BY 1
ORDER BY 1
"""


def _against_band(
    title: str, description: str, sqls: tuple[str, str], band: tuple[str, str]
) -> timeseries.Panel:
    """Series (query A) against a forecast (query B) with its band ``(upper, lower)`` shaded."""
    panel = time_series_panel(title, description, *sqls).unit("percentunit").height(8).span(12)
    return shade_between(panel, *band)


def candles() -> candlestick.Panel:
    sql = f"""
SELECT $__timeGroupAlias(time, $interval),
       first(open, time) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, time) AS close,
       sum(volume) AS volume
FROM bars
WHERE symbol = {SYMBOL} AND $__timeFilter(time)
GROUP BY 1
ORDER BY 1
"""
    return (
        sql_panel(
            candlestick.Panel(),
            "$symbol: price and volume",
            "OHLC candles and volume, the pipeline's bars re-aggregated to $interval.",
            Sql(sql).table(),
        )
        .mode(candlestick_models.VizDisplayMode.CANDLES_VOLUME)
        .candle_style(candlestick_models.CandleStyle.CANDLES)
        .color_strategy(candlestick_models.ColorStrategy.OPEN_CLOSE)
        .fields(
            candlestick.CandlestickFieldMap()
            .open("open")
            .high("high")
            .low("low")
            .close("close")
            .volume("volume")
        )
        .colors(candlestick.CandlestickColors().up("green").down("red").flat("gray"))
        .include_all_fields(False)
        .unit("currencyUSD")
        .override_by_name("volume", [prop("unit", "short")])
        .height(10)
        .span(24)
    )


def returns() -> timeseries.Panel:
    sql = _bar_metric_sql("sum(log_return) AS log_return")
    return (
        time_series_panel("$symbol: log returns", "Log return of each $interval bucket.", sql)
        .draw_style(common_models.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .unit("percentunit")
        .height(8)
        .span(12)
    )


def volatility() -> timeseries.Panel:
    realized = f"""
SELECT $__timeGroupAlias(time, $interval),
       avg(realized_vol_ann) AS realized,
       avg(ewma_vol_ann) AS ewma
FROM bar_metrics
WHERE symbol = {SYMBOL} AND $__timeFilter(time)
GROUP BY 1
ORDER BY 1
"""
    # Forecasts are per-bar standard deviations; the bar metrics' own annualization
    # factor (realized_vol_ann / realized_vol) puts them on the same scale.
    band = ", ".join(f"'{m}'" for m in BAND_MODELS)
    forecast = f"""
SELECT $__timeGroupAlias(f.time, $interval),
       avg(f.value) FILTER (WHERE f.model = '{FORECAST_MODEL}') * s.scale
         AS "forecast ({FORECAST_MODEL})",
       min(f.value) * s.scale AS "forecast range low",
       max(f.value) * s.scale AS "forecast range high"
FROM forecasts f,
     (SELECT realized_vol_ann / realized_vol AS scale
      FROM bar_metrics
      WHERE symbol = {SYMBOL} AND $__timeFilter(time) AND realized_vol > 0
      ORDER BY time DESC LIMIT 1) s
WHERE f.symbol = {SYMBOL} AND f.target = 'volatility' AND f.horizon = 1
  AND f.model IN ({band}) AND $__timeFilter(f.time)
GROUP BY 1, s.scale
ORDER BY 1
"""
    panel = _against_band(
        "$symbol: realized vs forecast volatility (annualized)",
        f"Realized (rolling window) and EWMA volatility against the {FORECAST_MODEL} model's "
        f"next-bar forecast; the band spans the {', '.join(BAND_MODELS)} forecasts.",
        (realized, forecast),
        ("forecast range high", "forecast range low"),
    )
    return panel.override_by_name(f"forecast ({FORECAST_MODEL})", [prop("custom.lineWidth", 2)])


def sharpe() -> timeseries.Panel:
    sql = _bar_metric_sql("last(sharpe, time) AS sharpe")
    return (
        time_series_panel("$symbol: Sharpe ratio", "Rolling Sharpe ratio, annualized.", sql)
        .decimals(2)
        .height(8)
        .span(12)
    )


def forecast_vs_actual_returns() -> timeseries.Panel:
    actual = f"""
SELECT time, log_return AS actual
FROM bar_metrics
WHERE symbol = {SYMBOL} AND $__timeFilter(time) AND log_return IS NOT NULL
ORDER BY time
"""
    forecast = f"""
SELECT time, value AS "forecast (linear)", lower AS "90% lower", upper AS "90% upper"
FROM forecasts
WHERE symbol = {SYMBOL} AND model = 'linear' AND target = 'return' AND horizon = 1
  AND $__timeFilter(time)
ORDER BY time
"""
    panel = _against_band(
        "$symbol: forecast vs actual returns (per bar)",
        "Each bar's log return against the linear model's forecast for it and its 90% "
        f"interval (the {FORECAST_MODEL} volatility forecast times 1.645).",
        (actual, forecast),
        ("90% upper", "90% lower"),
    )
    points = [
        prop("custom.drawStyle", "points"),
        prop("custom.pointSize", 3),
        prop("custom.showPoints", "always"),
    ]
    return panel.override_by_name("actual", points)


def symbol_alerts() -> table.Panel:
    sql = f"""
SELECT time, kind, severity, value, threshold, message
FROM alerts
WHERE symbol = {SYMBOL} AND $__timeFilter(time)
ORDER BY time DESC
LIMIT 100
"""
    panel = table_panel(
        "$symbol: alerts", "The alerts also drawn as annotations on the time series.", sql
    )
    return datetime_columns(panel, "time").height(8).span(24)


# The daily table's own time range: sessions closing in the last 30 days, whatever the
# dashboard's (an hour by default) shows.
DAILY_RANGE = "30d"


def daily_summary() -> table.Panel:
    sql = f"""
SELECT session_date::text AS session,
       close_time,
       open, high, low, close,
       close / NULLIF(open, 0) - 1 AS day_return,
       overnight_return,
       volume, vwap, trades,
       realized_vol_ann,
       sharpe,
       (SELECT coalesce(sum(n::integer), 0) FROM jsonb_each_text(alerts) AS a(kind, n))
           AS alerts
FROM daily_summary
WHERE symbol = {SYMBOL} AND $__timeFilter(close_time)
ORDER BY session_date DESC
LIMIT 60
"""
    columns = {
        "session": ("Session", None),
        "close_time": ("Close", "dateTimeAsIso"),
        "open": ("Open", "currencyUSD"),
        "high": ("High", "currencyUSD"),
        "low": ("Low", "currencyUSD"),
        "close": ("Close price", "currencyUSD"),
        "day_return": ("Day (close/open)", "percentunit"),
        "overnight_return": ("Overnight (log)", "percentunit"),
        "volume": ("Volume", "short"),
        "vwap": ("VWAP", "currencyUSD"),
        "trades": ("Trades", "short"),
        "realized_vol_ann": ("Realized vol (ann.)", "percentunit"),
        "sharpe": ("Sharpe (ann.)", "none"),
        "alerts": ("Alerts", "none"),
    }
    panel = (
        table_panel(
            "$symbol: daily summary",
            "One row per trading session of the symbol's market calendar (regular hours), "
            "written by the dataflow at the close: OHLC, return over the day and overnight, "
            "volume, VWAP, trades, realized volatility and Sharpe ratio of the session's "
            f"bars, and its alerts. Sessions closing in the last {DAILY_RANGE}, newest first "
            "(the panel's own time range).",
            sql,
        )
        .time_from(DAILY_RANGE)
        .decimals(2)
        .height(8)
        .span(24)
    )
    panel = label_columns(panel, columns)
    return panel.override_by_name("alerts", color_cells((None, "transparent"), (1, "orange")))


PANELS = (
    candles,
    returns,
    volatility,
    sharpe,
    forecast_vs_actual_returns,
    symbol_alerts,
    daily_summary,
)


def build() -> dashboard.Dashboard:
    board = (
        new_dashboard(
            TITLE,
            UID,
            "One ticker: candles with volume, returns, realized vs forecast volatility, "
            "Sharpe ratio, forecast vs actual returns, alerts as annotations, and a "
            "summary of each trading session.",
        )
        .with_variable(symbol_variable(multi=False))
        .with_variable(interval_variable())
        .annotation(alerts_annotation())
    )
    return with_panels(board, PANELS)
