"""Gap backfill from Finnhub's REST routes, served by the simulator over HTTP (its
:class:`~connectors.simulator_server.TradeHistory` holding a recorded tape): paging with
``skip``, the candle fallback on 403, the rate limit, retries, the token kept out of
logs and errors, de-duplication at the gap's edges, and a 30 s gap whose backfill gives
the bars of a run without the gap."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from bytewax.testing import run_main

from connectors.finnhub import FinnhubFeed
from connectors.finnhub_rest import (
    Backfiller,
    FinnhubRest,
    Gap,
    RestError,
    RestTrade,
    without_live,
)
from connectors.journal import BACKFILL, HEARTBEAT, MESSAGE, SUBSCRIBED, Journal, JournalSource
from connectors.recorder import FeedRecorder
from connectors.simulator import TickGenerator, Trade, finnhub_trade_message
from connectors.simulator_server import REST_PREFIX, ServerThread, TradeHistory
from dataflows.bars import BarConfig
from dataflows.parse import parse_batch
from dataflows.records import US, RawBatch, wall_clock_us
from dataflows.ticks import FlowConfig
from sentinel.flows import memory_flow, rows_of

T0 = 1_772_463_600 * US  # 2026-03-02 15:00 UTC, 10:00 in New York
SYMBOLS = ("AAPL", "MSFT")
TOKEN = "sekret-token-123"


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def tape(seconds: float, symbols: tuple[str, ...] = SYMBOLS, seed: int = 5) -> list[Trade]:
    return TickGenerator(symbols, seed, T0).advance(T0 + round(seconds * US))


class Recording(httpx.AsyncHTTPTransport):
    """The real HTTP transport, noting each request and when it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[float, httpx.Request]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((time.monotonic(), request))
        return await super().handle_async_request(request)


@pytest.fixture
def rest() -> Iterator[Any]:
    """Starts the simulator serving a tape; yields ``start(trades, **kw) -> base URL``."""
    servers: list[ServerThread] = []

    def start(trades: list[Trade], **kw: Any) -> str:
        server = ServerThread(history=TradeHistory(trades), token=TOKEN, **kw)
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}{REST_PREFIX}"

    yield start
    for server in servers:
        server.stop()


def client(url: str, transport: httpx.AsyncBaseTransport, **kw: Any) -> FinnhubRest:
    kw.setdefault("requests_per_min", 60_000.0)
    return FinnhubRest(url, TOKEN, transport=transport, **kw)


def fill(backfiller: Backfiller, gap: Gap) -> Any:
    async def go() -> Any:
        try:
            return await backfiller.fill(gap)
        finally:
            await backfiller.client.aclose()

    return asyncio.run(go())


def fetched(messages: list[str]) -> list[tuple[Any, ...]]:
    return [
        (d["s"], d["t"], d["p"], d["v"], tuple(d["c"]))
        for m in messages
        for d in json.loads(m)["data"]
    ]


def as_rows(trades: list[Trade]) -> list[tuple[Any, ...]]:
    return [(t.symbol, t.time_ms, t.price, t.volume, t.conditions) for t in trades]


def test_tick_pages_are_found_with_skip_and_read_on(rest: Any) -> None:
    trades = tape(600, ("AAPL",))  # ~2,400 trades, 24 pages of 100
    transport = Recording()
    backfiller = Backfiller(client(rest(trades), transport), "tick", page_limit=100, edge_s=2.0)
    gap = Gap(T0 + 300 * US, T0 + 330 * US, ("AAPL",))
    result = fill(backfiller, gap)

    from_ms, to_ms = (T0 + 298 * US) // 1000, (T0 + 330 * US) // 1000
    assert backfiller.window_ms(gap) == (from_ms, to_ms)
    expected = [t for t in trades if from_ms <= t.time_ms <= to_ms]
    assert result.error is None
    assert result.source == "finnhub_tick"
    assert fetched(result.messages) == as_rows(expected)
    assert (result.trades, result.duplicates) == (len(expected), 0)

    params = [dict(r.url.params) for _, r in transport.requests]
    assert all(r.url.path == f"{REST_PREFIX}/stock/tick" for _, r in transport.requests)
    assert {(p["symbol"], p["date"], p["limit"], p["format"]) for p in params} == {
        ("AAPL", "2026-03-02", "100", "json")
    }
    skips = [int(p["skip"]) for p in params]
    first, last = trades.index(expected[0]), trades.index(expected[-1])
    # Bisection: at most log2(pages) probes after the first page, to the page holding
    # the window's first trade; from there, page after page to the one holding its last.
    found = max(i for i, skip in enumerate(skips) if skip <= first < skip + 100)
    reads = skips[found:]
    assert skips[0] == 0
    assert found <= 1 + math.ceil(math.log2(math.ceil(len(trades) / 100)))
    assert all(b - a == 100 for a, b in itertools.pairwise(reads))
    assert reads[-1] <= last < reads[-1] + 100 or reads[-1] == last + 1


