"""``GET /forecasts/{symbol}``: the newest forecasts with their models' scores, or the
history of forecasts in a time range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import PoolDep, ReadAccess, SettingsDep, on_the_loop
from api.errors import not_found, responses
from api.params import WindowQuery
from api.queries.forecasts import forecast_history, latest_forecasts_with_scores
from api.queries.tickers import symbol_known
from api.responses import RowsJSON
from api.schemas import ForecastsOut, Target

router = APIRouter(prefix="/forecasts", tags=["forecasts"], dependencies=[ReadAccess])

MODEL_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
ModelQ = Annotated[str | None, Query(pattern=MODEL_PATTERN, description="Only this model.")]
TargetQ = Annotated[Target | None, Query(description="Only this target.")]
HorizonQ = Annotated[int | None, Query(ge=1, le=32_767, description="Only this horizon.")]


@dataclass(frozen=True)
class ForecastFilter:
    """Filters of both modes (a dependency after the window, so the parameters keep
    their place: the window's first)."""

    model: ModelQ = None
    target: TargetQ = None
    horizon: HorizonQ = None


FilterQuery = Annotated[ForecastFilter, Depends(on_the_loop(ForecastFilter))]


@router.get("/{symbol}", response_model=ForecastsOut, responses=responses(401, 403, 404, 422, 503))
async def get_forecasts(
    pool: PoolDep, settings: SettingsDep, params: WindowQuery, only: FilterQuery
) -> RowsJSON:
    """Without `start` and `end` (mode `latest`): the newest forecast of each model,
    target and horizon, each with its model's latest prequential scores (the newest
    `model_scores` row per metric) and the time of its newest checkpoint; `limit` and
    `order` do not apply. With `start` and/or `end` (mode `history`): the forecasts whose
    `time` (the forecast bar's expected start) is in the range, selected like
    `/bars/{symbol}`. `model`, `target` and `horizon` filter both modes. 404 for a symbol
    with no ticker and no forecasts."""
    sym = params.sym
    query = params.series(settings)
    latest = params.start is None and params.end is None
    async with pool.connection() as conn:
        if latest:
            forecasts = await latest_forecasts_with_scores(
                conn, sym, only.model, only.target, only.horizon
            )
        else:
            window = query.window(None, settings)
            rows = await forecast_history(conn, sym, window, only.model, only.target, only.horizon)
            forecasts = query.checked(rows, settings)
        if not forecasts and not await symbol_known(conn, sym, ["forecasts"]):
            raise not_found(f"unknown symbol {sym!r}: no ticker and no forecasts")
    mode = "latest" if latest else "history"
    return RowsJSON({"symbol": sym, "mode": mode, "count": len(forecasts), "forecasts": forecasts})
