"""The bars sink with revisions, on the real database: a higher revision replaces the
stored row (in ``bars`` and ``bars_latest``), a replayed lower one changes nothing, and
``/stream``'s channel announces the rewrite as ``bar_revision``."""

from __future__ import annotations

import json

import psycopg

from connectors.timescale import write_rows
from connectors.timescale.specs import BARS
from dataflows.records import US, Bar

T = 1_700_000_000 * US
FIRST = Bar(T, "AAPL", 10.0, 11.0, 9.0, 10.5, 100.0, 10.2, 5, 60)
REVISED = FIRST._replace(high=12.0, close=12.0, volume=102.0, vwap=10.23, trades=6, revision=1)
LATER = Bar(T + 60 * US, "AAPL", 10.5, 10.6, 10.4, 10.5, 50.0, 10.5, 2, 60)

COLUMNS = "open, high, low, close, volume, vwap, trades, revision"


def stored(dsn: str, table: str = "bars") -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {COLUMNS} FROM {table} ORDER BY time").fetchall()


def values(bar: Bar) -> tuple[object, ...]:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap, bar.trades, bar.revision)


def test_a_higher_revision_replaces_the_row_and_a_replay_changes_nothing(db: str) -> None:
    write_rows(db, BARS, [FIRST])
    stats = write_rows(db, BARS, [REVISED])
    assert stats.rows_written == 1
    assert stored(db) == [values(REVISED)]
    assert stored(db, "bars_latest") == [values(REVISED)]

    # A resumed dataflow hands over both again, and the next bar: only that one lands.
    write_rows(db, BARS, [FIRST, REVISED, LATER])
    assert stored(db) == [values(REVISED), values(LATER)]
    assert stored(db, "bars_latest") == [values(LATER)]
    write_rows(db, BARS, [FIRST])
    assert stored(db) == [values(REVISED), values(LATER)], "an older revision never wins"


def test_a_chunk_holding_a_bar_and_its_revision_stores_the_revision(db: str) -> None:
    write_rows(db, BARS, [LATER])  # the chunk below then goes through the staging table
    write_rows(db, BARS, [FIRST, REVISED])
    assert stored(db) == [values(REVISED), values(LATER)]


def test_the_rewrite_is_announced_as_a_bar_revision(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN sentinel_stream")
        write_rows(db, BARS, [FIRST])
        write_rows(db, BARS, [REVISED])
        write_rows(db, BARS, [FIRST])  # skipped: announces nothing
        made = Bar(T + 120 * US, "AAPL", 11.0, 11.0, 11.0, 11.0, 1.0, 11.0, 1, 60, revision=1)
        write_rows(db, BARS, [made])  # first written after it closed: a revision too
        events = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=3)]
    assert [(e["kind"], e["revision"], e["close"]) for e in events] == [
        ("bar", 0, 10.5),
        ("bar_revision", 1, 12.0),
        ("bar_revision", 1, 11.0),
    ]
