"""``forecasts``: the newest of each model, target and horizon, or those in a window."""

from __future__ import annotations

from api.queries.base import Conn, Row, fetch
from api.queries.series import Window, series_rows

FORECAST_COLUMNS = ("model", "target", "horizon", "time", "value", "lower", "upper", "made_at")


# The newest forecast of each model, target and horizon, with its model's newest score
# per metric and newest checkpoint: one statement (one round trip, one parse of rows).
_LATEST_WITH_SCORES = """
SELECT f.model, f.target, f.horizon, f.time, f.value, f.lower, f.upper, f.made_at,
       s.metrics, s.values, s.time AS scores_time, c.time AS last_checkpoint
FROM forecasts_latest f
LEFT JOIN LATERAL (
    SELECT array_agg(metric ORDER BY metric) AS metrics,
           array_agg(value ORDER BY metric) AS values, max(time) AS time
    FROM model_scores_latest WHERE symbol = f.symbol AND model = f.model
) s ON TRUE
LEFT JOIN model_checkpoints_latest c ON c.symbol = f.symbol AND c.model = f.model
WHERE f.symbol = %(symbol)s
  AND (%(model)s::text IS NULL OR f.model = %(model)s::text)
  AND (%(target)s::text IS NULL OR f.target = %(target)s::text)
  AND (%(horizon)s::int2 IS NULL OR f.horizon = %(horizon)s::int2)
ORDER BY f.model, f.target, f.horizon
"""


async def latest_forecasts_with_scores(
    conn: Conn,
    symbol: str,
    model: str | None = None,
    target: str | None = None,
    horizon: int | None = None,
) -> list[Row]:
    """The newest forecast of each model, target and horizon (those given: None is
    any), each with ``scores`` (its model's newest value per
    metric), ``scores_time`` (the newest of them) and ``last_checkpoint``."""
    params = {"symbol": symbol, "model": model, "target": target, "horizon": horizon}
    rows = await fetch(conn, _LATEST_WITH_SCORES, params)
    for r in rows:
        metrics, values = r.pop("metrics"), r.pop("values")
        r["scores"] = dict(zip(metrics, values, strict=True)) if metrics else {}
    return rows


async def forecast_history(
    conn: Conn,
    symbol: str,
    window: Window,
    model: str | None,
    target: str | None,
    horizon: int | None,
) -> list[Row]:
    filters = {"model": model, "target": target, "horizon": horizon}
    return await series_rows(conn, "forecasts", FORECAST_COLUMNS, symbol, window, filters=filters)
