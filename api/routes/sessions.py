"""``GET /sessions/{symbol}``: the symbol's market now: its calendar and time zone,
whether it is open, today's session and the next one (from ``exchange_calendars``, at
the API's clock), and the last session open or close the dataflow saw."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from api.deps import ClockDep, PoolDep, ReadAccess, SettingsDep
from api.errors import ApiError, not_found, responses
from api.params import SymbolPath
from api.queries.tickers import symbol_known
from api.queries.trading_day import last_session_event, ticker_calendar
from api.schemas import SessionEventOut, SessionOut, SessionsOut
from api.sessions import effective_calendar, from_us, session_view
from dataflows.sessions import Session

router = APIRouter(prefix="/sessions", tags=["trading day"], dependencies=[ReadAccess])

# A symbol without a ticker is known by its rows (a replay): on the default calendar.
KNOWN_BY = ["bars", "daily_summary", "session_events"]


def session_out(session: Session) -> SessionOut:
    return SessionOut(
        session_date=session.date,
        open=from_us(session.open_us),
        close=from_us(session.close_us),
        hours=round(session.seconds / 3600, 4),
    )


@router.get("/{symbol}", response_model=SessionsOut, responses=responses(401, 403, 404, 422, 503))
async def get_sessions(
    symbol: SymbolPath, pool: PoolDep, settings: SettingsDep, clock: ClockDep
) -> SessionsOut:
    """The symbol's market calendar (its ticker's; `SENTINEL_CALENDAR` for a symbol known
    only by its rows) and time zone, whether the market is open now, today's session in
    the market's time zone (the one open now, or today's before its open or after its
    close: null on a weekend or a holiday), the next session to open, each with its open,
    close and length in hours (an early close is shorter), and the newest
    `session_events` row of the symbol. `effective_calendar` is the one the pipeline
    follows (`SENTINEL_CALENDAR_OVERRIDE`, when set). 404 for a symbol with no ticker
    and no rows."""
    sym = symbol.upper()
    async with pool.connection() as conn:
        calendar = await ticker_calendar(conn, sym)
        if calendar is None and not await symbol_known(conn, sym, KNOWN_BY):
            raise not_found(f"unknown symbol {sym!r}: no ticker and no rows")
        event = await last_session_event(conn, sym)
    calendar = calendar or settings.calendar
    now = clock()
    view = await asyncio.to_thread(session_view, calendar, now)
    if view is None:
        raise ApiError(500, f"ticker {sym!r} has a calendar this API does not know: {calendar!r}")
    return SessionsOut(
        symbol=sym,
        calendar=calendar,
        effective_calendar=effective_calendar(calendar, settings.calendar_override),
        time_zone=view.time_zone,
        time=now,
        local_date=view.local_date,
        open_now=view.open_now,
        today=session_out(view.today) if view.today else None,
        next=session_out(view.next),
        last_event=SessionEventOut(**event) if event else None,
    )
