"""Gap backfill: after a reconnect, the trades the websocket missed, from Finnhub's REST API.

The routes and shapes are Finnhub's own (its API docs, and the models of its Python
client ``finnhub-python``: ``docs/TickData.md``, ``docs/StockCandles.md``,
``Client.stock_tick`` and ``Client.stock_candles``):

- ``GET /stock/tick?symbol=&date=YYYY-MM-DD&limit=&skip=&format=json`` (premium): one
  day's trades in time order, ``limit`` (at most 25,000) from ``skip`` on:
  ``{"s", "skip", "count", "total", "v": [...], "p": [...], "t": [ms...], "x": [venues],
  "c": [[conditions]...]}``. The day is the exchange's (America/New_York) date.
- ``GET /stock/candle?symbol=&resolution=1&from=&to=`` (unix seconds): minute bars
  ``{"s": "ok" | "no_data", "t": [minute start, s], "o", "h", "l", "c", "v"}``.

The token goes in the ``X-Finnhub-Token`` header (Finnhub takes it there or as
``?token=``), so it is in no URL that a log line, an exception or a proxy could show.

:class:`Backfiller` turns a :class:`Gap` into Finnhub trade messages, the same text the
websocket sends (``{"type":"trade","data":[{"s","p","t","v","c"}]}``), for the journal.
``tick`` mode is exact: the gap's trades, each once (see :meth:`Backfiller.fill` for the
edges). ``candle`` mode is coarse: each whole minute inside the gap becomes four
synthetic prints (open, high, low, close; only the close carries the volume) with the
condition ``candle``, so a bar gets the minute's open, high, low, close and volume, but
not its VWAP or trade count, and the partial minutes at the gap's edges stay unfilled.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import httpx
from aiolimiter import AsyncLimiter

from dataflows.records import BACKFILL_SOURCES, US

__all__ = [
    "CANDLE_CONDITION",
    "TICK_PAGE_LIMIT",
    "Backfill",
    "Backfiller",
    "Candles",
    "FinnhubRest",
    "Gap",
    "RestError",
    "RestRefused",
    "TickPage",
    "candle_prints",
    "trade_messages",
]

log = logging.getLogger(__name__)

TICK_SOURCE, CANDLE_SOURCE = BACKFILL_SOURCES
TICK_PAGE_LIMIT = 25_000  # the most /stock/tick returns at once
CANDLE_CONDITION = "candle"  # the pseudo-condition of candle prints (dataflows/conditions.csv)
MESSAGE_TRADES = 1000  # per message: the parser numbers a message's trades with 10 bits
EXCHANGE_TZ = ZoneInfo("America/New_York")  # /stock/tick's `date` is the exchange's day
TOKEN_HEADER = "X-Finnhub-Token"

Mode = Literal["auto", "tick", "candle"]
Sleep = Callable[[float], Awaitable[None]]


class RestError(Exception):
    """A request that failed for good (after its retries); never holds the token."""


class RestRefused(RestError):
    """401/403: this token may not use this route (``/stock/tick`` is premium)."""


class TickPage(NamedTuple):
    symbol: str
    skip: int
    total: int
    t: list[int]  # ms
    p: list[float]
    v: list[float]
    c: list[list[str]]


class Candles(NamedTuple):
    t: list[int]  # s, each minute's start
    o: list[float]
    h: list[float]
    low: list[float]
    close: list[float]
    v: list[float]


class RestTrade(NamedTuple):
    symbol: str
    t_ms: int
    price: float
    size: float
    conditions: tuple[str, ...]


class FinnhubRest:
    """An async client of the two routes, rate limited to ``requests_per_min`` (one
    request every ``60 / requests_per_min`` s at most, no bursts: ``aiolimiter``'s leaky
    bucket of size 1). 429 and 5xx answers and transport errors are retried up to
    ``retries`` times, after the ``Retry-After`` the server asks for or else an
    exponential backoff with full jitter; 401/403 raise :class:`RestRefused` at once."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        requests_per_min: float = 30.0,
        retries: int = 5,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.requests_per_min = requests_per_min
        self.retries = retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._transport = transport
        self._rng = random.Random()
        self._limiter: AsyncLimiter | None = None  # made on the loop that uses it
        self._client: httpx.AsyncClient | None = None
        self.requests = 0  # sent, retries included

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def ticks(
        self, symbol: str, day: str, skip: int, limit: int = TICK_PAGE_LIMIT
    ) -> TickPage:
        doc = await self.get(
            "/stock/tick",
            {"symbol": symbol, "date": day, "limit": limit, "skip": skip, "format": "json"},
        )
        t = [int(x) for x in doc.get("t") or []]
        n = len(t)
        conditions = doc.get("c") or [[] for _ in range(n)]
        return TickPage(
            str(doc.get("s", symbol)),
            int(doc.get("skip", skip)),
            int(doc.get("total", n)),
            t,
            [float(x) for x in doc.get("p") or []][:n],
            [float(x) for x in doc.get("v") or []][:n],
            [[str(c) for c in cs or []] for cs in conditions][:n],
        )

    async def candles(self, symbol: str, from_s: int, to_s: int) -> Candles:
        doc = await self.get(
            "/stock/candle", {"symbol": symbol, "resolution": "1", "from": from_s, "to": to_s}
        )
        if doc.get("s") != "ok":
            return Candles([], [], [], [], [], [])
        cols = [[float(x) for x in doc.get(k) or []] for k in ("o", "h", "l", "c", "v")]
        return Candles([int(x) for x in doc.get("t") or []], *cols)

    async def get(self, route: str, params: dict[str, Any]) -> dict[str, Any]:
        """One JSON object from ``route``, rate limited and retried."""
        client = self._http()
        assert self._limiter is not None
        what = f"GET {route} {_show(params)}"
        for attempt in range(self.retries + 1):
            async with self._limiter:
                self.requests += 1
                try:
                    resp = await client.get(route, params=params)
                except httpx.TransportError as exc:
                    problem, wait = f"{type(exc).__name__}: {exc}", None
                else:
                    if resp.status_code in (401, 403):
                        raise RestRefused(f"{what}: HTTP {resp.status_code} {_brief(resp)}")
                    if resp.status_code == 200:
                        return _json_object(resp, what)
                    if resp.status_code != 429 and resp.status_code < 500:
                        raise RestError(f"{what}: HTTP {resp.status_code} {_brief(resp)}")
                    problem, wait = f"HTTP {resp.status_code}", _retry_after(resp)
            if attempt == self.retries:
                raise RestError(f"{what}: {self._redact(problem)} after {attempt + 1} attempts")
            if wait is None:
                cap = min(self.backoff_max_s, self.backoff_initial_s * 2.0**attempt)
                wait = self._rng.uniform(0.0, cap)
            log.info("%s: %s; retrying in %.1f s", what, self._redact(problem), wait)
            await self._sleep(wait)
        raise AssertionError("unreachable")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {TOKEN_HEADER: self._token} if self._token else {}
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=self.timeout_s,
                transport=self._transport,
            )
            self._limiter = AsyncLimiter(1, 60.0 / self.requests_per_min)
        return self._client

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


