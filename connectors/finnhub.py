"""The live feed: Finnhub's trade websocket (or the local simulator speaking it).

A background thread runs the websocket on its own asyncio loop. It reconnects after any
disconnect or failed connect, with exponential backoff and full jitter, and subscribes
again to every wanted symbol each time. With a
:class:`~connectors.timescale.tickers.TickerFollower` the wanted symbols follow the
``tickers`` table, so tickers are added and removed while the pipeline runs, and the
feed's health is published to ``feed_status``.

Every received text is queued unchanged with its receive time; the Bytewax partition
drains the queue into :class:`~dataflows.records.RawBatch` records. Parsing and validation
belong to the dataflow.

**Silent connections.** A connection that delivers no message at all (no trade, no
ping: Finnhub pings every few seconds) for ``silent_after_s`` is closed and opened
again, with the reason logged, kept in ``last_error`` and counted in
``silent_reconnects``. Websocket protocol pings do not count: a server that answers
them but sends nothing is caught too.

**Gap backfill.** With a :class:`~connectors.finnhub_rest.Backfiller`, the first message
after a reconnect ends a :class:`~connectors.finnhub_rest.Gap` that began with the last
message before it (or, for a restarted feed process, the journal's last message). Once
``settle_s`` has passed (the trades at the gap's end have then arrived live), a task on
the feed's loop fetches it, never holding up receipt, and queues the trades in ``inbox``
as :class:`Backfilled` messages (``seq`` from the same sequence as the live ones).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple
from urllib.parse import quote

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from connectors._aio import cancel_from_another_thread, run_together
from connectors.finnhub_rest import Backfiller, Gap
from connectors.timescale.tickers import FeedStatus, TickerFollower
from dataflows.records import US, RawBatch, RowBlock, wall_clock_us

__all__ = [
    "DEFAULT_URL",
    "SEQ_SHIFT",
    "Backfilled",
    "FeedState",
    "FinnhubFeed",
    "FinnhubSource",
    "silence_reason",
]

logger = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:8765/"  # `sentinel simulate`, on its default port
SEQ_SHIFT = 0  # seq = receive time in us, bumped to stay increasing; the parser adds trade bits


@dataclass
class FeedState:
    """Health of the live feed, updated by its thread.

    ``reconnects`` counts successful connections after the first one;
    ``silent_reconnects`` the connections closed for silence.
    """

    connected: bool = False
    last_message_us: int | None = None
    last_trade_us: int | None = None  # a trade message, not a ping
    reconnects: int = 0
    last_error: str | None = None
    silent_reconnects: int = 0
    backfilled_trades: int = 0
    last_backfill_us: int | None = None
    last_backfill: str | None = None  # what the last backfill did, or why it failed


class Backfilled(NamedTuple):
    """A trade message fetched to fill a gap, from ``source`` (one of
    :data:`~dataflows.records.BACKFILL_SOURCES`)."""

    source: str
    message: str


InboxItem = tuple[int, "str | Backfilled"]


def silence_reason(silent_after_s: float) -> str:
    return f"no message (trade or ping) for {silent_after_s:g} s: reconnecting"


def _with_token(url: str, token: str | None) -> str:
    if token is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class FinnhubFeed:
    """The websocket (and the tickers follower) on an asyncio loop in a thread.

    Received texts queue in ``inbox`` as ``(seq, text)``, ``seq`` the receive time in
    microseconds, bumped to stay above ``last_seq`` and increasing; backfilled messages
    as ``(seq, Backfilled)``. ``resume_from`` (the journal's last messages, as
    ``(stamp_us, text)``) makes the time since the newest of them a gap to backfill."""

    def __init__(
        self,
        url: str,
        token: str | None,
        symbols: Iterable[str],
        tickers: TickerFollower | None,
        backoff_initial_s: float,
        backoff_max_s: float,
        proxy: str | None,
        clock: Callable[[], int],
        last_seq: int = 0,
        *,
        silent_after_s: float = 60.0,
        backfiller: Backfiller | None = None,
        settle_s: float = 3.0,
        resume_from: Iterable[tuple[int, str]] = (),
    ) -> None:
        self.url = url  # logged: never the token
        self._token = token
        self._full_url = _with_token(url, token)
        self._tickers = tickers
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._proxy = proxy
        self._clock = clock
        self._rng = random.Random()
        self.state = FeedState()
        self.inbox: deque[InboxItem] = deque()
        # Replaced whole, never mutated: the partition reads it from another thread.
        self.wanted: frozenset[str] = frozenset(symbols)
        self._last_seq = last_seq
        self.silent_after_s = silent_after_s
        self._backfiller = backfiller
        self.settle_s = settle_s
        # Live texts of the last moments (arrival us), for the edges of a gap.
        self._recent: deque[tuple[int, str]] = deque(resume_from)
        self._edge_us = round((backfiller.edge_s if backfiller else 0.0) * US)
        self._keep_us = 2 * self._edge_us + round(settle_s * US) + US
        self._gap_from: tuple[int, frozenset[str]] | None = None
        if backfiller is not None and self._recent:
            self._gap_from = (self._recent[-1][0], self.wanted)
        self._gaps: asyncio.Queue[Gap] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="finnhub-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        cancel_from_another_thread(self._loop, self._task)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("feed thread did not stop within %.1f s", timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._changed = asyncio.Event()
        self._task = loop.create_task(self._main())
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception:
            logger.exception("feed thread failed")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        loops = [self._connection_loop()]
        if self._tickers is not None:
            loops.append(self._tickers.run(self._set_wanted, self._status))
        if self._backfiller is not None:
            self._gaps = asyncio.Queue()
            loops.append(self._backfill_loop())
        await run_together(*loops)

    async def _connection_loop(self) -> None:
        failures = 0
        connected_before = False
        while True:
            logger.info("connecting to %s", self.url)
            reason = "closed"
            got_messages = False
            try:
                async with connect(
                    self._full_url,
                    open_timeout=10,
                    close_timeout=2,
                    max_size=2**24,
                    proxy=self._proxy,
                ) as ws:
                    if connected_before:
                        self.state.reconnects += 1
                    connected_before = True
                    self.state.connected = True
                    logger.info("connected to %s", self.url)
                    reason, got_messages = await self._session(ws)
            except Exception as exc:
                reason = self._redact(_describe(exc))
            if self._backfiller is not None and self._gap_from is None:
                last = self.state.last_message_us
                if last is not None:
                    self._gap_from = (last, self.wanted)
            was_connected = self.state.connected
            self.state.connected = False
            self.state.last_error = reason
            if got_messages:  # a healthy connection resets the backoff
                failures = 0
            if was_connected:
                logger.warning("disconnected from %s: %s", self.url, reason)
            else:
                logger.warning("connection to %s failed: %s", self.url, reason)
            cap = min(self._backoff_max_s, self._backoff_initial_s * 2.0 ** min(failures, 62))
            delay = self._rng.uniform(0.0, cap)
            failures += 1
            logger.info("retrying in %.2f s", delay)
            await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> tuple[str, bool]:
        """Subscribe, then receive until the connection ends; returns why, and whether
        any message came."""
        subscribed: set[str] = set()
        await self._sync(ws, subscribed)
        syncer = asyncio.create_task(self._sync_on_change(ws, subscribed))
        got_messages = False
        try:
            while True:
                try:
                    # Cancelling recv() loses nothing (websockets' documentation).
                    message = await asyncio.wait_for(ws.recv(), self.silent_after_s)
                except TimeoutError:
                    self.state.silent_reconnects += 1
                    return silence_reason(self.silent_after_s), got_messages
                now_us = self._clock()
                text = message if isinstance(message, str) else message.decode(errors="replace")
                self.inbox.append((self._next_seq(now_us), text))
                if self._backfiller is not None:
                    self._remember(now_us, text)
                self.state.last_message_us = now_us
                if '"trade"' in text:  # a cheap look: the dataflow parses
                    self.state.last_trade_us = now_us
                got_messages = True
        except ConnectionClosedOK:
            pass
        except ConnectionClosed as exc:
            return _describe(exc), got_messages
        finally:
            syncer.cancel()
            await asyncio.gather(syncer, return_exceptions=True)
        reason = f"closed by server, code {ws.close_code}"
        return (f"{reason}: {ws.close_reason}" if ws.close_reason else reason), got_messages

    def _next_seq(self, now_us: int) -> int:
        seq = max(now_us << SEQ_SHIFT, self._last_seq + 1)
        self._last_seq = seq
        return seq

    # -- gaps -----------------------------------------------------------------------------

    def _remember(self, now_us: int, text: str) -> None:
        recent = self._recent
        if self._gap_from is not None:  # the first message since the gap
            start_us, wanted_before = self._gap_from
            self._gap_from = None
            before = [t for a, t in recent if a >= start_us - self._edge_us]
            symbols = tuple(sorted(wanted_before & self.wanted))
            if symbols and self._gaps is not None and now_us > start_us:
                gap = Gap(start_us, now_us, symbols, before)
                asyncio.get_running_loop().call_later(self.settle_s, self._settled, gap)
        recent.append((now_us, text))
        while recent and recent[0][0] < now_us - self._keep_us:
            recent.popleft()

    def _settled(self, gap: Gap) -> None:
        """The gap's end has been received live for ``settle_s``: fetch it now."""
        gap.edge_texts.extend(t for a, t in self._recent if a >= gap.end_us)
        assert self._gaps is not None
        self._gaps.put_nowait(gap)

    async def _backfill_loop(self) -> None:
        assert self._gaps is not None
        assert self._backfiller is not None
        while True:
            gap = await self._gaps.get()
            result = await self._backfiller.fill(gap)
            now_us = self._clock()
            if result.source is not None:
                for text in result.messages:
                    self.inbox.append((self._next_seq(now_us), Backfilled(result.source, text)))
            st = self.state
            st.backfilled_trades += result.trades
            st.last_backfill_us = now_us
            st.last_backfill = self._redact(result.summary())
            log_at = logging.WARNING if result.error else logging.INFO
            logger.log(log_at, "backfill: %s", st.last_backfill)

    async def _sync_on_change(self, ws: ClientConnection, subscribed: set[str]) -> None:
        assert self._changed is not None
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._sync(ws, subscribed)

    async def _sync(self, ws: ClientConnection, subscribed: set[str]) -> None:
        """Bring the connection's subscriptions to the wanted set."""
        wanted = self.wanted
        for symbol in sorted(wanted - subscribed):
            await ws.send(json.dumps({"type": "subscribe", "symbol": symbol}))
            subscribed.add(symbol)
            logger.info("subscribed %s", symbol)
        for symbol in sorted(subscribed - wanted):
            await ws.send(json.dumps({"type": "unsubscribe", "symbol": symbol}))
            subscribed.discard(symbol)
            logger.info("unsubscribed %s", symbol)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _set_wanted(self, symbols: frozenset[str]) -> None:
        if symbols == self.wanted:
            return
        added, removed = sorted(symbols - self.wanted), sorted(self.wanted - symbols)
        self.wanted = symbols
        logger.info("tickers changed: added %s, removed %s", added, removed)
        assert self._changed is not None
        self._changed.set()

    def _status(self) -> FeedStatus:
        st = self.state
        return FeedStatus(
            "finnhub",
            self.url,
            st.connected,
            sorted(self.wanted),
            st.last_message_us,
            st.last_trade_us,
            st.reconnects,
            st.last_error,
            st.silent_reconnects,
            st.backfilled_trades,
            st.last_backfill_us,
            st.last_backfill,
        )


