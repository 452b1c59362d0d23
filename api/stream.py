"""Live events for ``/stream``: ONE ``LISTEN sentinel_stream`` connection per API process,
fanned out to every client through its own bounded asyncio queue.

Migration 0005 announces each new bar, forecast and alert row on channel
``sentinel_stream`` as JSON (the row plus ``"kind"``; for an alert, ``kind`` is the
alert's own column, e.g. ``price_jump``, and the SSE event name says ``alert``). The hub
filters by symbol and kind when it publishes, so a client only queues what it asked for.
Delivery is live and at-most-once: events written while the listener is reconnecting, or
while a client's queue is full (a client too slow to read), are not replayed; a client
that needs every row reads them back from ``/bars``, ``/forecasts`` or ``/alerts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from api.schemas import STREAM_KINDS

log = logging.getLogger(__name__)

CHANNEL = "sentinel_stream"
TIME_FIELDS = ("time", "made_at")


@dataclass(frozen=True)
class Event:
    kind: str
    symbol: str | None
    data: dict[str, Any]

    def sse(self) -> str:
        """The event in server-sent-events framing."""
        return f"event: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


@dataclass(eq=False)
class Subscription:
    symbols: frozenset[str] | None
    kinds: frozenset[str] | None
    queue: asyncio.Queue[Event]
    dropped: int = 0

    def wants(self, event: Event) -> bool:
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        return self.symbols is None or event.symbol in self.symbols

    def offer(self, event: Event) -> None:
        if self.queue.full():  # a slow client loses its oldest events, never blocks others
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


def _utc(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_payload(payload: str) -> Event | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None
    for name in TIME_FIELDS:
        if name in data:
            data[name] = _utc(data[name])
    kind = data["kind"]
    if kind not in STREAM_KINDS and "severity" in data:
        # Migration 0005 merges the row over {"kind": ...}, so an alert's own `kind`
        # column (price_jump, ...) replaces "alert"; the data keeps the row's value.
        kind = "alert"
    symbol = data.get("symbol")
    return Event(kind, symbol if isinstance(symbol, str) else None, data)


@dataclass(eq=False)
class StreamHub:
    """Listens on :data:`CHANNEL` with one connection (reconnecting with backoff) and hands
    each event to the subscriptions that want it."""

    dsn: str
    queue_size: int = 1000
    ping_s: float = 10.0
    backoff_max_s: float = 10.0
    connect_timeout_s: int = 5
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    events_received: int = 0
    _subs: set[Subscription] = field(default_factory=set)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    @contextlib.contextmanager
    def subscribe(
        self, symbols: Collection[str] | None = None, kinds: Collection[str] | None = None
    ) -> Iterator[Subscription]:
        sub = Subscription(
            frozenset(symbols) if symbols else None,
            frozenset(kinds) if kinds else None,
            asyncio.Queue(self.queue_size),
        )
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    def publish(self, event: Event) -> None:
        self.events_received += 1
        for sub in list(self._subs):
            if sub.wants(event):
                sub.offer(event)

    async def run(self) -> None:
        """Listen until cancelled; reconnect after any connection failure."""
        backoff = 0.25
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                if self.connected.is_set():
                    log.warning("stream listener lost the database: %s", exc)
                else:
                    log.debug("stream listener cannot connect: %s", exc)
            if self.connected.is_set():  # it was listening: start the backoff afresh
                backoff = 0.25
            self.connected.clear()
            await asyncio.sleep(random.uniform(0, backoff))  # full jitter
            backoff = min(backoff * 2, self.backoff_max_s)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, connect_timeout=self.connect_timeout_s
        )
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            log.info("stream listener connected (LISTEN %s)", CHANNEL)
            while True:
                async for note in conn.notifies(timeout=self.ping_s):
                    event = parse_payload(note.payload)
                    if event is not None:
                        self.publish(event)
                await conn.execute("SELECT 1")  # quiet channel: is the server still there?
