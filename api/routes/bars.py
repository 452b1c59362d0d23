"""``GET /bars/{symbol}``: OHLCV bars, stored or re-bucketed."""

from __future__ import annotations

from fastapi import APIRouter

from api import db
from api.deps import PoolDep, ReadAccess, SettingsDep
from api.errors import responses
from api.params import End, Interval, Limit, OrderQ, Start, SymbolPath, series_query
from api.schemas import BarOut, BarsOut
from api.series import fetch_series

router = APIRouter(prefix="/bars", tags=["bars"], dependencies=[ReadAccess])


@router.get("/{symbol}", response_model=BarsOut, responses=responses(401, 403, 404, 422, 503))
async def get_bars(
    symbol: SymbolPath,
    pool: PoolDep,
    settings: SettingsDep,
    start: Start = None,
    end: End = None,
    limit: Limit = None,
    order: OrderQ = "desc",
    interval: Interval = None,
) -> BarsOut:
    """Bars with `start <= time < end` (`time` is a bar's start), sorted by `order`, the
    first `limit`. With `interval`, bars are re-aggregated per `time_bucket`: first open,
    highest high, lowest low, last close, summed volume and trades, volume-weighted VWAP;
    `time` is the bucket's start (buckets at the range's edges hold only the bars inside
    it). 404 for a symbol with no ticker and no bars."""
    sym = symbol.upper()
    query = series_query(settings, start, end, limit, order, interval)
    rows = await fetch_series(pool, settings, "bars", db.bars, sym, query, "bars")
    bars = [BarOut(**r) for r in rows]
    return BarsOut(symbol=sym, interval_s=query.interval_s, order=order, count=len(bars), bars=bars)
