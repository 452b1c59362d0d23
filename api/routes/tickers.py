"""``/tickers``: the symbols the live dataflow follows, and each one's market calendar.

The live source follows the `tickers` table (NOTIFY on `sentinel_tickers` plus a poll
every 2 s), so a change made here reaches the feed within seconds. ``DELETE`` only sets
``active = false``: the ticker's history stays, and ``POST`` re-activates it. A calendar
is an ``exchange_calendars`` code or ``24/7``, checked by :func:`dataflows.sessions.normalize`
and stored under its canonical name; where each market stands now (open, next open and
close) comes from the same calendars, at the API's clock.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.body import JsonBodyRoute
from api.deps import ClockDep, PoolDep, ReadAccess, SettingsDep, WriteAccess
from api.errors import bad_request, not_found, responses
from api.params import SymbolPath
from api.queries.base import Row
from api.queries.tickers import activate_ticker, deactivate_ticker, ticker_rows, update_ticker
from api.schemas import TickerIn, TickerOut, TickerPatch
from api.sessions import effective_calendar, market_states_soon, usable_calendar
from dataflows.sessions import UnknownCalendar
from sentinel.settings import Settings

router = APIRouter(
    prefix="/tickers", tags=["tickers"], dependencies=[ReadAccess], route_class=JsonBodyRoute
)


def checked_calendar(name: str | None) -> str | None:
    """The canonical name of a calendar given in a body, or a 422 saying what is accepted."""
    if name is None:
        return None
    try:
        return usable_calendar(name)
    except UnknownCalendar as exc:
        raise bad_request(f"invalid request: body field 'calendar': {exc}") from None
    except ValueError as exc:  # known, but exchange_calendars cannot load its span
        raise bad_request(
            f"invalid request: body field 'calendar': {name!r} cannot be used here: {exc}"
        ) from None


async def tickers_out(rows: list[Row], settings: Settings, now: datetime) -> list[TickerOut]:
    """The rows with where each one's market stands at ``now``."""
    states = await market_states_soon([r["calendar"] for r in rows], now)
    return [
        TickerOut(
            **row,
            effective_calendar=effective_calendar(row["calendar"], settings.calendar_override),
            open_now=states[row["calendar"]].open_now,
            next_open=states[row["calendar"]].next_open,
            next_close=states[row["calendar"]].next_close,
        )
        for row in rows
    ]


async def ticker_out(row: Row, settings: Settings, now: datetime) -> TickerOut:
    (out,) = await tickers_out([row], settings, now)
    return out


@router.get("", response_model=list[TickerOut], responses=responses(401, 403, 422, 503))
async def list_tickers(
    pool: PoolDep,
    settings: SettingsDep,
    clock: ClockDep,
    active: Annotated[bool | None, Query(description="Only active (or inactive) ones.")] = None,
) -> list[TickerOut]:
    """Every ticker, active or not, by symbol, with its calendar and where its market
    stands now: open or not, its next open, its next close (the current session's close
    while it is open). `effective_calendar` is the one the pipeline follows (a demo run
    with `SENTINEL_CALENDAR_OVERRIDE=24/7` treats every market as always open)."""
    async with pool.connection() as conn:
        rows = await ticker_rows(conn, active)
    return await tickers_out(rows, settings, clock())


@router.post(
    "",
    response_model=TickerOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[WriteAccess],
    responses={
        200: {
            "model": TickerOut,
            "description": "Already there (re-activated if it was inactive, moved to the "
            "calendar given)",
        },
        **responses(401, 403, 413, 415, 422, 503),
    },
)
async def add_ticker(
    body: TickerIn, pool: PoolDep, settings: SettingsDep, clock: ClockDep, response: Response
) -> TickerOut:
    """Start following a symbol, on `calendar` (default `SENTINEL_CALENDAR`): 201 when
    new; 200 when it was already there (an inactive one is re-activated; given a
    `calendar`, it moves to it; without one it keeps its own). Idempotent. 422 for a
    calendar `exchange_calendars` does not know. Needs the API key when one is configured."""
    calendar = await asyncio.to_thread(checked_calendar, body.calendar)
    async with pool.connection() as conn:
        row, outcome = await activate_ticker(conn, body.symbol, calendar, settings.calendar)
    if outcome != "created":
        response.status_code = status.HTTP_200_OK
    return await ticker_out(row, settings, clock())


@router.patch(
    "/{symbol}",
    response_model=TickerOut,
    dependencies=[WriteAccess],
    responses=responses(401, 403, 404, 413, 415, 422, 503),
)
async def change_ticker(
    symbol: SymbolPath, body: TickerPatch, pool: PoolDep, settings: SettingsDep, clock: ClockDep
) -> TickerOut:
    """Change a ticker's `calendar` and/or `active` (at least one of them; 422 for an
    empty body or an unknown calendar). 404 for a symbol that is not in `tickers`. The
    live dataflow picks the change up like any other change of `tickers`. Needs the API
    key when one is configured."""
    if body.calendar is None and body.active is None:
        raise bad_request("invalid request: nothing to change: give 'calendar' and/or 'active'")
    calendar = await asyncio.to_thread(checked_calendar, body.calendar)
    sym = symbol.upper()
    async with pool.connection() as conn:
        row = await update_ticker(conn, sym, calendar, body.active)
    if row is None:
        raise not_found(f"unknown ticker {sym!r}")
    return await ticker_out(row, settings, clock())


@router.delete(
    "/{symbol}",
    response_model=TickerOut,
    dependencies=[WriteAccess],
    responses=responses(401, 403, 404, 422, 503),
)
async def remove_ticker(
    symbol: SymbolPath, pool: PoolDep, settings: SettingsDep, clock: ClockDep
) -> TickerOut:
    """Stop following a symbol: sets `active = false` and keeps its history (bars,
    forecasts, ...). 404 for a symbol that is not in `tickers`. Needs the API key when
    one is configured."""
    async with pool.connection() as conn:
        row = await deactivate_ticker(conn, symbol.upper())
    if row is None:
        raise not_found(f"unknown ticker {symbol.upper()!r}")
    return await ticker_out(row, settings, clock())
