"""The live Finnhub source against the real simulator server on 127.0.0.1.

The partition is driven directly (build_part, then next_batch as Bytewax would call it,
honouring next_awake), with deadlines so that nothing hangs.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

from connectors.finnhub import SEQ_SHIFT, FinnhubSource
from connectors.simulator_server import ServerThread
from connectors.timescale.tickers import TickerFollower
from dataflows.records import RawBatch
from timescale.embedded import free_port

Part = Any  # the private partition type
MakePart = Callable[..., tuple[FinnhubSource, Part]]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(rate=30.0, ping_interval=0.5, seed=2) as srv:
        yield srv


@pytest.fixture
def make_part() -> Iterator[MakePart]:
    """Builds sources' partitions and closes them all after the test."""
    parts: list[Part] = []

    def make(**kw: Any) -> tuple[FinnhubSource, Part]:
        source = FinnhubSource(**kw)
        part = source.build_part("finnhub_input", "finnhub", None)
        parts.append(part)
        return source, part

    yield make
    for part in parts:
        part.close()


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/"


def pump(
    part: Part, seconds: float, until: Callable[[list[RawBatch]], bool] | None = None
) -> list[RawBatch]:
    """Call next_batch as Bytewax does, for ``seconds`` or until ``until(batches)``."""
    out: list[RawBatch] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.extend(part.next_batch())
        if until is not None and until(out):
            break
        awake = part.next_awake()
        if awake is not None:
            wait = (awake - datetime.now(timezone.utc)).total_seconds()
            time.sleep(max(0.0, min(wait, deadline - time.monotonic(), 0.2)))
    return out


def texts(batches: list[RawBatch]) -> list[str]:
    return [str(text) for b in batches for _, text in b.messages]


def traded(batches: list[RawBatch]) -> set[str]:
    """The symbols of the trades in ``batches``."""
    out: set[str] = set()
    for text in texts(batches):
        message = json.loads(text)
        if message["type"] == "trade":
            out.update(d["s"] for d in message["data"])
    return out


def trades_of(symbol: str) -> Callable[[list[RawBatch]], bool]:
    return lambda batches: symbol in traded(batches)


def test_receives_its_symbols_trades_unchanged(server: ServerThread, make_part: MakePart) -> None:
    started_us = time.time_ns() // 1000
    source, part = make_part(url=ws_url(server.port), symbols=["MSFT", "AAPL"])
    batches = pump(part, 5.0, until=lambda b: traded(b) == {"AAPL", "MSFT"} and len(b) > 5)
    batches += pump(part, 0.6)  # a ping comes every 0.5 s
    assert traded(batches) == {"AAPL", "MSFT"}
    assert all(b.source == "finnhub" and b.subscribed == ("AAPL", "MSFT") for b in batches)
    assert '{"type":"ping"}' in texts(batches)  # passed through, verbatim

    seqs = [seq for b in batches for seq, _ in b.messages]
    assert seqs == sorted(set(seqs))  # unique, strictly increasing
    now_us = time.time_ns() // 1000
    for b in batches:
        assert started_us <= b.clock_us <= now_us
        for seq, _ in b.messages:
            assert started_us <= seq >> SEQ_SHIFT <= b.clock_us  # seq carries the receive time
    assert source.state.connected
    assert source.state.reconnects == 0
    assert source.state.last_message_us is not None
    assert started_us <= source.state.last_message_us <= now_us

    part.close()
    assert not [t for t in threading.enumerate() if t.name == "finnhub-feed" and t.is_alive()]


def test_follows_the_tickers_table(db: str, server: ServerThread, make_part: MakePart) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO tickers (symbol) VALUES ('AAPL')")
        source, part = make_part(
            url=ws_url(server.port),
            symbols=["MSFT"],
            tickers=TickerFollower(db, poll_interval_s=1.0),
        )
        # The table, once read, replaces the initial symbols.
        pump(part, 5.0, until=lambda b: bool(b) and b[-1].subscribed == ("AAPL",))
        assert "AAPL" in traded(pump(part, 3.0, until=trades_of("AAPL")))

        conn.execute("INSERT INTO tickers (symbol) VALUES ('NVDA')")
        added = time.monotonic()
        batches = pump(part, 5.0, until=trades_of("NVDA"))
        assert "NVDA" in traded(batches)
        assert time.monotonic() - added < 3.0
        assert batches[-1].subscribed == ("AAPL", "NVDA")

        conn.execute("UPDATE tickers SET active = false WHERE symbol = 'NVDA'")
        pump(part, 5.0, until=lambda b: bool(b) and b[-1].subscribed == ("AAPL",))
        pump(part, 0.5)  # messages already in flight
        assert traded(pump(part, 1.5)) == {"AAPL"}

        conn.execute("DELETE FROM tickers WHERE symbol = 'AAPL'")
        pump(part, 5.0, until=lambda b: bool(b) and b[-1].subscribed == ())
        pump(part, 0.5)
        assert traded(pump(part, 1.0)) == set()
    assert source.state.reconnects == 0


