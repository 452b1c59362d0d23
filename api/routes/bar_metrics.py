"""``GET /metrics/{symbol}``: returns, volatilities and Sharpe ratio per bar."""

from __future__ import annotations

from fastapi import APIRouter

from api import db
from api.deps import PoolDep, ReadAccess, SettingsDep
from api.errors import responses
from api.params import End, Interval, Limit, OrderQ, Start, SymbolPath, series_query
from api.schemas import MetricOut, MetricsOut
from api.series import fetch_series

router = APIRouter(prefix="/metrics", tags=["metrics"], dependencies=[ReadAccess])


@router.get("/{symbol}", response_model=MetricsOut, responses=responses(401, 403, 404, 422, 503))
async def get_metrics(
    symbol: SymbolPath,
    pool: PoolDep,
    settings: SettingsDep,
    start: Start = None,
    end: End = None,
    limit: Limit = None,
    order: OrderQ = "desc",
    interval: Interval = None,
) -> MetricsOut:
    """`bar_metrics` rows, selected like `/bars/{symbol}`. With `interval`, a bucket's
    `log_return` is the sum of its bars' log returns (the bucket's own log return), and
    the volatilities, Sharpe ratio and `bars_seen` are its last bar's values (they are
    states as of a bar, not amounts). 404 for a symbol with no ticker and no metrics."""
    sym = symbol.upper()
    query = series_query(settings, start, end, limit, order, interval)
    rows = await fetch_series(pool, settings, "bar_metrics", db.bar_metrics, sym, query, "metrics")
    metrics = [MetricOut(**r) for r in rows]
    return MetricsOut(
        symbol=sym, interval_s=query.interval_s, order=order, count=len(metrics), metrics=metrics
    )
