"""Query parameters shared by the routes, and the checks that turn them into a
:class:`~api.queries.series.Window` (or a 422 that says what is wrong).

Contract for time-series endpoints (``/bars``, ``/metrics``, forecast history):
- ``start`` (inclusive) and ``end`` (exclusive) are ISO 8601; a time without an offset
  is UTC. ``start`` after ``end`` is a 422.
- The answer is the rows in the range sorted by ``order`` (``desc``, newest first, by
  default), the first ``limit`` of them (``api_default_limit``, at most ``api_max_limit``).
- Ranges are bounded by rows, not by time: a range with both ends and no ``limit`` is
  answered whole, and refused (422) only when it holds more than ``api_max_limit`` rows.
- ``interval`` (``30s``, ``1m``, ``1h``, ``1d`` or seconds; 1 s to 31 days) re-buckets
  with ``time_bucket`` in the database. Without ``end`` the range ends after the newest
  row; without ``start`` it holds ``limit`` buckets. It may hold at most
  ``api_max_limit`` buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Path, Query

from api.deps import on_the_loop
from api.errors import bad_request
from api.queries.base import Row
from api.queries.series import Window
from api.schemas import DATE_PATTERN, STREAM_KINDS, SYMBOL_PATTERN, SYMBOL_RULE, Order
from sentinel.settings import Settings, parse_interval

MAX_INTERVAL_S = 31 * 86_400
INTERVAL_PATTERN = r"^0*[1-9][0-9]{0,7}[smhdSMHD]?$"
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)

SymbolPath = Annotated[
    str,
    Path(pattern=SYMBOL_PATTERN, max_length=32, description=f"Ticker symbol ({SYMBOL_RULE})."),
]
# ISO 8601 date and time (the offset optional: none means UTC), not bare numbers or dates.
TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?"
    r"(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
)


def time_query(description: str) -> Any:
    return Query(
        pattern=TIME_PATTERN,
        max_length=40,
        description=description,
        examples=["2024-05-01T13:30:00Z"],
    )


def date_query(description: str) -> Any:
    return Query(pattern=DATE_PATTERN, description=description, examples=["2024-07-01"])


FirstDate = Annotated[str | None, date_query("First session date, inclusive (YYYY-MM-DD).")]
LastDate = Annotated[str | None, date_query("Last session date, inclusive (YYYY-MM-DD).")]
TimeText = Annotated[str | None, time_query("A time (ISO 8601; no offset = UTC).")]
Start = Annotated[str | None, time_query("Range start, inclusive (ISO 8601; no offset = UTC).")]
End = Annotated[str | None, time_query("Range end, exclusive (ISO 8601; no offset = UTC).")]
Limit = Annotated[
    int | None,
    Query(ge=1, description="Rows to return (default and maximum set by the server)."),
]
OrderQ = Annotated[Order, Query(description="'desc': newest first; 'asc': oldest first.")]
Interval = Annotated[
    str | None,
    Query(
        pattern=INTERVAL_PATTERN,
        description="Re-bucket into intervals of this length: 30s, 1m, 5m, 1h, 1d, or "
        "seconds (1 s to 31 days).",
    ),
]


def to_utc(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 query parameter as an aware UTC datetime (no offset means UTC)."""
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace(",", ".").replace("z", "Z"))
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise bad_request(
            f"invalid request: query parameter '{name}': bad time {text!r}: {exc}"
        ) from None


