"""The feed journal: durable appends, batches on the arrival clock, resumable positions,
pruning that keeps what nobody has read, and the feed process writing it for real."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

from connectors.finnhub import FinnhubFeed
from connectors.journal import (
    HEARTBEAT,
    MESSAGE,
    SUBSCRIBED,
    Journal,
    JournalBusyError,
    JournalPosition,
    JournalSource,
)
from connectors.recorder import FeedRecorder
from connectors.simulator_server import ServerThread
from dataflows.parse import parse_batch
from dataflows.records import US, RawBatch, wall_clock_us
from tests.integration.procs import wait_until

NASTY = ["\x00", "\ud800", "trade\x00", '{"type":"trade","data":[{"s":"\\ud800"}]}', "é" * 10]


def source_part(path: Path, resume: JournalPosition | None = None, **kw: Any) -> Any:
    return JournalSource(path, **kw).build_part("feed", "journal", resume)


def drain(part: Any) -> list[RawBatch]:
    out: list[RawBatch] = []
    while batches := part.next_batch():
        out += batches
    return out


def test_entries_come_back_byte_for_byte_in_order(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        j.append([(None, SUBSCRIBED, '["AAPL"]')])
        j.append([(1000 + i, MESSAGE, text) for i, text in enumerate(NASTY)])
        j.append([(2000, HEARTBEAT, None)])
    part = source_part(path)
    (batch,) = drain(part)
    assert [text for _, text in batch.messages] == NASTY
    assert [seq for seq, _ in batch.messages] == [1000 + i for i in range(len(NASTY))]
    assert batch.clock_us == 2000, "the clock is the newest stamp, heartbeats included"
    assert batch.subscribed == ("AAPL",)
    part.close()


def test_a_subscription_change_splits_the_batch(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        j.append(
            [
                (None, SUBSCRIBED, '["AAPL"]'),
                (10, MESSAGE, "a"),
                (None, SUBSCRIBED, '["AAPL", "MSFT"]'),
                (20, MESSAGE, "b"),
                (30, HEARTBEAT, None),
            ]
        )
    batches = drain(source_part(path))
    assert [(b.subscribed, [m for _, m in b.messages], b.clock_us) for b in batches] == [
        (("AAPL",), ["a"], 10),
        (("AAPL", "MSFT"), ["b"], 30),
    ]


def test_a_resumed_source_reads_what_followed_its_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as j:
        j.append([(None, SUBSCRIBED, '["X"]')] + [(i, MESSAGE, f"m{i}") for i in range(1, 11)])
        part = source_part(path, max_batch=4)
        first = part.next_batch()
        snap = part.snapshot()
        seen_after = [m for b in drain(part) for _, m in b.messages]
        part.close()
        assert [m for b in first for _, m in b.messages] == ["m1", "m2", "m3"]
        assert snap == JournalPosition(4, 3, ("X",))
        # A crash after the snapshot: the resumed source reads the same entries again.
        again = drain(source_part(path, snap))
        assert [m for b in again for _, m in b.messages] == seen_after
        assert all(b.subscribed == ("X",) for b in again)
        # Without recovery state it starts where the reader last recorded a snapshot.
        assert j.position("dataflow") == 4
        fresh = drain(source_part(path))
        assert [m for b in fresh for _, m in b.messages] == seen_after


def test_pruning_keeps_unread_entries_and_subscriptions(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        j.append([(None, SUBSCRIBED, '["X"]')] + [(i, MESSAGE, "m") for i in range(1, 101)])
        assert j.prune(older_than_us=10**9) == 0, "nobody has read anything: keep it all"
        j.record_position("dataflow", 51)  # entries 2..51 read: stamps 1..50
        assert j.prune(older_than_us=10**9) == 50
        assert j.prune(older_than_us=10**9) == 0
        assert [e.payload for e in j.read(0, 1)] == [b'["X"]']
        assert [e.stamp_us for e in j.read(1, 1000)] == list(range(51, 101))
        assert j.subscriptions_before(60) == ("X",)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal(path) as a, Journal(path) as b:
        a.lock_for_writing()
        with pytest.raises(JournalBusyError, match="another feed"):
            b.lock_for_writing()


def _append_forever(path: str, started: multiprocessing.synchronize.Event) -> None:
    with Journal(Path(path)) as j:
        i = 0
        while True:
            i += 1
            j.append([(i, MESSAGE, f"m{i}")])
            started.set()


def test_a_killed_writer_loses_no_committed_entry(tmp_path: Path) -> None:
    """SIGKILL in the middle of appending: every entry is whole, none is missing before
    the last one, and the journal opens and appends again."""
    path = tmp_path / "j.sqlite3"
    started = multiprocessing.get_context("spawn").Event()
    proc = multiprocessing.get_context("spawn").Process(
        target=_append_forever, args=(str(path), started)
    )
    proc.start()
    assert started.wait(30)
    with Journal(path) as j:
        wait_until(lambda: j.last_stamp_us() > 200, 30, "200 appends")
    proc.kill()
    proc.join(10)
    with Journal(path) as j:
        entries = j.read(0, 10**6)
        assert [e.stamp_us for e in entries] == list(range(1, len(entries) + 1))
        assert all(e.payload == f"m{e.stamp_us}".encode() for e in entries)
        j.append([(len(entries) + 1, MESSAGE, "after")])
        assert j.last_stamp_us() == len(entries) + 1


def test_the_feed_process_journals_the_simulator_and_the_dataflow_parses_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    stop = threading.Event()
    with ServerThread(rate=50.0) as server, Journal(path) as journal:
        journal.lock_for_writing()
        started_us = wall_clock_us()
        feed = FinnhubFeed(
            f"ws://127.0.0.1:{server.port}",
            None,
            ["AAPL", "MSFT"],
            None,
            0.1,
            1.0,
            None,
            wall_clock_us,
            last_seq=journal.last_stamp_us(),
        )
        recorder = FeedRecorder(journal, feed, heartbeat_s=0.1)
        thread = threading.Thread(target=recorder.run, args=(stop,))
        thread.start()
        try:
            part = source_part(path)
            batches: list[RawBatch] = []

            def enough() -> bool:
                batches.extend(part.next_batch())
                ticks = [t for b in batches for t in parse_batch(b).by_symbol.get("MSFT", [])]
                return len(ticks) > 50

            wait_until(enough, 30, "50 MSFT trades through the journal")
        finally:
            stop.set()
            thread.join(15)
    assert not thread.is_alive()
    assert all(b.subscribed == ("AAPL", "MSFT") for b in batches)
    clocks = [b.clock_us for b in batches]
    assert clocks == sorted(clocks)
    assert started_us <= clocks[0] <= clocks[-1] <= wall_clock_us()
    parsed = [parse_batch(b) for b in batches]
    assert sum(len(p.rejects) for p in parsed) == 0
    for b in batches:
        for seq, text in b.messages:
            assert b.clock_us >= seq >= started_us, "a message's seq is its arrival time"
            assert isinstance(text, str)
            assert json.loads(text)["type"] in {"trade", "ping"}
    # Heartbeats move the clock on between messages: no gap of more than ~0.1 s + a poll.
    gaps = [b - a for a, b in itertools.pairwise(clocks)]
    assert max(gaps) < 1.0 * US
