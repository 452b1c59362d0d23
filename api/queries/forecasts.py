"""``forecasts``: the newest of each model, target and horizon, or those in a window."""

from __future__ import annotations

from api.queries.base import Conn, Row
from api.queries.latest import latest_rows
from api.queries.series import Window, series_rows

FORECAST_COLUMNS = ("model", "target", "horizon", "time", "value", "lower", "upper", "made_at")


async def latest_forecasts(
    conn: Conn,
    symbol: str,
    model: str | None = None,
    target: str | None = None,
    horizon: int | None = None,
) -> list[Row]:
    filters = {"symbol": symbol, "model": model, "target": target, "horizon": horizon}
    return await latest_rows(conn, "forecasts", FORECAST_COLUMNS, filters)


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