def _show(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items() if k != "token")


def _brief(resp: httpx.Response) -> str:
    return resp.text[:200].strip()


def _json_object(resp: httpx.Response, what: str) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        raise RestError(f"{what}: not JSON: {_brief(resp)}") from None
    if not isinstance(doc, dict):
        raise RestError(f"{what}: not a JSON object: {_brief(resp)}")
    return doc


def _retry_after(resp: httpx.Response) -> float | None:
    """The ``Retry-After`` delay in seconds (a number or an HTTP date), if any."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- what is fetched, and how it becomes messages ------------------------------------------


@dataclass
class Gap:
    """What the feed missed: messages stopped arriving after ``start_us`` and came again
    at ``end_us`` (arrival times, us). ``edge_texts`` are the live message texts that
    arrived within the edge margin before ``start_us`` and after ``end_us``: trades of
    the fetched interval that were received live, and must not be stored twice."""

    start_us: int
    end_us: int
    symbols: tuple[str, ...]
    edge_texts: list[str] = field(default_factory=list)


@dataclass
class Backfill:
    """What one gap's backfill fetched: ``messages`` for the journal, all of ``source``."""

    gap: Gap
    source: str | None = None
    messages: list[str] = field(default_factory=list)
    trades: int = 0
    duplicates: int = 0  # fetched trades already received live, skipped
    error: str | None = None

    def summary(self) -> str:
        span = f"{_hms(self.gap.start_us)}-{_hms(self.gap.end_us)} UTC"
        if self.error is not None:
            return f"gap {span}: backfill failed: {self.error}"
        return (
            f"gap {span}: {self.trades:,} trades from {self.source} for "
            f"{len(self.gap.symbols)} symbols ({self.duplicates:,} already received live)"
        )


