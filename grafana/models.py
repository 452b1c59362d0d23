"""Models: the online models' prequential scores, each against its baseline.

Volatility models are compared with EWMA (QLIKE difference: below 0 is better; MSE
ratio: below 1 is better), return models with the zero forecast (RMSE ratio: below 1 is
better). Scores are the rolling ones (last 100 scored bars), averaged over the selected
symbols per time bucket.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, table, timeseries
from grafana_foundation_sdk.models import common as common_models

from grafana.common import (
    label_columns,
    new_dashboard,
    symbol_variable,
    table_panel,
    thresholds,
    time_series_panel,
    with_panels,
)

UID = "sentinel-models"
TITLE = "Stock Sentinel: models"

SYMBOLS = "symbol IN (${symbol:sqlstring})"


def _score_sql(target: str, metric: str) -> str:
    return f"""
SELECT $__timeGroupAlias(time, $__interval), model AS metric, avg(value) AS value
FROM model_scores
WHERE $__timeFilter(time) AND {SYMBOLS} AND target = '{target}' AND metric = '{metric}'
GROUP BY 1, 2
ORDER BY 1
"""


def _score_panel(title: str, description: str, target: str, metric: str) -> timeseries.Panel:
    return (
        time_series_panel(title, description, _score_sql(target, metric))
        .decimals(3)
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common_models.GraphTresholdsStyleMode.DASHED
            )
        )
        .height(8)
        .span(12)
    )


def qlike_vs_ewma() -> timeseries.Panel:
    return _score_panel(
        "Volatility models: rolling QLIKE minus EWMA's",
        "QLIKE (log s^2 + r^2/s^2) of each volatility model minus the EWMA baseline's, over "
        "the last 100 bars. Below 0 (the line) the model beats EWMA.",
        "volatility",
        "qlike_rel_ewma_rolling",
    ).thresholds(thresholds((None, "green"), (0.0, "red")))


def mse_vs_ewma() -> timeseries.Panel:
    return _score_panel(
        "Volatility models: rolling MSE over EWMA's",
        "MSE of the variance forecast against r^2, as a ratio to the EWMA baseline's. "
        "Below 1 the model beats EWMA.",
        "volatility",
        "mse_rel_ewma_rolling",
    ).thresholds(thresholds((None, "green"), (1.0, "red")))


def rmse_vs_zero() -> timeseries.Panel:
    return _score_panel(
        "Return models: rolling RMSE over the zero forecast's",
        "RMSE of each return model as a ratio to the random walk's (always 0). "
        "Below 1 the model beats the random walk.",
        "return",
        "rmse_rel_zero_rolling",
    ).thresholds(thresholds((None, "green"), (1.0, "red")))


def coverage() -> timeseries.Panel:
    return (
        _score_panel(
            "Return models: 90% interval coverage (rolling)",
            "Share of the last 100 returns inside the forecast's 90% interval. Calibrated "
            "intervals stay near 0.9 (the line).",
            "return",
            "coverage_rolling",
        )
        .unit("percentunit")
        .thresholds(thresholds((None, "red"), (0.9, "green")))
    )


def direction() -> timeseries.Panel:
    return (
        _score_panel(
            "Return models: direction accuracy (rolling)",
            "Share of the last 100 bars where the forecast had the sign of the return.",
            "return",
            "direction_rolling",
        )
        .unit("percentunit")
        .thresholds(thresholds((None, "red"), (0.5, "green")))
        .span(24)
    )


def checkpoints() -> table.Panel:
    sql = """
SELECT DISTINCT ON (symbol, model)
       symbol,
       model,
       time AS checkpoint_time,
       extract(epoch FROM $__timeTo()::timestamptz - time) AS age_s,
       version,
       bars_seen,
       octet_length(state) AS state_bytes,
       coalesce((metrics ->> 'qlike_rel_ewma_rolling')::float8,
                (metrics ->> 'rmse_rel_zero_rolling')::float8) AS vs_baseline
FROM model_checkpoints
WHERE $__timeFilter(time) AND symbol IN (${symbol:sqlstring}) AND left(model, 1) <> '_'
ORDER BY symbol, model, time DESC
"""
    labels = {
        "checkpoint_time": ("Last checkpoint", "dateTimeAsIso"),
        "age_s": ("Age", "s"),
        "state_bytes": ("State size", "bytes"),
        "vs_baseline": ("Rolling score vs baseline", "none"),
    }
    panel = table_panel(
        "Last checkpoint per symbol and model",
        "Newest model_checkpoints row of each symbol and model in the time range: its "
        "version, the bars it had learned from, its pickled size and its rolling score "
        "against the baseline (QLIKE difference or RMSE ratio) when it was saved.",
        sql,
    )
    return label_columns(panel, labels).height(10).span(24)


PANELS = (qlike_vs_ewma, mse_vs_ewma, rmse_vs_zero, coverage, direction, checkpoints)


def build() -> dashboard.Dashboard:
    board = new_dashboard(
        TITLE,
        UID,
        "Prequential scores of every online model against its baseline, interval coverage, "
        "and the last checkpoint of each symbol and model.",
    ).with_variable(symbol_variable(multi=True))
    return with_panels(board, PANELS)
