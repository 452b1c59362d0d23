"""The records that flow between sources, steps and sinks.

Plain named tuples: cheap to build, to pickle (Bytewax snapshots) and to COPY. Times are
integers, microseconds since the Unix epoch, UTC (``*_us``): no datetime objects in the
hot path. Sinks turn them into ``TIMESTAMPTZ``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

US = 1_000_000  # microseconds per second

BACKFILL_SOURCES = ("finnhub_tick", "finnhub_candle")
"""The sources of trades fetched after a reconnect to fill its gap (Finnhub's REST
``/stock/tick``, or its ``/stock/candle`` minute bars as prints): their ticks carry the
source's name in ``ticks.source``; live and replayed ticks leave it ``NULL``."""


Clock = Callable[[], int]
"""A clock in this module's time unit (microseconds since the Unix epoch)."""


def wall_clock_us() -> int:
    """The wall clock in this module's time unit: microseconds since the Unix epoch."""
    return time.time_ns() // 1000


def frozen_clock() -> int:
    """A clock that never moves: a replay has no wall time of its own (its watermarks
    follow event time; a ``system`` checkpoint clock never fires)."""
    return 0


def pg_safe(s: str) -> bool:
    """Can a PostgreSQL text column hold ``s`` as it is? Not with a NUL character, nor
    with a lone surrogate (which has no UTF-8 form)."""
    if "\x00" in s:
        return False
    if s.isascii():  # O(1) in CPython: the common case costs two scans at most
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def pg_text(s: str, max_chars: int | None = None) -> str:
    """``s`` as a PostgreSQL text column can hold it, for dead letters and logs.

    NUL becomes the six characters ``\\u0000`` and a lone surrogate its escape
    (``\\ud800``); other text is kept. Beyond ``max_chars`` the text is cut and a marker
    says how long it was. Clean text within the limit is returned as it is.

    >>> pg_text("A\\x00B\\ud800"), pg_text("AAPL"), pg_text("x" * 10, max_chars=4)
    ('A\\\\u0000B\\\\ud800', 'AAPL', 'xxxx... [cut: 10 characters in all]')
    """
    if max_chars is not None and len(s) > max_chars:
        s = f"{s[:max_chars]}... [cut: {len(s):,} characters in all]"
    if "\x00" in s:
        s = s.replace("\x00", "\\u0000")
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


class RawBatch(NamedTuple):
    """What a source emits: a batch of undecoded messages from one source.

    ``clock_us`` is the stream's clock when the batch was taken: wall time at receipt for
    a live feed, the file's own running time for a replay. Tick timestamps are judged
    plausible against it. ``messages`` holds ``(seq, payload)`` pairs; ``seq`` is the
    source's position of that message (unique and stable within ``source``), and each
    payload is either the text of one Finnhub websocket message or a :class:`RowBlock`.
    A live source also reports the symbols it is subscribed to in ``subscribed`` (the
    stale-feed check uses it) and emits a batch at least once a second, empty if need be.
    """

    source: str
    clock_us: int
    messages: Sequence[tuple[int, str | RowBlock]]
    subscribed: tuple[str, ...] | None = None


class RowBlock(NamedTuple):
    """Rows of a replay file, as read (strings or numbers), column by column.

    Row ``i`` has sequence number ``first_seq + i``. A source that has already read the
    times (with :func:`dataflows.times.to_epoch_us`) hands them on in ``time_us`` and
    ``time_ok``, so the parse step does not read them again.
    """

    first_seq: int
    time: Sequence[object]
    symbol: Sequence[object]
    price: Sequence[object]
    size: Sequence[object] | None
    time_us: Sequence[int] | None = None
    time_ok: Sequence[bool] | None = None


class Tick(NamedTuple):
    """One valid trade. ``extended``: outside its calendar's regular session (pre-market,
    after hours), or marked so by the feed's trade conditions."""

    time_us: int
    symbol: str
    price: float
    size: float
    seq: int
    conditions: str | None
    extended: bool = False
    source: str | None = None  # one of BACKFILL_SOURCES for a backfilled trade


