"""``/tickers``: the symbols the live dataflow follows.

The live source follows the `tickers` table (NOTIFY on `sentinel_tickers` plus a poll
every 2 s), so a change made here reaches the feed within seconds. ``DELETE`` only sets
``active = false``: the ticker's history stays, and ``POST`` re-activates it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.body import JsonBodyRoute
from api.deps import PoolDep, ReadAccess, WriteAccess
from api.errors import not_found, responses
from api.params import SymbolPath
from api.queries.tickers import activate_ticker, deactivate_ticker, ticker_rows
from api.schemas import TickerIn, TickerOut

router = APIRouter(
    prefix="/tickers", tags=["tickers"], dependencies=[ReadAccess], route_class=JsonBodyRoute
)


@router.get("", response_model=list[TickerOut], responses=responses(401, 403, 422, 503))
async def list_tickers(
    pool: PoolDep,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
) -> list[TickerOut]:
    """Every ticker, active or not, by symbol."""
    async with pool.connection() as conn:
        return [TickerOut(**r) for r in await ticker_rows(conn, active)]


@router.post(
    "",
    response_model=TickerOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[WriteAccess],
    responses={
        200: {"model": TickerOut, "description": "Already there (re-activated if it was inactive)"},
        **responses(401, 403, 413, 415, 422, 503),
    },
)
async def add_ticker(body: TickerIn, pool: PoolDep, response: Response) -> TickerOut:
    """Start following a symbol: 201 when new; 200 when it was already there (an inactive
    one is re-activated). Idempotent. Needs the API key when one is configured."""
    async with pool.connection() as conn:
        row, outcome = await activate_ticker(conn, body.symbol)
    if outcome != "created":
        response.status_code = status.HTTP_200_OK
    return TickerOut(**row)


@router.delete(
    "/{symbol}",
    response_model=TickerOut,
    dependencies=[WriteAccess],
    responses=responses(401, 403, 404, 422, 503),
)
async def remove_ticker(symbol: SymbolPath, pool: PoolDep) -> TickerOut:
    """Stop following a symbol: sets `active = false` and keeps its history (bars,
    forecasts, ...). 404 for a symbol that is not in `tickers`. Needs the API key when
    one is configured."""
    async with pool.connection() as conn:
        row = await deactivate_ticker(conn, symbol.upper())
    if row is None:
        raise not_found(f"unknown ticker {symbol.upper()!r}")
    return TickerOut(**row)
