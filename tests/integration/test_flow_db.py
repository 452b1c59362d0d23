"""The dataflow writing to the real TimescaleDB: bad input is dead-lettered, the rest stored."""

from __future__ import annotations

import json

import psycopg
from bytewax.testing import TestingSource, run_main

from dataflows.bars import BarConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, RawBatch
from dataflows.ticks import FlowConfig, build_flow
from sentinel.flows import timescale_sinks
from tests.dataflows.test_parse import BAD_MESSAGES, BAD_TRADES, CLOCK_MS, CLOCK_US, message, trade


def test_every_bad_input_class_lands_in_ticks_rejected_and_good_ticks_are_stored(db: str) -> None:
    messages: list[tuple[int, str]] = []
    good = 0
    for seq, text in enumerate(BAD_MESSAGES.values()):
        messages.append((seq, text))
    for i, bad in enumerate(BAD_TRADES.values()):
        around = [trade(p=100.0 + i, t=CLOCK_MS + 1000 * i), trade(s="MSFT", t=CLOCK_MS + 1000 * i)]
        messages.append((100 + i, message(around[0], bad, around[1])))
        good += 2
    # 400 s behind the newest tick: its bar closed longer ago than the revision window
    late = trade(t=CLOCK_MS - 400_000)
    messages.append((200, message(late)))
    cfg = FlowConfig(ParseConfig(), BarConfig(bar_seconds=5, allowance_s=2), live=False)
    run_main(
        build_flow(TestingSource([RawBatch("test", CLOCK_US, messages)]), timescale_sinks(db), cfg)
    )

    with psycopg.connect(db) as conn:
        rejects = conn.execute(
            "SELECT reason, payload, received_at = to_timestamp(%s) FROM ticks_rejected",
            [CLOCK_US / US],
        ).fetchall()
        ticks = conn.execute("SELECT count(*) FROM ticks").fetchone()
        bars = conn.execute("SELECT count(*), sum(trades) FROM bars").fetchone()

    expected = sorted([*BAD_MESSAGES, *BAD_TRADES, "late"])
    assert sorted(r[0] for r in rejects) == expected
    assert all(r[1] for r in rejects), "every reject keeps its raw payload"
    assert all(r[2] for r in rejects)
    payloads = {r[0]: r[1] for r in rejects}
    assert payloads["malformed_json"] == BAD_MESSAGES["malformed_json"]
    assert json.loads(payloads["negative_size"])["v"] == -5
    assert ticks == (good + 1,), "good ticks, and the late one too, are in `ticks`"
    assert bars is not None
    assert bars[1] == good, "the late tick is in no bar"

    # Each sink publishes its counters (at most a few seconds behind while running); a
    # finished run's are complete by the time it returns.
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT table_name, rows_written FROM sink_status WHERE worker = 0")
        reported: dict[str, int] = dict(rows.fetchall())
    assert reported["ticks"] == good + 1
    assert reported["ticks_rejected"] == len(expected)