def to_date(name: str, text: str | None) -> date | None:
    """A ``YYYY-MM-DD`` query parameter as a date (a 422 for one that does not exist)."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise bad_request(
            f"invalid request: query parameter '{name}': bad date {text!r}: {exc}"
        ) from None


def check_dates(first: date | None, last: date | None) -> None:
    if first is not None and last is not None and first > last:
        raise bad_request(f"start ({first.isoformat()}) is after end ({last.isoformat()})")


def check_limit(settings: Settings, limit: int | None) -> int:
    if limit is None:
        return min(settings.api_default_limit, settings.api_max_limit)
    if limit > settings.api_max_limit:
        raise bad_request(f"limit {limit} is too large (at most {settings.api_max_limit})")
    return limit


def check_interval(interval: str | None) -> int | None:
    if interval is None:
        return None
    try:
        seconds = parse_interval(interval)
    except ValueError as exc:
        raise bad_request(f"bad interval: {exc}") from None
    if not 1 <= seconds <= MAX_INTERVAL_S:
        raise bad_request(f"bad interval {interval!r}: must be 1 s to 31 days")
    return seconds


def check_order(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        raise bad_request(f"start ({start.isoformat()}) is after end ({end.isoformat()})")


def check_buckets(start: datetime, end: datetime, interval_s: int, settings: Settings) -> None:
    """At most ``api_max_limit`` buckets of ``interval_s`` in ``start``..``end``."""
    check_order(start, end)
    buckets = math.ceil((end - start).total_seconds() / interval_s)
    if buckets > settings.api_max_limit:
        raise bad_request(
            f"range of {buckets:,} buckets of {interval_s} s is too large for re-bucketed "
            f"rows (at most {settings.api_max_limit:,}): narrow it or pass a longer interval="
        )


@dataclass(frozen=True)
class SeriesQuery:
    """``whole``: a raw range with both ends and no ``limit``, answered whole (``limit``
    is then one more than the most rows allowed, to tell a range that holds too many)."""

    start: datetime | None
    end: datetime | None
    limit: int
    order: Order
    interval_s: int | None
    whole: bool = False

    def checked(self, rows: list[Row], settings: Settings) -> list[Row]:
        """``rows``, or a 422 when a range asked whole holds more than the most allowed."""
        if self.whole and len(rows) > settings.api_max_limit:
            raise bad_request(
                f"the range holds more than {settings.api_max_limit:,} rows: narrow it, "
                f"pass limit= (at most {settings.api_max_limit:,}) for its first rows, or "
                "interval= to re-bucket"
            )
        return rows

    def window(self, newest: datetime | None, settings: Settings) -> Window:
        """The window to query; ``newest`` is the symbol's newest row time (used only to
        place a re-bucketed range that has no ``end``)."""
        if self.interval_s is None:
            return Window(self.start, self.end, self.limit, self.order)
        end = self.end
        if end is None:
            end = (newest or EARLIEST) + timedelta(microseconds=1)
            if self.start is not None:
                end = max(end, self.start)  # nothing after `start` yet: an empty range
        start = self.start
        if start is None:
            try:
                start = end - timedelta(seconds=self.interval_s * self.limit)
            except OverflowError:
                start = EARLIEST
            start = max(start, EARLIEST)
        check_buckets(start, end, self.interval_s, settings)
        return Window(start, end, self.limit, self.order, self.interval_s)


def series_query(
    settings: Settings,
    start: str | None,
    end: str | None,
    limit: int | None,
    order: Order,
    interval: str | None = None,
) -> SeriesQuery:
    s, e = to_utc("start", start), to_utc("end", end)
    interval_s = check_interval(interval)
    check_order(s, e)
    if interval_s is not None and s is not None and e is not None:
        check_buckets(s, e, interval_s, settings)
    whole = interval_s is None and limit is None and s is not None and e is not None
    if whole:
        return SeriesQuery(s, e, settings.api_max_limit + 1, order, None, whole=True)
    return SeriesQuery(s, e, check_limit(settings, limit), order, interval_s)


@dataclass(frozen=True)
class WindowParams:
    """A time-series route's symbol and window query parameters, as given (so FastAPI
    validates them all before :meth:`series` checks how they fit together)."""

    symbol: SymbolPath
    start: Start = None
    end: End = None
    limit: Limit = None
    order: OrderQ = "desc"

    @property
    def sym(self) -> str:
        return self.symbol.upper()

    def series(self, settings: Settings) -> SeriesQuery:
        return series_query(settings, self.start, self.end, self.limit, self.order)


@dataclass(frozen=True)
class BucketedWindowParams(WindowParams):
    """:class:`WindowParams` and ``interval``, to re-bucket the rows."""

    interval: Interval = None

    def series(self, settings: Settings) -> SeriesQuery:
        return series_query(settings, self.start, self.end, self.limit, self.order, self.interval)


WindowQuery = Annotated[WindowParams, Depends(on_the_loop(WindowParams))]
BucketedWindowQuery = Annotated[BucketedWindowParams, Depends(on_the_loop(BucketedWindowParams))]


def split_list(name: str, text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()] if text else []


def check_kinds(text: str | None) -> set[str] | None:
    kinds = {k.lower() for k in split_list("kinds", text)}
    if bad := sorted(kinds - set(STREAM_KINDS)):
        raise bad_request(f"bad kind {bad[0]!r}: use {', '.join(STREAM_KINDS)}")
    return kinds or None