class _FinnhubPartition(StatefulSourcePartition[RawBatch, None]):
    def __init__(
        self,
        feed: FinnhubFeed,
        clock: Callable[[], int],
        max_batch: int,
        heartbeat_us: int,
        poll_us: int,
    ) -> None:
        self._feed = feed
        self._clock = clock
        self._max_batch = max_batch
        self._heartbeat_us = heartbeat_us
        self._poll_us = poll_us
        self._last_emit_us = clock() - heartbeat_us  # emit at once: subscriptions are news
        feed.start()

    @override
    def next_batch(self) -> list[RawBatch]:
        now_us = self._clock()
        inbox = self._feed.inbox
        n = min(len(inbox), self._max_batch)
        if n == 0 and now_us - self._last_emit_us < self._heartbeat_us:
            return []
        items = [inbox.popleft() for _ in range(n)]
        self._last_emit_us = now_us
        subscribed = tuple(sorted(self._feed.wanted))
        batches: list[RawBatch] = []
        source = "finnhub"
        messages: list[tuple[int, str | RowBlock]] = []
        for seq, item in items:
            item_source, text = (
                (item.source, item.message) if isinstance(item, Backfilled) else ("finnhub", item)
            )
            if item_source != source and messages:
                batches.append(RawBatch(source, now_us, messages, subscribed))
                messages = []
            source = item_source
            messages.append((seq, text))
        if messages or not batches:
            source = source if messages else "finnhub"
            batches.append(RawBatch(source, now_us, messages, subscribed))
        return batches

    @override
    def next_awake(self) -> datetime | None:
        if self._feed.inbox:
            return None
        wake_us = min(self._clock() + self._poll_us, self._last_emit_us + self._heartbeat_us)
        return datetime.fromtimestamp(wake_us / US, tz=timezone.utc)

    @override
    def snapshot(self) -> None:
        return None

    @override
    def close(self) -> None:
        self._feed.stop()


