"""``/stream`` over a real uvicorn server: rows written to the database arrive as
server-sent events within one bar interval, filtered by symbol and kind, through ONE
LISTEN connection however many clients there are."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.serve import serve_in_thread
from tests.api.conftest import app_for, execute, query

BAR_INSERT = """INSERT INTO bars (time, symbol, open, high, low, close, volume, vwap, trades,
                                  bar_seconds)
                VALUES (%s, %s, 10, 12, 9, 11, 300, 10.5, 7, 1)"""


@pytest.fixture
def server(db: str) -> Iterator[str]:
    with serve_in_thread(app_for(db, api_stream_keepalive_s=0.3)) as base_url:
        deadline = time.monotonic() + 10
        while not httpx.get(f"{base_url}/health").json()["stream_listening"]:
            assert time.monotonic() < deadline, "the stream listener did not connect"
            time.sleep(0.05)
        yield base_url


@contextlib.contextmanager
def subscribe(base_url: str, **params: str) -> Iterator[Iterator[str]]:
    """An open event stream, read up to its `: connected` comment; yields its lines."""
    timeout = httpx.Timeout(5.0, read=3.0)
    with httpx.stream("GET", f"{base_url}/stream", params=params, timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "retry: 3000"
        assert next(lines) == ": connected"
        assert next(lines) == ""
        yield lines


def next_event(lines: Iterator[str]) -> tuple[str, dict[str, Any]]:
    """The next event, skipping comments (keep-alives)."""
    kind, data = None, None
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and kind is not None and data is not None:
            return kind, data
    raise AssertionError("the stream ended")


def test_a_new_bar_arrives_within_one_bar_interval(server: str, db: str) -> None:
    with subscribe(server, symbols="zzz,YYY", kinds="bar,alert") as lines:
        execute(
            db,
            """INSERT INTO forecasts VALUES ('2024-03-04T14:00:01Z', 'ZZZ', 'ewma',
                       'volatility', 1, 0.01, NULL, NULL, '2024-03-04T14:00:00Z')""",
        )  # kind
        execute(db, BAR_INSERT, "2024-03-04T14:00:00Z", "OTHER")  # symbol filtered out
        written = time.monotonic()
        execute(db, BAR_INSERT, "2024-03-04T14:00:00Z", "ZZZ")
        kind, data = next_event(lines)
        elapsed = time.monotonic() - written
    assert elapsed < 1.0, f"{elapsed:.3f} s: more than the bar's 1 s"
    row = query(db, "SELECT * FROM bars WHERE symbol = 'ZZZ'")[0]
    assert kind == "bar"
    assert data == {
        "kind": "bar",
        "symbol": "ZZZ",
        "time": "2024-03-04T14:00:00Z",
        "open": 10,
        "high": 12,
        "low": 9,
        "close": 11,
        "volume": 300,
        "vwap": 10.5,
        "trades": 7,
        "bar_seconds": 1,
        "revision": 0,
    }
    assert row["close"] == data["close"]


def test_a_revised_bar_is_a_bar_revision_event(server: str, db: str) -> None:
    with subscribe(server, symbols="ZZZ", kinds="bar_revision") as lines:
        execute(db, BAR_INSERT, "2024-03-04T14:00:00Z", "ZZZ")  # a new bar: not asked for
        execute(
            db,
            """UPDATE bars SET close = 12, high = 12, trades = 8, revision = 1
               WHERE symbol = 'ZZZ'""",
        )
        kind, data = next_event(lines)
    assert kind == "bar_revision"
    assert (data["revision"], data["close"], data["trades"]) == (1, 12, 8)


def test_every_kind_reaches_every_client_through_one_listener(server: str, db: str) -> None:
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(subscribe(server)) for _ in range(3)]
        listeners = query(
            db,
            """SELECT count(*) AS n FROM pg_stat_activity
                                 WHERE datname = current_database() AND query LIKE 'LISTEN%%'""",
        )
        assert listeners[0]["n"] == 1, "one LISTEN connection for all clients"
        execute(db, BAR_INSERT, "2024-03-04T14:00:00Z", "AAPL")
        execute(
            db,
            """INSERT INTO forecasts VALUES ('2024-03-04T14:00:01Z', 'AAPL', 'har',
                       'volatility', 1, 0.01, NULL, NULL, '2024-03-04T14:00:00Z')""",
        )
        execute(
            db,
            """INSERT INTO alerts VALUES ('2024-03-04T14:00:00Z', 'AAPL',
                       'price_jump', 'warning', 7.5, 6, 'AAPL jumped')""",
        )
        for lines in clients:
            got = [next_event(lines) for _ in range(3)]
            assert [k for k, _ in got] == ["bar", "forecast", "alert"]
            assert got[1][1]["made_at"] == "2024-03-04T14:00:00Z"
            assert got[2][1]["message"] == "AAPL jumped"
            assert got[2][1]["kind"] == "price_jump", "an alert's data is its row"


def test_keep_alive_comments_flow_while_nothing_happens(server: str) -> None:
    with subscribe(server, kinds="alert") as lines:
        started = time.monotonic()
        assert next(lines) == ": keep-alive"
        assert time.monotonic() - started < 1.0
