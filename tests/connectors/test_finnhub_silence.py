"""Silent connections: a server that accepts and then sends nothing (while answering the
websocket protocol's pings) is caught within ``silent_after_s`` and reconnected, with the
reason in the log, in the feed's state and in ``feed_status``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from websockets.asyncio.server import ServerConnection, serve

from connectors._aio import cancel_from_another_thread
from connectors.finnhub import FinnhubFeed, silence_reason
from connectors.timescale.tickers import TickerFollower
from dataflows.records import wall_clock_us

SILENT_AFTER_S = 1.0
BACKOFF_MAX_S = 0.2


class QuietServer:
    """A websocket server on 127.0.0.1 that notes when each client connects, then sends
    it nothing (or a ping every ``ping_every_s``); the library answers protocol pings."""

    def __init__(self, ping_every_s: float | None = None) -> None:
        self.ping_every_s = ping_every_s
        self.connected_at: list[float] = []  # time.monotonic()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, ws: ServerConnection) -> None:
        self.connected_at.append(time.monotonic())
        while self.ping_every_s is not None:
            await ws.send('{"type":"ping"}')
            await asyncio.sleep(self.ping_every_s)
        await ws.wait_closed()

    async def _serve(self) -> None:
        async with serve(self._handle, "127.0.0.1", 0, ping_interval=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await asyncio.Future()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._serve())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    def __enter__(self) -> QuietServer:
        self._thread.start()
        assert self._ready.wait(10), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        cancel_from_another_thread(self._loop, self._task)
        self._thread.join(10)


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def feeds() -> Iterator[Callable[..., FinnhubFeed]]:
    started: list[FinnhubFeed] = []

    def make(port: int, tickers: TickerFollower | None = None) -> FinnhubFeed:
        feed = FinnhubFeed(
            f"ws://127.0.0.1:{port}/",
            None,
            ["AAPL"],
            tickers,
            0.05,
            BACKOFF_MAX_S,
            None,
            wall_clock_us,
            silent_after_s=SILENT_AFTER_S,
        )
        feed.start()
        started.append(feed)
        return feed

    yield make
    for feed in started:
        feed.stop()


def test_a_silent_server_is_detected_and_reconnected_within_the_limit(
    db: str, feeds: Callable[..., FinnhubFeed], caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO tickers (symbol) VALUES ('AAPL')")
    caplog.set_level(logging.WARNING, logger="connectors.finnhub")
    with QuietServer() as server:
        feed = feeds(server.port, TickerFollower(db, poll_interval_s=0.1))
        wait_until(lambda: len(server.connected_at) >= 2, 10, "a second connection")
        first, second = server.connected_at[:2]
        # Not before the limit; then at most the close handshake, the backoff and a connect.
        assert SILENT_AFTER_S <= second - first < SILENT_AFTER_S + BACKOFF_MAX_S + 0.5
        reason = silence_reason(SILENT_AFTER_S)
        assert reason == "no message (trade or ping) for 1 s: reconnecting"
        assert feed.state.silent_reconnects >= 1
        assert feed.state.reconnects >= 1
        assert feed.state.last_error == reason
        assert f"disconnected from ws://127.0.0.1:{server.port}/: {reason}" in caplog.messages

        def status() -> tuple[Any, ...] | None:
            with psycopg.connect(db) as conn:
                return conn.execute(
                    "SELECT silent_reconnects, reconnects, last_error FROM feed_status"
                    " WHERE source = 'finnhub' AND silent_reconnects >= 2"
                ).fetchone()

        wait_until(status, 10, "feed_status to show the silent reconnects")
        row = status()
        assert row is not None
        assert row[0] >= 2
        # A silence is counted when its connection closes, the reconnect once the next
        # one opens: the status may be written in between.
        assert row[1] >= row[0] - 1
        assert row[2] == reason


def test_a_server_that_pings_is_not_silent(feeds: Callable[..., FinnhubFeed]) -> None:
    with QuietServer(ping_every_s=0.3) as server:
        feed = feeds(server.port)
        # Nine pings 0.3 s apart: 2.4 s, more than twice the limit, on one connection.
        wait_until(lambda: len(feed.inbox) >= 9, 10, "nine pings")
        assert len(server.connected_at) == 1
        assert feed.state.silent_reconnects == 0
        assert feed.state.connected
