"""``GET /summary/{symbol}``: the symbol's daily summaries, one per trading session,
written by the dataflow at each session's close (the ``daily_summary`` table)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PoolDep, ReadAccess, SettingsDep
from api.errors import not_found, responses
from api.params import (
    FirstDate,
    LastDate,
    Limit,
    OrderQ,
    SymbolPath,
    check_dates,
    check_limit,
    to_date,
)
from api.queries.tickers import symbol_known
from api.queries.trading_day import summary_rows
from api.schemas import DailySummaryOut, SummaryOut

router = APIRouter(prefix="/summary", tags=["trading day"], dependencies=[ReadAccess])

# Without a range: the latest sessions, as many as a month and a half of trading.
DEFAULT_SESSIONS = 30


@router.get("/{symbol}", response_model=SummaryOut, responses=responses(401, 403, 404, 422, 503))
async def get_summary(
    symbol: SymbolPath,
    pool: PoolDep,
    settings: SettingsDep,
    start: FirstDate = None,
    end: LastDate = None,
    limit: Limit = None,
    order: OrderQ = "desc",
) -> SummaryOut:
    """The sessions dated `start` to `end` (both inclusive; dates are the exchange's
    session dates), sorted by `order` (newest first by default), the first `limit`.
    Without `start` and `end`, the latest 30 sessions (`limit` still applies). Each row:
    the session's open and close times, OHLC, volume, VWAP, trades and bars, realized
    volatility (and annualized), Sharpe ratio, the overnight return, the session's alerts
    by kind and the models' mean scores. 404 for a symbol with no ticker and no summary."""
    sym = symbol.upper()
    first, last = to_date("start", start), to_date("end", end)
    check_dates(first, last)
    if limit is None and first is None and last is None:
        limit = min(DEFAULT_SESSIONS, settings.api_max_limit)
    n = check_limit(settings, limit)
    async with pool.connection() as conn:
        rows = await summary_rows(conn, sym, first, last, n, order)
        if not rows and not await symbol_known(conn, sym, ["daily_summary"]):
            raise not_found(f"unknown symbol {sym!r}: no ticker and no daily summary")
    sessions = [DailySummaryOut(**r) for r in rows]
    return SummaryOut(symbol=sym, order=order, count=len(sessions), sessions=sessions)
