"""Where a market stands at a moment: open or closed, its next open and close, today's
session and the next one, from :mod:`dataflows.sessions` (so from ``exchange_calendars``:
holidays and early closes included).

Loading a calendar takes a fraction of a second the first time (then it is cached), and
the lookups are numpy searches: routes call :func:`market_state` and :func:`session_view`
through ``asyncio.to_thread`` so that the first load does not hold up the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dataflows.sessions import MarketCalendar, Session, market_calendar, normalize

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_us(t: dt.datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exactly)."""
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def from_us(t_us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=t_us)


def effective_calendar(calendar: str, override: str) -> str:
    """The calendar the pipeline follows for a ticker on ``calendar``: the override, when
    one is set (``SENTINEL_CALENDAR_OVERRIDE``)."""
    return override or calendar


@dataclass(frozen=True)
class MarketState:
    """A market at a moment: open or not, when it next opens, when it next closes (the
    current session's close while it is open). All ``None`` for a calendar that cannot
    be loaded (a row written past the API)."""

    open_now: bool | None
    next_open: dt.datetime | None
    next_close: dt.datetime | None


UNKNOWN = MarketState(None, None, None)


def _calendar(name: str) -> MarketCalendar | None:
    try:
        return market_calendar(name)
    except ValueError:  # UnknownCalendar, or one exchange_calendars cannot load
        return None


def usable_calendar(name: str) -> str:
    """The canonical name of a calendar the pipeline can use: known to
    ``exchange_calendars`` (else :class:`UnknownCalendar`) and loadable over the span
    :mod:`dataflows.sessions` loads (else ``ValueError`` with exchange_calendars' reason)."""
    canonical = normalize(name)
    market_calendar(canonical)
    return canonical


def market_state(calendar: str, now: dt.datetime) -> MarketState:
    cal = _calendar(calendar)
    if cal is None:
        return UNKNOWN
    t_us = to_us(now)
    session = cal.next_session(t_us)
    if session.contains(t_us):
        return MarketState(True, from_us(cal.following(session).open_us), from_us(session.close_us))
    return MarketState(False, from_us(session.open_us), from_us(session.close_us))


def market_states(calendars: Iterable[str], now: dt.datetime) -> dict[str, MarketState]:
    """:func:`market_state` of each distinct calendar."""
    return {name: market_state(name, now) for name in set(calendars)}


_LOADED: set[str] = set()


async def market_states_soon(calendars: Iterable[str], now: dt.datetime) -> dict[str, MarketState]:
    """:func:`market_states`, in a thread only the first time a calendar is asked for
    (loading one takes about 0.4 s; once loaded, a lookup is microseconds, far less than
    a hop to the thread pool)."""
    names = set(calendars)
    if names <= _LOADED:
        return market_states(names, now)
    states = await asyncio.to_thread(market_states, names, now)
    _LOADED.update(names)
    return states


@dataclass(frozen=True)
class SessionView:
    """A calendar at a moment: its time zone, whether it is open, the session of the
    local date ``today`` (the one open now, or today's before its open or after its
    close; ``None`` on a weekend or holiday) and the next session to open."""

    calendar: str
    time_zone: str
    local_date: dt.date
    open_now: bool
    today: Session | None
    next: Session


def session_view(calendar: str, now: dt.datetime) -> SessionView | None:
    """``None`` for a calendar that cannot be loaded."""
    cal = _calendar(calendar)
    if cal is None:
        return None
    t_us = to_us(now)
    local = now.astimezone(ZoneInfo(cal.tz)).date()
    upcoming = cal.next_session(t_us)
    open_now = upcoming.contains(t_us)
    today: Session | None = None
    if upcoming.date == local:  # open now, or today's session before its open
        today = upcoming
    else:
        before = cal.previous(upcoming)
        if before is not None and before.date == local:  # today's, after its close
            today = before
    following = cal.following(upcoming) if open_now else upcoming
    return SessionView(cal.name, cal.tz, local, open_now, today, following)