class FinnhubSource(FixedPartitionedSource[RawBatch, None]):
    """Finnhub's websocket trade feed as :class:`~dataflows.records.RawBatch` records
    (``source="finnhub"``), one partition named ``"finnhub"``.

    Delivery guarantee: at-most-once. A live feed has nothing to rewind: the snapshot is
    ``None``, and whatever arrives while the pipeline or the connection is down is lost.

    Each batch holds up to ``max_batch`` message texts, unchanged (pings included), as
    ``(seq, text)``; ``seq = receive_us << SEQ_SHIFT | n`` is unique and strictly
    increasing. ``clock_us`` is the clock when the batch was taken, and ``subscribed`` the
    symbols the source wants to be subscribed to (subscribed, or will be once reconnected:
    while the feed is down they are the ones going stale). A batch comes at least every
    ``heartbeat_s``, empty if need be.

    ``symbols`` are the initial subscriptions. With ``tickers`` (a
    :class:`~connectors.timescale.tickers.TickerFollower`) the ``tickers`` table is the
    authority: its active symbols replace them as soon as it is first read, and changes
    apply within a notification or at most its poll interval. ``proxy`` is passed to
    ``websockets`` (``None``: connect directly). A connection silent for
    ``silent_after_s`` (no trade, no ping) is closed and opened again.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        symbols: Iterable[str] = (),
        tickers: TickerFollower | None = None,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_batch: int = 5000,
        heartbeat_s: float = 0.5,
        proxy: str | None = None,
        silent_after_s: float = 60.0,
        clock: Callable[[], int] = wall_clock_us,
    ) -> None:
        self.url = url
        self.token = token
        self.symbols = list(symbols)
        self.tickers = tickers
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_batch = max_batch
        self.heartbeat_s = heartbeat_s
        self.proxy = proxy
        self.silent_after_s = silent_after_s
        self.clock = clock
        self._state: FeedState | None = None

    @property
    def state(self) -> FeedState:
        """The running feed's health (a fresh, disconnected state before it starts)."""
        return self._state if self._state is not None else FeedState()

    @override
    def list_parts(self) -> list[str]:
        return ["finnhub"]

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FinnhubPartition:
        feed = FinnhubFeed(
            self.url,
            self.token,
            self.symbols,
            self.tickers,
            self.backoff_initial_s,
            self.backoff_max_s,
            self.proxy,
            self.clock,
            silent_after_s=self.silent_after_s,
        )
        self._state = feed.state
        return _FinnhubPartition(
            feed,
            self.clock,
            self.max_batch,
            round(self.heartbeat_s * US),
            poll_us=50_000,
        )
