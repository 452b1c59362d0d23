"""A websocket server speaking Finnhub's trade protocol, fed by the simulator.

Clients connect to ``ws://HOST:PORT/?token=T`` and send ``{"type":"subscribe",
"symbol":"AAPL"}`` or ``{"type":"unsubscribe","symbol":"AAPL"}``. Every ``interval_s``
the server sends each client ``{"type":"trade","data":[...]}`` with the trades of its
symbols since the previous message (none if there were none; several messages of at most
``MAX_MESSAGE_TRADES`` trades if there were more), and every ``ping_interval`` seconds
``{"type":"ping"}``. A client message the server cannot understand gets
``{"type":"error","msg":"..."}`` and the connection stays open. With a ``token``, a
handshake without that token is refused with HTTP 401.

One :class:`~connectors.simulator.TickGenerator`, in wall-clock time, feeds every client,
so two clients subscribed to a symbol see the same trades. A symbol is simulated from
its first subscription until nobody is subscribed to it any more.

With a ``calendar`` (every symbol's) or ``calendars`` (per symbol), a symbol trades at
its market's hours: fully in the regular session, sparsely and flagged with the Form T
condition in extended hours, not at all otherwise (then no trade message is sent, only
pings, as Finnhub does). Without, every symbol trades around the clock.

``bad_rate`` replaces that fraction of the outgoing trade entries by malformed ones, to
exercise the pipeline's dead-letter path.

The same port answers Finnhub's REST routes for gap backfill from the trades it
generated in the last ``history_s`` (:class:`TradeHistory`), with Finnhub's parameters
and response shapes (see :mod:`connectors.finnhub_rest`): ``GET /api/v1/stock/tick``
(``symbol``, ``date``, ``limit``, ``skip``) and ``GET /api/v1/stock/candle`` (``symbol``,
``resolution=1``, ``from``, ``to``); the token as ``X-Finnhub-Token`` or ``?token=``.
``premium=False`` refuses ``/stock/tick`` with 403, as Finnhub does for free plans. So
that a reconnecting client's gap can be served, a symbol nobody is subscribed to any
more is simulated on for ``history_s`` before it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import random
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from http import HTTPStatus
from operator import attrgetter
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connectors._aio import cancel_from_another_thread, run_together
from connectors.simulator import (
    MAX_MESSAGE_TRADES,
    SimParams,
    Spike,
    TickGenerator,
    Trade,
    market_hours,
    trade_json,
    wall_clock_us,
)

__all__ = ["DEFAULT_PORT", "REST_PREFIX", "ServerThread", "TradeHistory", "run", "serve"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765
MAX_SYMBOL_LENGTH = 32
PING = '{"type":"ping"}'
FAR_FUTURE_MS = 10 * 365 * 86_400_000  # ten years
REST_PREFIX = "/api/v1"  # as https://finnhub.io/api/v1
TICK_LIMIT = 25_000
EXCHANGE_TZ = ZoneInfo("America/New_York")

Ready = Callable[[int], None] | asyncio.Future[int]


class TradeHistory:
    """The trades served, per symbol in time order, for the REST routes."""

    def __init__(self, trades: Iterable[Trade] = (), keep_ms: int | None = None) -> None:
        self.keep_ms = keep_ms
        self._by_symbol: dict[str, list[Trade]] = {}
        self.add(sorted(trades, key=_TIME))

    def add(self, trades: Iterable[Trade]) -> None:
        """Add trades later than those held (the generator hands them out in order);
        drop those older than ``keep_ms`` before the newest."""
        touched = set()
        for t in trades:
            self._by_symbol.setdefault(t.symbol, []).append(t)
            touched.add(t.symbol)
        keep = self.keep_ms
        if keep is None:
            return
        for symbol in touched:
            rows = self._by_symbol[symbol]
            del rows[: bisect_left(rows, rows[-1].time_ms - keep, key=_TIME)]

    def between(self, symbol: str, from_ms: int, to_ms: int) -> list[Trade]:
        """``symbol``'s trades with ``from_ms <= time_ms < to_ms``."""
        rows = self._by_symbol.get(symbol, [])
        return rows[bisect_left(rows, from_ms, key=_TIME) : bisect_left(rows, to_ms, key=_TIME)]

    def tick_page(self, symbol: str, day: str, skip: int, limit: int) -> dict[str, Any]:
        """``/stock/tick``'s answer: the New York day's trades, ``limit`` from ``skip``."""
        start = datetime.combine(date.fromisoformat(day), time(), EXCHANGE_TZ)
        from_ms = int(start.timestamp() * 1000)
        to_ms = int((start + timedelta(days=1)).timestamp() * 1000)
        rows = self.between(symbol, from_ms, to_ms)
        page = rows[skip : skip + limit]
        return {
            "s": symbol,
            "skip": skip,
            "count": len(page),
            "total": len(rows),
            "v": [t.volume for t in page],
            "p": [t.price for t in page],
            "t": [t.time_ms for t in page],
            "x": ["SIM"] * len(page),
            "c": [list(t.conditions or ()) for t in page],
        }

    def candles(self, symbol: str, from_s: int, to_s: int) -> dict[str, Any]:
        """``/stock/candle``'s answer at resolution 1: the minutes starting in
        ``[from_s, to_s]`` that traded."""
        first = from_s // 60 * 60
        rows = self.between(symbol, first * 1000, (to_s // 60 * 60 + 60) * 1000)
        cols: dict[str, list[Any]] = {k: [] for k in ("t", "o", "h", "l", "c", "v")}
        i = 0
        while i < len(rows):
            minute = rows[i].time_ms // 60_000 * 60
            j = bisect_right(rows, minute * 1000 + 59_999, lo=i, key=_TIME)
            prices = [t.price for t in rows[i:j]]
            if minute >= from_s:
                for k, v in zip(
                    cols,
                    (minute, prices[0], max(prices), min(prices), prices[-1]),
                    strict=False,
                ):
                    cols[k].append(v)
                cols["v"].append(sum(t.volume for t in rows[i:j]))
            i = j
        return {"s": "ok" if cols["t"] else "no_data", **cols}


_TIME = attrgetter("time_ms")


class _Feed:
    """The shared generator and every client's subscriptions."""

    def __init__(
        self,
        seed: int,
        rate: float,
        bad_rate: float,
        clock: Callable[[], int],
        params: SimParams | None,
        spikes: Sequence[Spike],
        calendar: str | None = None,
        calendars: Mapping[str, str] | None = None,
        history: TradeHistory | None = None,
        history_s: float = 0.0,
    ) -> None:
        params = replace(params or SimParams(), rate=rate)
        self.generator = TickGenerator(
            [], seed, clock(), params=params, spikes=spikes, calendar=calendar, calendars=calendars
        )
        self.clients: dict[ServerConnection, set[str]] = {}
        self.bad_rate = bad_rate
        self.clock = clock
        self._bad_rng = random.Random(seed)
        self.history = history if history is not None else TradeHistory()
        self._linger_us = round(history_s * 1_000_000)
        self._idle_since: dict[str, int] = {}  # symbols nobody wants now, simulated on

    async def handle(self, ws: ServerConnection) -> None:
        subscriptions: set[str] = set()
        self.clients[ws] = subscriptions
        logger.info("client %s connected", ws.remote_address)
        try:
            async for message in ws:
                error = self._on_message(subscriptions, message)
                if error is not None:
                    await ws.send(_error_message(error))
        except ConnectionClosed:
            pass
        finally:
            del self.clients[ws]
            for symbol in subscriptions:
                self._release(symbol)
            logger.info("client %s disconnected", ws.remote_address)

    def _on_message(self, subscriptions: set[str], message: str | bytes) -> str | None:
        """Apply one client message; returns an error text, or None if it was fine."""
        try:
            request = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            return "Invalid JSON message"
        if not isinstance(request, dict):
            return "Message must be a JSON object"
        kind, symbol = request.get("type"), request.get("symbol")
        if kind not in ("subscribe", "unsubscribe"):
            return f"Unknown message type: {kind!r}"
        if not isinstance(symbol, str) or not symbol.strip() or len(symbol) > MAX_SYMBOL_LENGTH:
            return f"Invalid symbol: {symbol!r}"
        if kind == "subscribe" and symbol not in subscriptions:
            subscriptions.add(symbol)
            self._idle_since.pop(symbol, None)
            self.generator.add_symbol(symbol)
        elif kind == "unsubscribe" and symbol in subscriptions:
            subscriptions.discard(symbol)
            self._release(symbol)
        return None

    def _release(self, symbol: str) -> None:
        if not any(symbol in subs for subs in self.clients.values()):
            if self._linger_us > 0:
                self._idle_since[symbol] = self.clock()
            else:
                self.generator.remove_symbol(symbol)

    def _drop_idle(self, now_us: int) -> None:
        for symbol, since in list(self._idle_since.items()):
            if now_us - since >= self._linger_us:
                del self._idle_since[symbol]
                self.generator.remove_symbol(symbol)

    def tick(self) -> None:
        """Send every client the trades of its symbols since the last tick."""
        now_us = max(self.clock(), self.generator.now_us + 1)
        self._drop_idle(now_us)
        trades = self.generator.advance(now_us)
        if self._linger_us > 0:
            self.history.add(trades)
        if not trades or not self.clients:
            return
        entries = [self._entry(t) for t in trades]
        groups: dict[frozenset[str], list[ServerConnection]] = {}
        for ws, subscriptions in self.clients.items():
            if subscriptions:
                groups.setdefault(frozenset(subscriptions), []).append(ws)
        for symbols, clients in groups.items():
            data = [e for t, e in zip(trades, entries, strict=True) if t.symbol in symbols]
            for i in range(0, len(data), MAX_MESSAGE_TRADES):
                part = ",".join(data[i : i + MAX_MESSAGE_TRADES])
                broadcast(clients, '{"type":"trade","data":[' + part + "]}")

    def _entry(self, trade: Trade) -> str:
        if self.bad_rate > 0 and self._bad_rng.random() < self.bad_rate:
            return malformed_entry(trade, self._bad_rng)
        return trade_json(trade)

    def ping(self) -> None:
        broadcast(list(self.clients), PING)


def _error_message(text: str) -> str:
    return json.dumps({"type": "error", "msg": text}, separators=(",", ":"))


def malformed_entry(trade: Trade, rng: random.Random) -> str:
    """A broken version of ``trade``'s entry, of a randomly chosen kind."""
    entry: dict[str, Any] = {
        "s": trade.symbol,
        "p": trade.price,
        "t": trade.time_ms,
        "v": trade.volume,
        "c": list(trade.conditions) if trade.conditions is not None else None,
    }
    kind = rng.randrange(6)
    if kind == 0:
        entry["p"] = "n/a"
    elif kind == 1:
        entry["p"] = float("nan")  # json.dumps writes NaN, as sloppy feeds do
    elif kind == 2:
        entry["v"] = -trade.volume
    elif kind == 3:
        del entry[rng.choice(["s", "p", "t"])]
    elif kind == 4:
        entry["p"] = rng.choice([0, -trade.price])
    else:
        entry["t"] = trade.time_ms + FAR_FUTURE_MS
    return json.dumps(entry, separators=(",", ":"))


def _requests(
    token: str | None, history: TradeHistory, premium: bool
) -> Callable[[ServerConnection, Request], Response | None]:
    """Answers the REST routes, and refuses a websocket handshake without the token."""
    expected = token.encode() if token is not None else None

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        given = request.headers.get("X-Finnhub-Token") or query.get("token", "")
        authorized = expected is None or hmac.compare_digest(given.encode(), expected)
        if url.path.startswith(f"{REST_PREFIX}/"):
            if not authorized:
                return _json(connection, HTTPStatus.UNAUTHORIZED, {"error": "Invalid API key"})
            return _rest(connection, url.path[len(REST_PREFIX) :], query, history, premium)
        if authorized:
            return None
        return connection.respond(HTTPStatus.UNAUTHORIZED, "Invalid or missing token\n")

    return process_request


def _rest(
    connection: ServerConnection,
    route: str,
    query: dict[str, str],
    history: TradeHistory,
    premium: bool,
) -> Response:
    try:
        symbol = query["symbol"]
        if route == "/stock/tick":
            if not premium:
                refusal = {"error": "You don't have access to this resource."}
                return _json(connection, HTTPStatus.FORBIDDEN, refusal)
            limit = min(int(query.get("limit", TICK_LIMIT)), TICK_LIMIT)
            page = history.tick_page(symbol, query["date"], int(query.get("skip", 0)), limit)
            return _json(connection, HTTPStatus.OK, page)
        if route == "/stock/candle":
            if query.get("resolution") != "1":
                return _json(connection, HTTPStatus.UNPROCESSABLE_ENTITY, {"error": "resolution"})
            body = history.candles(symbol, int(query["from"]), int(query["to"]))
            return _json(connection, HTTPStatus.OK, body)
    except (KeyError, ValueError) as exc:
        return _json(connection, HTTPStatus.UNPROCESSABLE_ENTITY, {"error": f"bad request: {exc}"})
    return _json(connection, HTTPStatus.NOT_FOUND, {"error": f"no route {route}"})


def _json(connection: ServerConnection, status: HTTPStatus, body: object) -> Response:
    response = connection.respond(status, json.dumps(body, separators=(",", ":")))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


async def _every(seconds: float, action: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        due += seconds
        await asyncio.sleep(max(0.0, due - loop.time()))
        action()


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    seed: int = 0,
    token: str | None = None,
    ping_interval: float = 10.0,
    rate: float = 4.0,
    bad_rate: float = 0.0,
    interval_s: float = 0.2,
    ready: Ready | None = None,
    clock: Callable[[], int] = wall_clock_us,
    params: SimParams | None = None,
    spikes: Sequence[Spike] = (),
    calendar: str | None = None,
    calendars: Mapping[str, str] | None = None,
    history_s: float = 1200.0,
    history: TradeHistory | None = None,
    premium: bool = True,
) -> None:
    """Serve the simulated Finnhub feed on ``host:port`` (0: any free port) until
    cancelled. ``ready`` is called with (or, a future, resolved to) the bound port.

    ``rate`` is trades per second per symbol (calm regime, regular session);
    ``interval_s`` the time between trade messages; ``calendar`` and ``calendars`` the
    market calendars symbols follow (default: none, trading around the clock).
    The REST routes serve ``history`` (default: what was generated in the last
    ``history_s``; 0: nothing kept), ``/stock/tick`` only if ``premium``.
    """
    if not 0.0 <= bad_rate <= 1.0:
        raise ValueError(f"bad_rate must be in [0, 1], got {bad_rate}")
    history = history or TradeHistory(keep_ms=round(history_s * 1000))
    feed = _Feed(
        seed, rate, bad_rate, clock, params, spikes, calendar, calendars, history, history_s
    )
    if feed.generator.calendar is not None:
        status = market_hours(feed.generator.calendar).status(clock())
        logger.info("%s; the symbols trade at its hours", status)
    async with ws_serve(
        feed.handle,
        host,
        port,
        process_request=_requests(token, feed.history, premium),
        compression=None,
        close_timeout=2,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        logger.info("simulated Finnhub feed on ws://%s:%d/", host, bound)
        if isinstance(ready, asyncio.Future):
            if not ready.done():
                ready.set_result(bound)
        elif ready is not None:
            ready(bound)
        await run_together(_every(interval_s, feed.tick), _every(ping_interval, feed.ping))


def run(host: str = "127.0.0.1", port: int = DEFAULT_PORT, **kw: Any) -> None:
    """Serve until Ctrl-C, logging the URL (``sentinel simulate --port P``). Keyword
    arguments go to :func:`serve`."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token_hint = "?token=..." if kw.get("token") else ""

    def announce(bound: int) -> None:
        logger.info("connect to ws://%s:%d/%s (Ctrl-C stops)", host, bound, token_hint)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, ready=announce, **kw))


class ServerThread:
    """The server in a background thread with its own event loop, for tests and demos.

    >>> with ServerThread(rate=10.0) as server:  # doctest: +SKIP
    ...     url = f"ws://127.0.0.1:{server.port}/"
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> None:
        self.host = host
        self.port = port
        self._kw = kw
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> int:
        """Start serving; returns the bound port."""
        self._thread = threading.Thread(target=self._run, name="simulator-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("simulator server did not start")
        if self._error is not None:
            raise RuntimeError("simulator server failed to start") from self._error
        return self.port

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        def on_ready(bound: int) -> None:
            self.port = bound
            self._started.set()

        self._task = loop.create_task(serve(self.host, self.port, ready=on_ready, **self._kw))
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self._error = exc
        finally:
            self._started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and stop serving; returns when the port is free."""
        if self._thread is None:
            return
        cancel_from_another_thread(self._loop, self._task)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("simulator server did not stop")
        self._thread = None

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