def test_candles_stand_in_where_ticks_are_refused(rest: Any) -> None:
    trades = tape(600, ("AAPL",))
    transport = Recording()
    backfiller = Backfiller(client(rest(trades, premium=False), transport), "auto", edge_s=2.0)
    gap = Gap(T0 + 90_500_000, T0 + 300_000_000, ("AAPL",))  # minutes 2, 3 and 4 are whole
    result = fill(backfiller, gap)

    assert result.error is None
    assert result.source == "finnhub_candle"
    assert backfiller.mode == "candle", "refused once: candles from now on"
    routes = [(r.url.path, r.url.params.get("resolution")) for _, r in transport.requests]
    assert routes == [
        (f"{REST_PREFIX}/stock/tick", None),
        (f"{REST_PREFIX}/stock/candle", "1"),
    ]
    df = pd.DataFrame(as_rows(trades), columns=["s", "t", "p", "v", "c"])
    df["minute"] = df.t // 60_000 * 60_000
    bars = df.groupby("minute").agg(
        o=("p", "first"), h=("p", "max"), l=("p", "min"), c=("p", "last"), v=("v", "sum")
    )
    expected = []
    for m in (T0 // 1000 + 120_000, T0 // 1000 + 180_000):
        b = bars.loc[m]
        expected += [
            ("AAPL", m, b.o, 0.0, ("candle",)),
            ("AAPL", m + 1, b.h, 0.0, ("candle",)),
            ("AAPL", m + 2, b.l, 0.0, ("candle",)),
            ("AAPL", m + 59_999, b.c, float(b.v), ("candle",)),
        ]
    # Minute 4 ends at 300 s, inside the edge margin before the gap's end: not whole.
    assert fetched(result.messages) == expected


def test_requests_keep_to_the_rate_limit(rest: Any) -> None:
    transport = Recording()
    rest_client = client(rest(tape(10)), transport, requests_per_min=600.0)  # one per 0.1 s

    async def go() -> None:
        try:
            await asyncio.gather(*(rest_client.candles("AAPL", 0, 60) for _ in range(6)))
        finally:
            await rest_client.aclose()

    asyncio.run(go())
    times = [t for t, _ in transport.requests]
    assert len(times) == 6
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.1 - 0.01
    assert times[-1] - times[0] >= 0.5 - 0.01


def test_429_and_5xx_are_retried_after_what_the_server_asks() -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(503),
        httpx.Response(200, json={"s": "no_data"}),
    ]
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[len(seen) - 1]

    rest_client = FinnhubRest(
        "http://finnhub.invalid/api/v1",
        TOKEN,
        backoff_initial_s=1.0,
        requests_per_min=60_000.0,
        sleep=sleep,
        transport=httpx.MockTransport(handler),
    )
    result = asyncio.run(rest_client.candles("AAPL", 0, 60))
    assert result.t == []
    assert len(seen) == 3
    assert waits[0] == 7.0
    assert 0.0 <= waits[1] <= 2.0  # full jitter under the second attempt's cap


