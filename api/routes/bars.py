"""``GET /bars/{symbol}``: OHLCV bars, stored or re-bucketed."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PoolDep, ReadAccess, SettingsDep
from api.errors import responses
from api.params import BucketedWindowQuery
from api.per_bar import per_bar_rows
from api.queries.series import bar_rows
from api.responses import RowsJSON
from api.schemas import BarsOut

router = APIRouter(prefix="/bars", tags=["bars"], dependencies=[ReadAccess])


@router.get("/{symbol}", response_model=BarsOut, responses=responses(401, 403, 404, 422, 503))
async def get_bars(pool: PoolDep, settings: SettingsDep, params: BucketedWindowQuery) -> RowsJSON:
    """Bars with `start <= time < end` (`time` is a bar's start), sorted by `order`, the
    first `limit`. With `interval`, bars are re-aggregated per `time_bucket`: first open,
    highest high, lowest low, last close, summed volume and trades, volume-weighted VWAP;
    `time` is the bucket's start (buckets at the range's edges hold only the bars inside
    it). 404 for a symbol with no ticker and no bars."""
    sym = params.sym
    query = params.series(settings)
    rows = await per_bar_rows(pool, settings, "bars", bar_rows, sym, query, "bars")
    return RowsJSON(
        {
            "symbol": sym,
            "interval_s": query.interval_s,
            "order": query.order,
            "count": len(rows),
            "bars": rows,
        }
    )