class Ticks(list[Tick]):
    """A list of ticks that pickles as plain tuples. A cluster pickles what it hands
    between processes, and a ``NamedTuple`` pickles through ``copyreg``, one Python
    call per tick: 3.8 us a tick on this machine, against 1.0 us this way (both ways
    round: 5.0 against 1.9 us)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_ticks_of_tuples, (list(map(tuple, self)),))


def _ticks_of_tuples(rows: list[tuple[Any, ...]]) -> Ticks:
    new = tuple.__new__
    return Ticks([new(Tick, row) for row in rows])


class Reject(NamedTuple):
    """One refused message or trade, for ``ticks_rejected``."""

    received_us: int
    source: str
    seq: int
    symbol: str | None
    reason: str
    detail: str
    payload: str


class Bar(NamedTuple):
    """One OHLCV bar; ``start_us`` is the bar's start."""

    start_us: int
    symbol: str
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float
    vwap: float | None
    trades: int
    bar_seconds: int
    revision: int = 0  # how many times the bar changed after it closed (late trades)


class Metrics(NamedTuple):
    """Per-bar statistics, for ``bar_metrics``. Volatilities are per bar (not annualized)
    except the ``*_ann`` ones; ``sharpe`` is annualized."""

    start_us: int
    symbol: str
    log_return: float | None
    realized_vol: float | None
    ewma_vol: float | None
    realized_vol_ann: float | None
    ewma_vol_ann: float | None
    sharpe: float | None
    bars_seen: int


class Alert(NamedTuple):
    time_us: int
    symbol: str
    kind: str
    severity: str
    value: float | None
    threshold: float | None
    message: str


class Forecast(NamedTuple):
    """One model's forecast of the bar starting at ``time_us``, ``horizon`` bars after the
    bar it was made at (``made_at_us``), for ``forecasts``. ``target`` is ``"volatility"``
    (``value`` is sigma, the standard deviation of the bar's log return) or ``"return"``
    (``value`` is the log return, inside the interval ``[lower, upper]`` when one is set)."""

    time_us: int
    symbol: str
    model: str
    target: str
    horizon: int
    value: float
    lower: float | None
    upper: float | None
    made_at_us: int


class ModelScore(NamedTuple):
    """One prequential score of a model at bar ``time_us``, for ``model_scores``."""

    time_us: int
    symbol: str
    model: str
    target: str
    metric: str
    value: float | None


class ModelCheckpoint(NamedTuple):
    """One row of a symbol's model checkpoint, for ``model_checkpoints``: ``state`` is the
    pickled model (or shared state), ``metrics`` its current scores (JSON: no NaN)."""

    time_us: int
    symbol: str
    model: str
    version: int
    bars_seen: int
    state: bytes
    metrics: dict[str, float | None]


class SessionEvent(NamedTuple):
    """A symbol's session opening or closing (``event``), for ``session_events``:
    ``time_us`` is the calendar's open or close time."""

    time_us: int
    symbol: str
    event: str
    session_date: dt.date
    calendar: str


class DailySummary(NamedTuple):
    """One symbol's regular session, for ``daily_summary``, written at its close.

    ``realized_vol`` is the square root of the sum of the session's squared intraday bar
    log returns, ``realized_vol_ann`` that times the square root of the calendar's
    sessions per year; ``sharpe`` is the annualized Sharpe ratio of those returns;
    ``overnight_return`` the log return from the previous close to this session's first
    trade. ``alerts`` counts the session's alerts by kind; ``model_scores`` holds each
    model's mean scores over the session with the EWMA's and the zero forecast's beside
    them (see :mod:`dataflows.trading_day`).
    """

    session_date: dt.date
    symbol: str
    calendar: str
    open_us: int
    close_us: int
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float
    vwap: float | None
    trades: int
    bars: int
    realized_vol: float | None
    realized_vol_ann: float | None
    sharpe: float | None
    overnight_return: float | None
    alerts: dict[str, int]
    model_scores: dict[str, Any]
