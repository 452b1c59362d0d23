"""``GET /metrics/{symbol}``: returns, volatilities and Sharpe ratio per bar (the
``bar_metrics`` table; Prometheus's ``GET /metrics`` is :mod:`api.routes.prometheus`)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PoolDep, ReadAccess, SettingsDep
from api.errors import responses
from api.params import BucketedWindowQuery
from api.per_bar import per_bar_rows
from api.queries.series import metric_rows
from api.responses import RowsJSON
from api.schemas import MetricsOut

router = APIRouter(prefix="/metrics", tags=["metrics"], dependencies=[ReadAccess])


@router.get("/{symbol}", response_model=MetricsOut, responses=responses(401, 403, 404, 422, 503))
async def get_metrics(
    pool: PoolDep, settings: SettingsDep, params: BucketedWindowQuery
) -> RowsJSON:
    """`bar_metrics` rows, selected like `/bars/{symbol}`. With `interval`, a bucket's
    `log_return` is the sum of its bars' log returns (the bucket's own log return), and
    the volatilities, Sharpe ratio and `bars_seen` are its last bar's values (they are
    states as of a bar, not amounts). 404 for a symbol with no ticker and no metrics."""
    sym = params.sym
    query = params.series(settings)
    rows = await per_bar_rows(pool, settings, "bar_metrics", metric_rows, sym, query, "metrics")
    return RowsJSON(
        {
            "symbol": sym,
            "interval_s": query.interval_s,
            "order": query.order,
            "count": len(rows),
            "metrics": rows,
        }
    )