def test_the_token_is_in_no_url_log_line_or_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(502, text=f"upstream said {request.url}")

    async def sleep(s: float) -> None:
        pass

    rest_client = FinnhubRest(
        "http://finnhub.invalid/api/v1",
        TOKEN,
        retries=2,
        requests_per_min=60_000.0,
        sleep=sleep,
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(RestError) as err:
        asyncio.run(rest_client.ticks("AAPL", "2026-03-02", 0))
    assert len(seen) == 3
    assert all(r.headers["X-Finnhub-Token"] == TOKEN for r in seen)
    assert all(TOKEN not in str(r.url) for r in seen)
    assert TOKEN not in str(err.value)
    assert "GET /stock/tick symbol=AAPL date=2026-03-02" in str(err.value)
    assert caplog.records, "the retries were logged"
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_trades_received_live_at_the_edges_are_not_fetched_twice() -> None:
    a = {"s": "AAPL", "p": 10.0, "t": 1_000, "v": 5, "c": ["1"]}
    outside = {**a, "t": 10}  # before the window: says nothing about fetched trades
    live = [
        json.dumps({"type": "trade", "data": [a, a, outside]}),
        '{"type":"ping"}',
        "not json",
    ]
    fetched_trades = [
        RestTrade("AAPL", 1_000, 10.0, 5.0, ("1",)),
        RestTrade("AAPL", 1_000, 10.0, 5.0, ("1",)),
        RestTrade("AAPL", 1_000, 10.0, 5.0, ("1",)),  # the third was not received live
        RestTrade("AAPL", 1_000, 10.0, 6.0, ("1",)),
        RestTrade("MSFT", 1_000, 10.0, 5.0, ("1",)),
        RestTrade("AAPL", 10, 10.0, 5.0, ("1",)),
    ]
    kept = without_live(fetched_trades, live, 100, 2_000)
    assert kept == fetched_trades[2:]


# -- a 30 s gap, backfilled, gives the bars of a run without it -----------------------------

TICK_US = 200_000  # the simulator sends a message every 0.2 s
LATENCY_US = 30_000


def live_messages(trades: list[Trade]) -> list[tuple[int, str]]:
    """``(arrival_us, text)`` as the simulator would send the tape, 30 ms on the way."""
    by_tick: dict[int, list[Trade]] = {}
    for t in trades:
        by_tick.setdefault(t.time_ms * 1000 // TICK_US, []).append(t)
    return [
        ((k + 1) * TICK_US + LATENCY_US, finnhub_trade_message(ts))
        for k, ts in sorted(by_tick.items())
    ]


def write_journal(path: Path, entries: list[tuple[int, int, str | None]]) -> None:
    with Journal(path) as journal:
        journal.append([(None, SUBSCRIBED, json.dumps(list(SYMBOLS)))])
        ordered = sorted(entries, key=lambda e: e[0])  # in stamp order, as written
        journal.append(ordered)


def heartbeats(end_us: int) -> list[tuple[int, int, str | None]]:
    return [(t + 1, HEARTBEAT, None) for t in range(T0, end_us, 100_000)]


def bars_of(path: Path) -> tuple[dict[tuple[str, int], tuple[Any, ...]], list[Any]]:
    """The final bars (the newest revision of each) and the ticks of the dataflow run
    over the journal at ``path``."""
    part = JournalSource(path).build_part("feed", "journal", None)
    batches: list[RawBatch] = []
    while chunk := part.next_batch():
        batches.extend(chunk)
    part.close()
    config = FlowConfig(bars=BarConfig(bar_seconds=5, allowance_s=1, revision_window_s=300))
    flow, sinks = memory_flow(batches, config)
    run_main(flow)
    rows = rows_of(sinks)
    final: dict[tuple[str, int], Any] = {}
    for bar in rows["bars"]:
        key = (bar.symbol, bar.start_us)
        if key not in final or bar.revision >= final[key].revision:
            final[key] = bar
    values = {
        k: (b.open, b.high, b.low, b.close, b.volume, round(b.vwap, 9), b.trades)
        for k, b in final.items()
    }
    return values, rows["ticks"]


def test_a_30s_gap_is_backfilled_and_the_bars_equal_a_run_without_it(
    rest: Any, tmp_path: Path
) -> None:
    trades = tape(100)
    messages = live_messages(trades)
    end_of_run = T0 + 110 * US  # heartbeats go on: the last bars close
    whole: list[tuple[int, int, str | None]] = [(a, MESSAGE, m) for a, m in messages]
    write_journal(tmp_path / "whole.sqlite3", whole + heartbeats(end_of_run))

    # The connection is down from 40 s to 70 s: nothing arrives meanwhile.
    kept = [(a, m) for a, m in messages if not T0 + 40 * US < a < T0 + 70 * US]
    start = max(a for a, _ in kept if a <= T0 + 40 * US)
    end = min(a for a, _ in kept if a >= T0 + 70 * US)
    assert end - start > 30 * US
    settle_us, edge_s = 3 * US, 2.0
    edges = [m for a, m in kept if start - edge_s * US <= a <= start]
    edges += [m for a, m in kept if end <= a <= end + settle_us]
    backfiller = Backfiller(client(rest(trades), Recording()), "tick", edge_s=edge_s)
    result = fill(backfiller, Gap(start, end, SYMBOLS, edges))
    assert result.error is None
    assert result.duplicates > 0, "the edges held trades received live"
    fetched_at = end + settle_us + 1_000  # when the feed journals them (seqs of their own)
    gapped = [(a, MESSAGE, m) for a, m in kept]
    gapped += [
        (fetched_at + i, BACKFILL, json.dumps({"source": "finnhub_tick", "message": m}))
        for i, m in enumerate(result.messages)
    ]
    write_journal(tmp_path / "gapped.sqlite3", gapped + heartbeats(end_of_run))

    write_journal(tmp_path / "holed.sqlite3", gapped[: len(kept)] + heartbeats(end_of_run))

    whole_bars, whole_ticks = bars_of(tmp_path / "whole.sqlite3")
    gapped_bars, gapped_ticks = bars_of(tmp_path / "gapped.sqlite3")
    holed_bars, _ = bars_of(tmp_path / "holed.sqlite3")
    assert len(whole_bars) == 2 * 20
    assert gapped_bars == whole_bars
    assert len(holed_bars) < len(whole_bars), "without the backfill, the gap's bars are missing"
    assert len(gapped_ticks) == len(whole_ticks) == len(trades)
    dropped = len(trades) - sum(len(json.loads(m)["data"]) for _, m in kept)
    assert dropped > 150  # 30 s of two symbols at 4 trades/s
    assert result.trades == dropped
    sources = Counter(t.source for t in gapped_ticks)
    assert sources == {None: len(trades) - dropped, "finnhub_tick": dropped}


def test_backfilled_messages_parse_as_their_source() -> None:
    message = finnhub_trade_message([Trade("AAPL", 10.5, T0 // 1000, 3, ("1",))])
    parsed = parse_batch(RawBatch("finnhub_tick", T0, [(T0 << 10, message)], ("AAPL",)))
    (tick,) = parsed.by_symbol["AAPL"]
    assert (tick.price, tick.size, tick.source) == (10.5, 3.0, "finnhub_tick")


# -- the feed process: a reconnect's gap is fetched and journaled --------------------------


class Cable:
    """A TCP forwarder on 127.0.0.1 to ``upstream_port`` that can be cut: every
    connection through it closes, and new ones are refused until it is mended."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.down = False
        self._writers: list[asyncio.StreamWriter] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        def go() -> None:
            self.down = True
            for w in self._writers:
                w.close()
            self._writers.clear()

        self._loop.call_soon_threadsafe(go)

    def mend(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "down", False)

    def __enter__(self) -> Cable:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def journaled_trades(path: Path) -> tuple[Counter[tuple[Any, ...]], int]:
    """Every trade in the journal's messages and backfills, and how many were backfilled."""
    seen: Counter[tuple[Any, ...]] = Counter()
    backfilled = 0
    with Journal(path) as journal:
        for e in journal.read(0, 10**6):
            if e.kind not in (MESSAGE, BACKFILL) or e.payload is None:
                continue
            doc = json.loads(e.payload)
            msg = json.loads(doc["message"]) if e.kind == BACKFILL else doc
            for d in msg.get("data") or []:
                seen[(d["s"], d["t"], d["p"], d["v"])] += 1
                backfilled += e.kind == BACKFILL
    return seen, backfilled


def test_the_feed_fetches_a_reconnects_gap_and_journals_it_once(tmp_path: Path) -> None:
    history = TradeHistory(keep_ms=600_000)
    path = tmp_path / "feed.sqlite3"
    stop = threading.Event()
    with (
        ServerThread(rate=40.0, history=history) as server,
        Cable(server.port) as cable,
        Journal(path) as journal,
    ):
        rest_url = f"http://127.0.0.1:{server.port}{REST_PREFIX}"
        rest_client = FinnhubRest(rest_url, None, requests_per_min=6000)
        backfiller = Backfiller(rest_client, "tick", edge_s=0.5)
        feed = FinnhubFeed(
            f"ws://127.0.0.1:{cable.port}/",
            None,
            ["AAPL"],
            None,
            0.05,
            0.1,
            None,
            wall_clock_us,
            backfiller=backfiller,
            settle_s=0.5,
        )
        recorder = FeedRecorder(journal, feed)
        thread = threading.Thread(target=recorder.run, args=(stop,))
        thread.start()
        try:
            wait_until(lambda: recorder.written >= 5, 10, "live trades journaled")
            cable.cut()
            cut_ms = wall_clock_us() // 1000
            wait_until(lambda: len(history.between("AAPL", cut_ms, 2**62)) >= 40, 10, "a gap")
            cable.mend()
            wait_until(lambda: feed.state.last_backfill_us is not None, 10, "the backfill")
            assert feed.state.last_backfill_us is not None
            after_us = feed.state.last_backfill_us + 300_000
            wait_until(lambda: (feed.state.last_trade_us or 0) > after_us, 10, "trades after")
        finally:
            stop.set()
            thread.join(15)
    assert feed.state.reconnects == 1
    assert feed.state.backfilled_trades > 20, "1.5 s at 40 trades/s went missing"
    assert feed.state.last_backfill is not None
    assert "from finnhub_tick" in feed.state.last_backfill
    seen, backfilled = journaled_trades(path)
    assert backfilled == feed.state.backfilled_trades
    times = [t for _, t, _, _ in seen]
    sent = history.between("AAPL", min(times), max(times) + 1)
    assert seen == Counter((t.symbol, t.time_ms, t.price, t.volume) for t in sent)
