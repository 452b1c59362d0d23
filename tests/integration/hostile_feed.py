"""A hostile Finnhub-protocol websocket server: good trades for every subscribed symbol,
with every class of bad input a feed can send in between (and inside the same
messages). It records what it sent, so a test can account for every trade."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

DEEP = "[" * 5000 + "]" * 5000
HUGE_DIGITS = int("9" * 400)


@dataclass
class Sent:
    """``ticks``: by symbol, the trades `ticks` must hold; ``rejects``: by reason, the
    rows `ticks_rejected` must hold. A trade the bars step refuses (a bad print) is in
    both: `ticks` stores raw trades as received."""

    ticks: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)


def _trade(symbol: str, price: float | int | str | None, t_ms: int, v: Any = 1, **kw: Any) -> dict:
    entry: dict[str, Any] = {"s": symbol, "p": price, "t": t_ms, "v": v}
    entry.update(kw)
    return entry


def bad_inputs(now_ms: int, price: float) -> list[tuple[dict | str | bytes, str]]:
    """One of each class of bad input, with the reason it must be refused with: a dict
    is a bad trade entry (sent among good ones, in the same message), text or bytes a
    whole bad frame. ``json.dumps`` writes NUL and lone surrogates as JSON escapes."""
    return [
        (DEEP, "malformed_json"),
        ("not json\x00at all", "malformed_json"),
        (b"\xff\xfe binary, not UTF-8 \x00", "malformed_json"),
        ("x" * 1_100_000, "too_large"),
        (_trade("AAPL", 1e308, now_ms), "out_of_range"),
        (_trade("AAPL", HUGE_DIGITS, now_ms), "out_of_range"),
        (_trade("AAPL", price, now_ms, v=HUGE_DIGITS), "out_of_range"),
        (_trade("AAPL", price, HUGE_DIGITS), "implausible_time"),
        (_trade("AA\x00PL", price, now_ms), "bad_text"),
        (_trade("\ud800", price, now_ms), "bad_text"),
        (_trade("AAPL", price, now_ms, c=["1", "\x00"]), "bad_text"),
        (_trade("ZZZZ", price, now_ms), "not_subscribed"),
        (_trade("AAPL", float("nan"), now_ms), "non_finite"),
        (_trade("AAPL", str(price), now_ms), "non_numeric"),
        (_trade("AAPL", -price, now_ms), "non_positive_price"),
        (_trade("AAPL", price, now_ms, v=-5), "negative_size"),
        ({"s": "AAPL", "p": price}, "missing_field"),
        (_trade("AAPL", price, now_ms - 3 * 86_400_000), "implausible_time"),
        ('{"type":"trade","data":["just a string"]}', "malformed_trade"),
        (json.dumps({"type": "trade", "data": "nope"}), "malformed_message"),
        (json.dumps([1, 2, 3]), "malformed_message"),
        (json.dumps({"type": "news"}), "unknown_type"),
        (json.dumps({"type": "error", "msg": "rate limited"}), "feed_error"),
    ]


class HostileFeed:
    """Serves on 127.0.0.1; ``rounds`` messages 20 times a second, then only pings."""

    def __init__(self, rounds: int = 300, seed: int = 7) -> None:
        self.rounds = rounds
        self.rng = random.Random(seed)
        self.sent = Sent()
        self.port = 0
        self.done = threading.Event()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._prices: dict[str, float] = {}

    def __enter__(self) -> HostileFeed:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, max_size=2**24) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _handle(self, ws: ServerConnection) -> None:
        subscribed: set[str] = set()

        async def receive() -> None:
            async for message in ws:
                request = json.loads(message)
                if request.get("type") == "subscribe":
                    subscribed.add(request["symbol"])

        receiver = asyncio.create_task(receive())
        try:
            while not subscribed:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # every subscription is in: the rest are not
            await self._send_rounds(ws, sorted(subscribed))
            self.done.set()
            while True:
                await ws.send('{"type":"ping"}')
                await asyncio.sleep(0.2)
        except ConnectionClosed:
            pass  # the pipeline stopped
        finally:
            receiver.cancel()

    async def _send_rounds(self, ws: ServerConnection, symbols: list[str]) -> None:
        rng, sent = self.rng, self.sent
        for n in range(self.rounds):
            now_ms = time.time_ns() // 1_000_000
            good = []
            for s in symbols:
                p = self._prices.get(s, 100.0) * (1 + rng.gauss(0, 0.0005))
                self._prices[s] = p
                good.append(_trade(s, round(p, 4), now_ms, rng.randint(1, 500)))
            bads = bad_inputs(now_ms, self._prices["AAPL"])
            bad, reason = bads[n % len(bads)]
            if isinstance(bad, dict):  # between good trades of the same message
                data = [*good[:1], bad, *good[1:]]
                await ws.send(json.dumps({"type": "trade", "data": data}))
            else:  # a bad frame between good messages
                await ws.send(json.dumps({"type": "trade", "data": good[:1]}))
                await ws.send(bad)
                await ws.send(json.dumps({"type": "trade", "data": good[1:]}))
            sent.rejects[reason] += 1
            sent.ticks.update(t["s"] for t in good)
            if n % 50 == 25:
                await self._special(ws, symbols, now_ms)
            await asyncio.sleep(0.05)

    async def _special(self, ws: ServerConnection, symbols: list[str], now_ms: int) -> None:
        """A trade stamped 50 s ahead of its arrival (accepted: it must not make the next
        trades late) and a bad print 100 times the price (refused by the bars step)."""
        s = symbols[-1]
        ahead = _trade(s, round(self._prices[s], 4), now_ms + 50_000, 1)
        bad_print = _trade(s, round(self._prices[s] * 100, 4), now_ms, 1)
        await ws.send(json.dumps({"type": "trade", "data": [ahead, bad_print]}))
        self.sent.ticks[s] += 2
        self.sent.rejects["implausible_price"] += 1