def _hms(us: int) -> str:
    return datetime.fromtimestamp(us / US, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]


class Backfiller:
    """Fetches a :class:`Gap` with ``client`` in ``mode`` (``auto``: ticks, and candles
    for good once ``/stock/tick`` is refused).

    The interval fetched is ``[start - edge_s, end]`` in event time (a trade that would
    have arrived in the gap happened before its end, and at most ``edge_s`` before its
    start), at most ``max_gap_s`` long (a longer gap: its end). A trade in it is skipped
    when it equals (symbol, time, price, size) a live trade of ``edge_texts`` not yet
    matched, counting multiplicity: every trade whose live message arrived in the gap is
    fetched once, and none received live is stored twice, as long as a trade arrives
    within ``edge_s`` of its time, never before it, and the edge texts after the gap
    cover that long (:class:`~connectors.finnhub.FinnhubFeed`'s ``settle_s``)."""

    def __init__(
        self,
        client: FinnhubRest,
        mode: Mode = "auto",
        *,
        max_gap_s: float = 900.0,
        edge_s: float = 2.0,
        page_limit: int = TICK_PAGE_LIMIT,
    ) -> None:
        self.client = client
        self.mode: Mode = mode
        self.max_gap_s = max_gap_s
        self.edge_s = edge_s
        self.page_limit = page_limit
        self.candles_refused = False

    async def fill(self, gap: Gap) -> Backfill:
        out = Backfill(gap)
        from_ms, to_ms = self.window_ms(gap)
        try:
            if self.mode != "candle":
                try:
                    trades = await self._ticks(gap.symbols, from_ms, to_ms)
                    self._finish(out, TICK_SOURCE, trades, gap.edge_texts, from_ms, to_ms)
                    return out
                except RestRefused as exc:
                    if self.mode == "tick":
                        raise
                    log.warning("backfill: %s; using minute candles from now on", exc)
                    self.mode = "candle"
            if self.candles_refused:
                raise RestRefused("/stock/candle was refused before")
            try:
                trades = await self._candles(gap, from_ms)
            except RestRefused:
                self.candles_refused = True
                raise
            self._finish(out, CANDLE_SOURCE, trades, [], from_ms, to_ms)
        except RestError as exc:
            out.error = str(exc)
        return out

    def window_ms(self, gap: Gap) -> tuple[int, int]:
        to_ms = -(-gap.end_us // 1000)
        from_ms = gap.start_us // 1000 - round(self.edge_s * 1000)
        from_ms = max(from_ms, to_ms - round(self.max_gap_s * 1000))
        return from_ms, to_ms

    @staticmethod
    def _finish(
        out: Backfill,
        source: str,
        trades: list[RestTrade],
        edge_texts: Sequence[str],
        from_ms: int,
        to_ms: int,
    ) -> None:
        fresh = without_live(trades, edge_texts, from_ms, to_ms)
        out.source = source
        out.duplicates = len(trades) - len(fresh)
        out.trades = len(fresh)
        out.messages = trade_messages(fresh)

    async def _ticks(self, symbols: Iterable[str], from_ms: int, to_ms: int) -> list[RestTrade]:
        trades: list[RestTrade] = []
        for symbol in symbols:
            for day in exchange_days(from_ms, to_ms):
                trades.extend(await self._day_ticks(symbol, day, from_ms, to_ms))
        return trades

    async def _day_ticks(self, symbol: str, day: str, from_ms: int, to_ms: int) -> list[RestTrade]:
        """The day's trades in ``[from_ms, to_ms]``: bisect ``skip`` to the page where
        the interval begins, then read pages on until past its end."""
        limit = self.page_limit
        page = await self.client.ticks(symbol, day, 0, limit)
        lo, hi = 0, page.total  # the first trade at or after from_ms is at an index in [lo, hi]
        while page.t and not _holds_start(page, from_ms, lo):
            if page.t[-1] < from_ms:
                lo = page.skip + len(page.t)
            else:
                hi = page.skip
            if lo >= hi:
                page = await self.client.ticks(symbol, day, lo, limit)
                break
            page = await self.client.ticks(symbol, day, (lo + hi) // 2, limit)
        out: list[RestTrade] = []
        while page.t:
            for i, t in enumerate(page.t):
                if from_ms <= t <= to_ms:
                    out.append(RestTrade(symbol, t, page.p[i], page.v[i], tuple(page.c[i])))
            end = page.skip + len(page.t)
            if page.t[-1] > to_ms or end >= page.total:
                break
            page = await self.client.ticks(symbol, day, end, limit)
        return out

    async def _candles(self, gap: Gap, from_ms: int) -> list[RestTrade]:
        # Whole minutes inside the gap only (the edge margin off its end, where live
        # trades of the minute may still have arrived): a partial one would count again
        # what was received live, and a candle cannot be split.
        first_s = -(-max(gap.start_us, from_ms * 1000) // (60 * US)) * 60
        last_s = (gap.end_us - round(self.edge_s * US)) // (60 * US) * 60 - 60
        trades: list[RestTrade] = []
        if last_s < first_s:
            return trades
        for symbol in gap.symbols:
            bars = await self.client.candles(symbol, first_s, last_s)
            for i, t in enumerate(bars.t):
                if first_s <= t <= last_s:
                    bar = (bars.o[i], bars.h[i], bars.low[i], bars.close[i], bars.v[i])
                    trades.extend(candle_prints(symbol, t, *bar))
        return trades


def _holds_start(page: TickPage, from_ms: int, lo: int) -> bool:
    """Is the first trade at or after ``from_ms`` on this page?"""
    return page.t[0] < from_ms <= page.t[-1] or (page.t[0] >= from_ms and page.skip <= lo)


def exchange_days(from_ms: int, to_ms: int) -> list[str]:
    """The exchange dates (``YYYY-MM-DD``, New York) that ``[from_ms, to_ms]`` touches."""
    first = datetime.fromtimestamp(from_ms / 1000, tz=EXCHANGE_TZ).date()
    last = datetime.fromtimestamp(to_ms / 1000, tz=EXCHANGE_TZ).date()
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def candle_prints(
    symbol: str, t_s: int, o: float, h: float, low: float, c: float, v: float
) -> list[RestTrade]:
    """A minute candle as synthetic prints: open at its start, high 1 ms and low 2 ms
    later (all three of size 0), and the close with the minute's volume at its last ms."""
    ms, cond = t_s * 1000, (CANDLE_CONDITION,)
    return [
        RestTrade(symbol, ms, o, 0.0, cond),
        RestTrade(symbol, ms + 1, h, 0.0, cond),
        RestTrade(symbol, ms + 2, low, 0.0, cond),
        RestTrade(symbol, ms + 59_999, c, v, cond),
    ]


def _live_trades(texts: Iterable[str], from_ms: int, to_ms: int) -> Counter[tuple[Any, ...]]:
    """The live trades in ``[from_ms, to_ms]`` among websocket texts, by what they are."""
    seen: Counter[tuple[Any, ...]] = Counter()
    for text in texts:
        try:
            msg = json.loads(text)
        except ValueError:
            continue
        if not isinstance(msg, dict) or msg.get("type") != "trade":
            continue
        for trade in msg.get("data") or []:
            t = trade.get("t") if isinstance(trade, dict) else None
            if isinstance(t, int) and from_ms <= t <= to_ms:
                seen[(trade.get("s"), t, trade.get("p"), trade.get("v"))] += 1
    return seen


def without_live(
    trades: Sequence[RestTrade], edge_texts: Iterable[str], from_ms: int, to_ms: int
) -> list[RestTrade]:
    """``trades`` less those received live (one fetched trade per live one)."""
    live = _live_trades(edge_texts, from_ms, to_ms)
    out = []
    for tr in trades:
        key = (tr.symbol, tr.t_ms, tr.price, tr.size)
        if live[key] > 0:
            live[key] -= 1
        else:
            out.append(tr)
    return out


def trade_messages(trades: Sequence[RestTrade]) -> list[str]:
    """Finnhub websocket trade messages holding ``trades``, at most 1,000 each."""
    out = []
    for i in range(0, len(trades), MESSAGE_TRADES):
        data = [
            {"s": t.symbol, "p": t.price, "t": t.t_ms, "v": t.size, "c": list(t.conditions)}
            for t in trades[i : i + MESSAGE_TRADES]
        ]
        out.append(json.dumps({"type": "trade", "data": data}, separators=(",", ":")))
    return out