def test_keeps_its_subscriptions_while_the_database_is_unreachable(
    server: ServerThread, make_part: MakePart, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connectors")
    unreachable = f"host=127.0.0.1 port={free_port()} dbname=x user=x connect_timeout=1"
    _, part = make_part(
        url=ws_url(server.port),
        symbols=["AAPL"],
        tickers=TickerFollower(unreachable, poll_interval_s=0.3),
    )
    batches = pump(part, 5.0, until=trades_of("AAPL"))
    batches += pump(part, 0.5)
    assert traded(batches) == {"AAPL"}
    assert all(b.subscribed == ("AAPL",) for b in batches)
    assert "tickers table unavailable" in caplog.text


def test_reconnects_and_resubscribes_after_a_server_restart(
    make_part: MakePart, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connectors")
    first = ServerThread(rate=30.0, seed=3)
    port = first.start()
    source, part = make_part(
        url=ws_url(port), symbols=["AAPL"], backoff_initial_s=0.1, backoff_max_s=0.5
    )
    try:
        assert "AAPL" in traded(pump(part, 5.0, until=trades_of("AAPL")))
    finally:
        first.stop()
    pump(part, 3.0, until=lambda _: not source.state.connected)
    assert not source.state.connected
    pump(part, 0.8)  # a few refused attempts

    with ServerThread(port=port, rate=30.0, seed=4):
        pump(part, 5.0, until=lambda _: source.state.connected)
        restarted_us = time.time_ns() // 1000
        batches = pump(part, 5.0, until=trades_of("AAPL"))
    assert source.state.reconnects == 1
    assert "AAPL" in traded(batches)
    assert max(seq for b in batches for seq, _ in b.messages) >> SEQ_SHIFT >= restarted_us

    logged = [r.getMessage() for r in caplog.records if r.name == "connectors.finnhub"]
    assert any(m.startswith(f"disconnected from ws://127.0.0.1:{port}/") for m in logged)
    assert any(m.startswith(f"connection to ws://127.0.0.1:{port}/ failed") for m in logged)
    assert any(m.startswith("retrying in") for m in logged)
    assert logged.count(f"connected to ws://127.0.0.1:{port}/") == 2
    assert logged.count("subscribed AAPL") == 2


def test_empty_batches_keep_coming_while_the_feed_is_down(make_part: MakePart) -> None:
    source, part = make_part(
        url=ws_url(free_port()), symbols=["MSFT", "AAPL"], backoff_initial_s=0.1, backoff_max_s=0.2
    )
    started = time.monotonic()
    times: list[float] = []
    batches: list[RawBatch] = []
    polls = 0
    while time.monotonic() - started < 3.0:
        polls += 1
        got = part.next_batch()
        if got:
            times.append(time.monotonic())
            batches.extend(got)
        awake = part.next_awake()
        assert awake is not None  # nothing queued: no busy loop
        time.sleep(max(0.0, (awake - datetime.now(timezone.utc)).total_seconds()))
    assert times[0] - started < 0.2  # the first one at once
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 4
    assert max(gaps) < 1.0
    assert polls < 200
    assert all(b.messages == [] and b.subscribed == ("AAPL", "MSFT") for b in batches)
    assert not source.state.connected
    assert source.state.reconnects == 0
    assert "ConnectionRefusedError" in str(source.state.last_error)


def test_token_is_sent(make_part: MakePart) -> None:
    with ServerThread(rate=30.0, token="s3cret") as srv:
        _, good_part = make_part(url=ws_url(srv.port), token="s3cret", symbols=["AAPL"])
        bad, bad_part = make_part(url=ws_url(srv.port), token="wrong", symbols=["AAPL"])
        assert "AAPL" in traded(pump(good_part, 5.0, until=trades_of("AAPL")))
        pump(bad_part, 1.0)
    assert "401" in str(bad.state.last_error)
    assert "wrong" not in str(bad.state.last_error)
    assert not bad.state.connected
