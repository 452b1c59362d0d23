"""Market sessions: when each calendar's market is open, from ``exchange_calendars``.

A ticker's calendar is an ``exchange_calendars`` code (``XNYS``, ``XLON``, ...) or
``24/7`` (exchange_calendars' own calendar of UTC days, for markets that never close).
Sessions, holidays and early closes all come from ``exchange_calendars``; this module
only turns a calendar's schedule into arrays of integer microseconds, because the
dataflow asks "which session is this trade in?" for every chunk of trades and
``exchange_calendars``' own lookups (pandas) cost tens of microseconds each.

A session is ``[open, close)``; lunch breaks (Hong Kong, Tokyo) count as open. The
session's ``date`` is the exchange's label for it (the local trading date). Trades
outside every session are "extended hours" (pre-market, after hours).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from typing import NamedTuple

import numpy as np
import pandas as pd

# Re-exported: callers that use sessions anyway take the names from here.
from dataflows.calendar_names import ALWAYS as ALWAYS
from dataflows.calendar_names import DEFAULT_CALENDAR as DEFAULT_CALENDAR
from dataflows.calendar_names import UnknownCalendar as UnknownCalendar
from dataflows.calendar_names import calendar_names as calendar_names
from dataflows.calendar_names import normalize as normalize
from dataflows.config import SessionConfig
from dataflows.records import US

log = logging.getLogger(__name__)

# The span every calendar is loaded for: replays of old history and years ahead.
_FIRST, _LAST = "1990-01-01", "2035-12-31"


class Session(NamedTuple):
    """One trading session of a calendar: ``[open_us, close_us)``, labelled ``date``."""

    calendar: str
    date: dt.date
    open_us: int
    close_us: int

    @property
    def seconds(self) -> float:
        return (self.close_us - self.open_us) / US

    def contains(self, t_us: int) -> bool:
        return self.open_us <= t_us < self.close_us


class SessionMark(NamedTuple):
    """What the bars step emits, in order with the bars, when a symbol's session opens
    (``event`` ``"open"``) or closes (``"close"``)."""

    event: str
    symbol: str
    session: Session


class MarketCalendar:
    """One calendar's sessions as sorted arrays of microseconds, for fast lookups."""

    def __init__(self, name: str):
        import exchange_calendars as xcals

        self.name = normalize(name)
        first, last = pd.Timestamp(_FIRST), pd.Timestamp(_LAST)
        try:
            cal = xcals.get_calendar(self.name, start=first, end=last)
        except ValueError:
            # Some calendars start later or end sooner (XTKS: from 1997): their own span.
            cls = type(xcals.get_calendar(self.name))
            lo, hi = cls.bound_min(), cls.bound_max()
            first = max(first, lo) if lo is not None else first
            last = min(last, hi) if hi is not None else last
            cal = xcals.get_calendar(self.name, start=first, end=last)
        self.span = (first.date(), last.date())
        self.tz = str(cal.tz)
        schedule = cal.schedule
        self.opens = _us(schedule["open"])
        self.closes = _us(schedule["close"])
        self.dates = [d.date() for d in schedule.index]
        years = np.array([d.year for d in self.dates])
        uniq, counts = np.unique(years, return_counts=True)
        self._per_year = dict(zip(uniq.tolist(), counts.tolist(), strict=True))

    def __repr__(self) -> str:
        return f"MarketCalendar({self.name!r})"

    def _session(self, i: int) -> Session:
        return Session(self.name, self.dates[i], int(self.opens[i]), int(self.closes[i]))

    def _check(self, i: int, t_us: int) -> None:
        if i >= len(self.closes) or t_us < self.opens[0]:
            raise ValueError(
                f"{t_us} us is outside the {self.name} calendar ({self.span[0]} to {self.span[1]})"
            )

    def session_at(self, t_us: int) -> Session | None:
        """The session open at ``t_us``, or ``None`` when the market is closed."""
        i = int(np.searchsorted(self.closes, t_us, side="right"))
        self._check(i, t_us)
        return self._session(i) if self.opens[i] <= t_us else None

    def next_session(self, t_us: int) -> Session:
        """The session open at ``t_us``, or else the next one to open."""
        i = int(np.searchsorted(self.closes, t_us, side="right"))
        self._check(i, t_us)
        return self._session(i)

    def following(self, session: Session) -> Session:
        """The session after ``session``."""
        return self.next_session(session.close_us)

    def previous(self, session: Session) -> Session | None:
        """The session before ``session``, or ``None`` at the start of the calendar."""
        i = int(np.searchsorted(self.closes, session.open_us, side="right")) - 1
        return self._session(i) if i >= 0 else None

    def sessions_per_year(self, date: dt.date) -> int:
        """Trading sessions in ``date``'s calendar year: what annualizes a daily figure."""
        return int(self._per_year.get(date.year, 252))

    def bars_per_year(self, session: Session, bar_seconds: float) -> float:
        """Bars of ``bar_seconds`` in a year of sessions as long as ``session`` (a bar
        at least a session long counts once a day)."""
        per_day = max(1.0, session.seconds / bar_seconds)
        return self.sessions_per_year(session.date) * per_day


def _us(column: object) -> np.ndarray:
    values = np.asarray(column, dtype="datetime64[us]")
    return values.astype(np.int64)


@functools.cache
def market_calendar(name: str) -> MarketCalendar:
    """The calendar called ``name`` (loaded once per process, about 0.4 s for XNYS), or
    :class:`UnknownCalendar`."""
    canonical = normalize(name)
    if canonical != name:
        return market_calendar(canonical)
    return MarketCalendar(canonical)


class CalendarBook:
    """Each symbol's calendar, as :class:`~dataflows.config.SessionConfig` says; the
    ``lookup`` answers are kept ``lookup_every_s`` (a ticker's calendar changed through
    the API takes effect within that, at the symbol's next session)."""

    def __init__(self, config: SessionConfig):
        self.config = config
        self._looked_up: dict[str, tuple[str | None, float]] = {}

    def name_of(self, symbol: str) -> str:
        cfg = self.config
        if cfg.override:
            return cfg.override
        if symbol in cfg.calendars:
            return cfg.calendars[symbol]
        if cfg.lookup is not None:
            name = self._lookup(symbol)
            if name:
                return name
        return cfg.default

    def _lookup(self, symbol: str) -> str | None:
        assert self.config.lookup is not None
        now = time.monotonic()  # a cache's age, not the stream's time
        hit = self._looked_up.get(symbol)
        if hit is not None and now - hit[1] < self.config.lookup_every_s:
            return hit[0]
        try:
            name = self.config.lookup(symbol)
        except Exception as exc:  # the database may be down: keep what we knew
            log.warning("could not look up the calendar of %s (%s)", symbol, exc)
            name = hit[0] if hit is not None else None
        self._looked_up[symbol] = (name, now)
        return name

    def calendar_of(self, symbol: str) -> MarketCalendar:
        name = self.name_of(symbol)
        try:
            return market_calendar(name)
        except UnknownCalendar:
            log.warning("%s: unknown calendar %r; using %s", symbol, name, self.config.default)
            return market_calendar(self.config.default)

    def market_open(self, symbol: str, time_us: int) -> bool:
        """Is ``symbol``'s market open at ``time_us``?"""
        try:
            return self.calendar_of(symbol).session_at(time_us) is not None
        except ValueError:  # beyond the calendar's span
            return False
