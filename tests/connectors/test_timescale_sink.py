"""The TimescaleDB sinks, on the real embedded TimescaleDB."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import psycopg
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, cluster_main, run_main
from psycopg import sql
from psycopg.conninfo import make_conninfo

from connectors.timescale import SinkStats, TimescaleSink, TimescaleSinkError, write_rows
from connectors.timescale.sinks import TimescaleBackgroundSink
from connectors.timescale.specs import (
    ALERTS,
    BAR_METRICS,
    BARS,
    FORECASTS,
    MODEL_CHECKPOINTS,
    MODEL_SCORES,
    SPECS,
    TICKS,
    TICKS_REJECTED,
    TableSpec,
)
from dataflows.records import Alert, Bar, DailySummary, Metrics, Reject, SessionEvent, Tick
from tests.conftest import ROOT
from timescale.embedded import EmbeddedDatabaseError, EmbeddedPostgres, find_pg_bin, free_port
from timescale.migrate import migrate

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T_1899 = -2_208_988_800_000_001  # 1899-12-31 23:59:59.999999 UTC
T_BEFORE_EPOCH = -1  # 1969-12-31 23:59:59.999999 UTC
T_2023 = 1_700_000_000_999_999  # 2023-11-14 22:13:20.999999 UTC
T_2100 = 4_102_444_800_000_000  # 2100-01-01 00:00:00 UTC
TEXT = "quotes \" ' , newline\n, tab\t, backslashes \\ \\N \\., unicode é ☃ 📈 ✓"

SAMPLES: dict[str, list[tuple[Any, ...]]] = {
    "ticks": [
        Tick(T_BEFORE_EPOCH, "AAPL", 0.1 + 0.2, 100.0, 1, None),
        Tick(T_2023, "BRK.B", 612_345.125, 0.0, 2, "@,T,I"),
        Tick(T_1899, "ÜNI☃", 1e-300, 1e300, -5, TEXT),
        Tick(T_2100, "AAPL", 1.5, 10.0, 3, "1,24", True),
    ],
    "ticks_rejected": [
        Reject(T_BEFORE_EPOCH, "finnhub", 7, None, "bad_json", "Expecting value", TEXT),
        Reject(T_2023, "replay:day.csv", 8, "AAPL", "bad_price", "price 'x'", '{"p": "x"}'),
        Reject(T_2100, "replay:day.csv", 9, "AAPL", "stale", None, ""),  # type: ignore[arg-type]
    ],
    "bars": [
        Bar(T_BEFORE_EPOCH, "AAPL", 1.0, 2.0, 0.5, 1.5, 1000.0, None, 3, 60),
        Bar(T_2023, "AAPL", 187.25, 188.0, 186.5, 187.75, 1.5e6, 187.312_345_6, 2**31 - 1, 86_400),
    ],
    "bar_metrics": [
        Metrics(T_BEFORE_EPOCH, "AAPL", None, None, None, None, None, None, 1),
        Metrics(T_2023, "AAPL", -0.012_3, 0.01, 0.011, 0.2, 0.21, -1.7, 2**40),
    ],
    "alerts": [
        Alert(T_BEFORE_EPOCH, "AAPL", "vol_spike", "warning", 0.05, 0.03, TEXT),
        Alert(T_2023, "AAPL", "stale_feed", "critical", None, None, "no ticks for 60 s"),
    ],
    "forecasts": [
        (T_2023, "AAPL", "ewma", "volatility", 1, 0.012, None, None, T_BEFORE_EPOCH),
        (T_2100, "AAPL", "linreg", "return", 32_767, -0.001, -0.02, 0.018, T_1899),
    ],
    "model_scores": [
        (T_BEFORE_EPOCH, "AAPL", "ewma", "volatility", "qlike", None),
        (T_2023, "AAPL", "ewma", "volatility", "mae", 0.5),
    ],
    "model_checkpoints": [
        (T_BEFORE_EPOCH, "AAPL", "ewma", 1, 0, b"\x00\xff\x80state", {"qlike": -7.25, "t": TEXT}),
        (T_2023, "AAPL", "ewma", 2, 12_345, b"", '{"n": [1, 2.5, null]}'),
    ],
    "session_events": [
        SessionEvent(T_1899, "AAPL", "open", date(1899, 12, 31), "XNYS"),
        SessionEvent(T_2023, "ÜNI☃", "close", date(2023, 11, 14), "24/7"),
    ],
    "daily_summary": [
        DailySummary(
            date(2024, 7, 3),
            "AAPL",
            "XNYS",
            T_2023,
            T_2100,
            1.0,
            2.0,
            0.5,
            1.5,
            10.0,
            1.25,
            7,
            3,
            0.01,
            0.16,
            -1.5,
            0.002,
            {"price_jump": 1},
            {"har": {"mean": -8.5}},
        ),
        DailySummary(
            date(2024, 7, 4),
            "IDLE",
            "24/7",
            T_BEFORE_EPOCH,
            T_2023,
            None,
            None,
            None,
            None,
            0.0,
            None,
            0,
            0,
            None,
            None,
            None,
            None,
            {},
            {},
        ),
    ],
}


def make_ticks(n: int, first_seq: int = 0) -> list[Tick]:
    return [
        Tick(T_2023 + seq * 1_000, f"S{seq % 7}", 100.0 + seq / 64, float(seq % 5), seq, None)
        for seq in range(first_seq, first_seq + n)
    ]


def read_back(dsn: str, spec: TableSpec) -> list[tuple[Any, ...]]:
    """The table's rows as the sink was given them: times as exact int microseconds."""
    exprs = [
        sql.SQL("(extract(epoch FROM {}) * 1000000)::int8").format(sql.Identifier(c))
        if c in spec.time_columns
        else sql.Identifier(c)
        for c in spec.columns
    ]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(exprs), sql.Identifier(spec.table)
    )
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query).fetchall()
    return by_key(spec, rows)


def by_key(spec: TableSpec, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    index = [spec.columns.index(k) for k in spec.key]
    return sorted((tuple(r) for r in rows), key=lambda r: [repr(r[i]) for i in index])


def as_stored(spec: TableSpec, row: Sequence[Any]) -> tuple[Any, ...]:
    """What reading ``row`` back gives: JSON text parsed, everything else unchanged."""
    return tuple(
        json.loads(v) if t == "jsonb" and isinstance(v, str) else v
        for v, t in zip(row, spec.pg_types, strict=True)
    )


# -- specs ------------------------------------------------------------------------------


def test_specs_match_the_migrated_tables(db: str) -> None:
    assert set(SPECS) == set(SAMPLES)
    with psycopg.connect(db) as conn:
        for spec in SPECS.values():
            columns = conn.execute(
                """SELECT column_name, udt_name FROM information_schema.columns
                   WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position""",
                [spec.table],
            ).fetchall()
            key = conn.execute(
                """SELECT a.attname FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                   WHERE i.indrelid = %s::regclass AND i.indisprimary
                   ORDER BY array_position(i.indkey::int2[], a.attnum)""",
                [spec.table],
            ).fetchall()
            assert columns == list(zip(spec.columns, spec.pg_types, strict=True)), spec.table
            assert tuple(k for (k,) in key) == spec.key, spec.table


def test_record_fields_map_to_columns_explicitly() -> None:
    assert TICKS.fields == Tick._fields
    assert TICKS_REJECTED.fields == Reject._fields
    assert BARS.fields == Bar._fields
    assert BAR_METRICS.fields == Metrics._fields
    assert ALERTS.fields == Alert._fields
    assert dict(zip(BARS.columns, BARS.fields, strict=True))["time"] == "start_us"
    assert dict(zip(TICKS_REJECTED.columns, TICKS_REJECTED.fields, strict=True)) == {
        "received_at": "received_us",
        "source": "source",
        "seq": "seq",
        "symbol": "symbol",
        "reason": "reason",
        "detail": "detail",
        "payload": "payload",
    }
    assert FORECASTS.time_columns == ("time", "made_at")
    assert MODEL_SCORES.time_columns == MODEL_CHECKPOINTS.time_columns == ("time",)
    with pytest.raises(ValueError, match="key"):
        TableSpec("t", ("a",), ("a",), ("int8",), key=("b",))
    with pytest.raises(ValueError, match="length"):
        TableSpec("t", ("a", "b"), ("a",), ("int8",), key=("a",))


# -- writing ----------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(SAMPLES))
def test_each_spec_round_trips_exact_values(db: str, table: str) -> None:
    spec, rows = SPECS[table], SAMPLES[table]
    stats = write_rows(db, spec, rows)
    assert (stats.rows_written, stats.rows_skipped, stats.retries) == (len(rows), 0, 0)
    assert read_back(db, spec) == by_key(spec, [as_stored(spec, r) for r in rows])


LATEST_SPECS = sorted(t for t, spec in SPECS.items() if spec.latest_key is not None)


def newest_rows(dsn: str, table: str, relation: str | None = None) -> list[tuple[Any, ...]]:
    """``relation`` (the hypertable by default) reduced to the newest row of each latest
    key, in key order, by SQL."""
    spec = SPECS[table]
    assert spec.latest_key is not None
    key = sql.SQL(", ").join(map(sql.Identifier, spec.latest_key))
    newest = sql.SQL(", ").join(
        sql.SQL("{} DESC").format(sql.Identifier(c)) for c in spec.newest_by
    )
    query = sql.SQL("SELECT DISTINCT ON ({k}) {c} FROM {t} ORDER BY {k}, {n}").format(
        k=key,
        c=sql.SQL(", ").join(map(sql.Identifier, spec.columns)),
        t=sql.Identifier(relation or table),
        n=newest,
    )
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


@pytest.mark.parametrize("table", LATEST_SPECS)
def test_latest_tables_hold_the_newest_row_of_each_key_in_the_rows_transaction(
    db: str, table: str
) -> None:
    spec = SPECS[table]
    rows = SAMPLES[table]
    later = [_later(spec, r, days=1) for r in rows]
    write_rows(db, spec, list(reversed(later)) + rows)  # newest first, in one chunk
    write_rows(db, spec, rows)  # a replay of older rows: skipped, latest unchanged
    latest = newest_rows(db, table, f"{table}_latest")
    assert latest == newest_rows(db, table)
    # and it is the newer copy of each key, as computed here
    assert spec.latest_key is not None
    key_at = [spec.columns.index(k) for k in spec.latest_key]
    time_at = spec.columns.index("time")
    expected: dict[tuple[Any, ...], int] = {}
    for r in later:
        k = tuple(r[i] for i in key_at)
        expected[k] = max(expected.get(k, r[time_at]), r[time_at])
    got = {tuple(r[i] for i in key_at): r[time_at] for r in latest}
    assert got == {k: EPOCH + timedelta(microseconds=t) for k, t in expected.items()}


def _later(spec: TableSpec, row: Sequence[Any], days: int) -> tuple[Any, ...]:
    """``row`` moved ``days`` later (a newer row of the same key)."""
    values = list(row)
    at = spec.columns.index("time")
    values[at] += days * 86_400_000_000
    return tuple(values)


def test_a_chunk_refused_whole_leaves_the_latest_table_as_it_was(db: str) -> None:
    good = (T_2023, "AAPL", "ewma", "volatility", 1, 0.01, None, None, T_2023)
    bad = (T_2100, "AAPL", "ewma", "sideways", 1, 0.02, None, None, T_2023)  # CHECK (target)
    stats = write_rows(db, FORECASTS, [good, bad])
    assert (stats.rows_written, stats.rows_failed) == (1, 1)
    latest = newest_rows(db, "forecasts", "forecasts_latest")
    assert latest == newest_rows(db, "forecasts")
    assert [r[3] for r in latest] == ["volatility"]


def test_times_are_exact_to_the_microsecond_whatever_the_session_time_zone(db: str) -> None:
    times = [T_1899, -86_400_000_000 - 999_999, T_BEFORE_EPOCH, 0, 1, 999_999, T_2023, T_2100]
    rows = [Tick(t, "AAPL", 1.0, 1.0, seq, None) for seq, t in enumerate(times)]
    new_york = make_conninfo(db, options="-c TimeZone=America/New_York")
    write_rows(new_york, TICKS, rows)
    with psycopg.connect(db) as conn:
        got = conn.execute(
            """SELECT time, to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
               FROM ticks ORDER BY seq"""
        ).fetchall()
    assert [dt for dt, _ in got] == [EPOCH + timedelta(microseconds=t) for t in times]
    assert [text for _, text in got] == [
        "1899-12-31 23:59:59.999999",
        "1969-12-30 23:59:59.000001",
        "1969-12-31 23:59:59.999999",
        "1970-01-01 00:00:00.000000",
        "1970-01-01 00:00:00.000001",
        "1970-01-01 00:00:00.999999",
        "2023-11-14 22:13:20.999999",
        "2100-01-01 00:00:00.000000",
    ]


def test_writing_twice_or_overlapping_leaves_one_copy_of_each_row(db: str) -> None:
    first, second, third = make_ticks(100), make_ticks(50, first_seq=100), make_ticks(20, 150)
    assert write_rows(db, TICKS, first) == SinkStats("ticks", rows_written=100)
    assert write_rows(db, TICKS, first) == SinkStats("ticks", rows_skipped=100)
    overlap = write_rows(db, TICKS, first[50:] + second)
    assert (overlap.rows_written, overlap.rows_skipped) == (50, 50)
    # Duplicates within one batch, spread over several chunks (and transactions).
    mixed = write_rows(db, TICKS, third + third + first[:10], batch_rows=7)
    assert (mixed.rows_written, mixed.rows_skipped) == (20, 30)
    assert read_back(db, TICKS) == by_key(TICKS, first + second + third)


def test_the_sink_in_a_dataflow_writes_every_row(db: str) -> None:
    rows = make_ticks(100)
    seen: list[SinkStats] = []
    flow = Dataflow("timescale_sink_test")
    chunks = op.input("inp", flow, TestingSource([rows[:40], [], rows[40:41], rows[41:]]))
    op.output("ticks_out", chunks, TimescaleSink(db, TICKS, on_write=seen.append))
    run_main(flow)
    assert read_back(db, TICKS) == by_key(TICKS, rows)
    assert seen[-1] == SinkStats("ticks", rows_written=100)


def test_each_worker_writes_through_its_own_partition(db: str) -> None:
    rows = make_ticks(200)
    seen: list[SinkStats] = []
    flow = Dataflow("timescale_sink_workers")
    chunks = op.input("inp", flow, TestingSource([rows[i : i + 10] for i in range(0, 200, 10)]))
    spread = op.redistribute("spread", chunks)
    op.output("ticks_out", spread, TimescaleSink(db, TICKS, on_write=seen.append))
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert read_back(db, TICKS) == by_key(TICKS, rows)
    last = {s.worker_index: s.rows_written for s in seen}
    assert sum(last.values()) == 200


# -- errors -----------------------------------------------------------------------------


def test_a_refused_row_is_left_out_alone_and_the_rest_is_written(db: str) -> None:
    part = TimescaleSink(db, FORECASTS).build("forecasts_out", 0, 1)
    good = [
        (T_2023 + i, "AAPL", "ewma", "volatility", 1, 0.01, None, None, T_2023) for i in range(9)
    ]
    bad = (T_2023, "AAPL", "ewma", "price", 1, 0.01, None, None, T_2023)  # a CHECK refuses it
    part.write_batch([[*good[:4], bad, *good[4:]]])
    assert sorted(read_back(db, FORECASTS)) == good
    assert (part.stats.rows_written, part.stats.rows_failed) == (9, 1)
    assert part.stats.last_error is not None
    assert "CheckViolation" in part.stats.last_error
    part.close()


@pytest.mark.parametrize("text", ["nul\x00inside", "lone \ud800 surrogate"])
def test_text_postgresql_cannot_store_costs_only_its_own_row(db: str, text: str) -> None:
    """Parsing refuses such text first; the sink holds even if something slips through."""
    part = TimescaleSink(db, TICKS).build("ticks_out", 0, 1)
    rows = [Tick(T_2023 + i, "AAPL", 1.0 + i, 1.0, i, None) for i in range(5)]
    part.write_batch([[*rows[:2], Tick(T_2023, "AAPL", 1.0, 1.0, 99, text), *rows[2:]]])
    part.close()
    assert sorted(read_back(db, TICKS)) == rows
    assert part.stats.rows_failed == 1


def test_rows_of_the_wrong_shape_raise_an_error_naming_the_table(db: str) -> None:
    part = TimescaleSink(db, FORECASTS).build("forecasts_out", 0, 1)
    good = (T_2023, "AAPL", "ewma", "volatility", 1, 0.01, None, None, T_2023)
    with pytest.raises(TimescaleSinkError, match=r"table 'forecasts'.*expected 9 values"):
        part.write_batch([[good], [good[:8]]])
    assert part.stats.retries == 0
    assert part.stats.last_error is not None
    assert "expected 9 values" in part.stats.last_error
    # The connection is still good for the next batch.
    part.write_batch([[good]])
    part.close()
    assert read_back(db, FORECASTS) == [good]


def test_an_item_must_be_a_list_of_rows() -> None:
    part = TimescaleSink("postgresql://127.0.0.1:1/none", TICKS).build("ticks_out", 0, 1)
    with pytest.raises(TypeError, match=r"'ticks'.*list of rows"):
        part.write_batch(make_ticks(2))  # type: ignore[arg-type]


def test_retries_back_off_with_jitter_and_give_up_after_max_attempts() -> None:
    delays: list[float] = []
    seen: list[SinkStats] = []
    nobody_listens = f"postgresql://sentinel@127.0.0.1:{free_port()}/sentinel"
    sink = TimescaleSink(
        nobody_listens,
        TICKS,
        backoff_initial_s=0.5,
        backoff_max_s=1.5,
        max_attempts=5,
        on_write=seen.append,
        sleep=delays.append,
    )
    with pytest.raises(TimescaleSinkError, match="gave up writing 3 rows to table 'ticks' after 5"):
        sink.build("ticks_out", 0, 1).write_batch([make_ticks(3)])
    assert len(delays) == 4
    assert all(0.0 <= d <= cap for d, cap in zip(delays, [0.5, 1.0, 1.5, 1.5], strict=True))
    assert [s.retries for s in seen] == [1, 2, 3, 4, 4]
    assert seen[-1].last_error is not None
    assert seen[-1].rows_written == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_outage_blocks_the_write_until_the_server_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        find_pg_bin()
    except EmbeddedDatabaseError:
        pytest.skip("no local PostgreSQL server binaries")
    home = ROOT / ".sentinel" / f"sink-outage-{uuid.uuid4().hex[:12]}"
    server = EmbeddedPostgres(home)
    retrying, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def on_write(stats: SinkStats) -> None:
        if stats.retries >= 3:
            retrying.set()

    try:
        server.start()
        dsn = server.dsn()
        port = server.status().port
        migrate(dsn, echo=lambda _: None)
        sink = TimescaleSink(
            dsn, TICKS, backoff_initial_s=0.05, backoff_max_s=0.2, on_write=on_write
        )
        part = sink.build("ticks_out", 0, 1)
        rows = make_ticks(2_000)
        part.write_batch([rows[:1_000]])
        server.stop()

        def write() -> None:
            try:
                part.write_batch([rows[500:1_200], rows[1_200:]])
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        with caplog.at_level(logging.WARNING, logger="connectors.timescale"):
            writer = threading.Thread(target=write, daemon=True)
            writer.start()
            assert retrying.wait(30), "the sink did not retry while the server was down"
            assert not done.is_set(), "the write returned while the server was down"
            server.start()
            assert server.status().port == port
            assert done.wait(60), "the write did not finish after the server came back"
        writer.join(5)
        assert errors == []
        assert read_back(dsn, TICKS) == by_key(TICKS, rows)
        assert (part.stats.rows_written, part.stats.rows_skipped) == (2_000, 500)
        assert part.stats.retries >= 3
        assert part.stats.last_error is not None
        assert any(
            "'ticks'" in r.getMessage() and "attempt" in r.getMessage() for r in caplog.records
        )
        part.close()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_years_of_sparse_rows_in_one_batch_are_split_by_time_span(db: str) -> None:
    """Years of daily ticks would touch thousands of one-day chunks in one transaction and
    exhaust PostgreSQL's lock table; the sink cuts a batch into spans of 16 chunks."""
    day = 86_400 * 1_000_000
    t0 = 946_684_800 * 1_000_000  # 2000-01-01
    rows = [Tick(t0 + i * day, "SPX", 1000.0 + i, 1.0, i, None) for i in range(400)]
    partition = TimescaleSink(db, TICKS).build("step", 0, 1)
    groups = partition._by_time_span(list(reversed(rows)))
    assert sorted(r[4] for g in groups for r in g) == list(range(400))
    assert len(groups) == -(-400 // 17)  # 17 daily rows fit in a 16-day span
    assert all(max(r[0] for r in g) - min(r[0] for r in g) <= 16 * day for g in groups)
    partition.write_batch([rows])
    partition.close()
    with psycopg.connect(db) as conn:
        got = conn.execute("SELECT count(*), min(price), max(price) FROM ticks").fetchone()
    assert got == (400, 1000.0, 1399.0)


# -- direct COPY into the hypertable ----------------------------------------------------


def test_a_replayed_batch_falls_back_to_on_conflict_and_equals_a_clean_run(db: str) -> None:
    """Clean chunks are COPYed straight into the hypertable; a chunk that meets rows
    already there (a replay) is rolled back and redone through the staging table."""
    rows = make_ticks(300)
    part = TimescaleSink(db, TICKS, batch_rows=100).build("ticks_out", 0, 1)
    part.write_batch([rows[:150]])
    assert part._direct
    # A replay from an older snapshot: the first chunk meets 50 stored rows, the next none.
    part.write_batch([rows[100:250]])
    assert (part.stats.rows_written, part.stats.rows_skipped) == (250, 50)
    assert part._direct, "back to direct COPY once a chunk had nothing to skip"
    part.write_batch([rows[250:], rows[250:260]])  # duplicates within one batch
    assert (part.stats.rows_written, part.stats.rows_skipped) == (300, 60)
    assert part.stats.rows_failed == 0
    part.close()
    assert read_back(db, TICKS) == by_key(TICKS, rows)


def test_a_refused_row_in_a_direct_copy_costs_only_its_own_row(db: str) -> None:
    rows = make_ticks(50)
    # Past timestamptz's range (the server refuses it), past int8's (the client does).
    server_refuses = Tick(2**63 - 1, "AAPL", 1.0, 1.0, 10_000, None)
    client_refuses = Tick(2**63, "AAPL", 1.0, 1.0, 10_001, None)
    part = TimescaleSink(db, TICKS).build("ticks_out", 0, 1)
    part.write_batch([[*rows[:20], server_refuses, *rows[20:40], client_refuses, *rows[40:]]])
    part.close()
    assert (part.stats.rows_written, part.stats.rows_failed) == (50, 2)
    assert read_back(db, TICKS) == by_key(TICKS, rows)


# -- writing in the background ----------------------------------------------------------


class Gate:
    """An ``on_write`` that holds the writer thread after its first committed chunk."""

    def __init__(self) -> None:
        self.reached, self.opened = threading.Event(), threading.Event()

    def __call__(self, stats: SinkStats) -> None:
        if stats.rows_written or stats.rows_skipped:
            self.reached.set()
            assert self.opened.wait(60), "the test never opened the gate"


def in_thread(func: Any, *args: Any) -> tuple[threading.Thread, threading.Event, list[Any]]:
    done, errors = threading.Event(), []

    def run() -> None:
        try:
            func(*args)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done, errors


def test_snapshot_returns_once_every_row_written_before_it_is_committed(db: str) -> None:
    rows = make_ticks(1_000)
    gate = Gate()
    sink = TimescaleBackgroundSink(TimescaleSink(db, TICKS, batch_rows=100, on_write=gate))
    part = sink.build_part("ticks_out", "0", None)
    part.write_batch([rows[:500]])  # returns while the writer is held
    assert gate.reached.wait(30)
    part.write_batch([rows[500:700], rows[700:]])
    assert len(read_back(db, TICKS)) == 100
    _, snapped, errors = in_thread(part.snapshot)
    assert not snapped.wait(0.2), "snapshot returned while rows were not committed"
    gate.opened.set()
    assert snapped.wait(60)
    assert errors == []
    assert read_back(db, TICKS) == by_key(TICKS, rows)  # all of them, the moment it returns
    assert part.stats.rows_written == 1_000
    part.close()


def test_a_full_queue_blocks_write_batch_instead_of_growing(db: str) -> None:
    rows = make_ticks(300)
    gate = Gate()
    sink = TimescaleBackgroundSink(
        TimescaleSink(db, TICKS, batch_rows=50, on_write=gate), max_pending_rows=100
    )
    part = sink.build_part("ticks_out", "0", None)
    part.write_batch([rows[:100]])
    assert gate.reached.wait(30)
    _, written, errors = in_thread(part.write_batch, [rows[100:150]])
    assert not written.wait(0.2), "write_batch returned past max_pending_rows"
    assert part._writer.pending_rows == 100
    gate.opened.set()
    assert written.wait(60)
    part.write_batch([rows[150:]])  # larger than the bound: taken once the queue is empty
    part.snapshot()
    assert errors == []
    assert read_back(db, TICKS) == by_key(TICKS, rows)
    part.close()


def test_a_writer_error_surfaces_at_the_next_snapshot_and_write(db: str) -> None:
    sink = TimescaleBackgroundSink(TimescaleSink(db, FORECASTS))
    part = sink.build_part("forecasts_out", "0", None)
    part.write_batch([[(T_2023, "AAPL", "ewma")]])  # the wrong shape: a bug upstream
    with pytest.raises(TimescaleSinkError, match=r"table 'forecasts'.*expected 9 values"):
        part.snapshot()
    with pytest.raises(TimescaleSinkError, match="expected 9 values"):
        part.write_batch([[]])
    with pytest.raises(TimescaleSinkError, match="expected 9 values"):
        part.close()


def test_a_lost_connection_mid_stream_loses_nothing(db: str) -> None:
    rows = make_ticks(2_000)
    gate = Gate()
    sink = TimescaleBackgroundSink(
        TimescaleSink(
            db, TICKS, batch_rows=200, backoff_initial_s=0.01, backoff_max_s=0.05, on_write=gate
        )
    )
    part = sink.build_part("ticks_out", "0", None)
    part.write_batch([rows[:1_000]])
    assert gate.reached.wait(30)
    part.write_batch([rows[1_000:]])
    with psycopg.connect(db, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'sentinel-sink-ticks' AND datname = current_database()"
        ).fetchall()
    assert killed == [(True,)]
    gate.opened.set()
    part.snapshot()
    assert part.stats.retries >= 1
    assert part.stats.last_error is not None
    assert read_back(db, TICKS) == by_key(TICKS, rows)
    assert (part.stats.rows_written, part.stats.rows_skipped) == (2_000, 0)
    part.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_the_background_sink_in_a_dataflow_writes_every_row(db: str, workers: int) -> None:
    rows = make_ticks(700)
    flow = Dataflow("timescale_background_sink")
    chunks = op.input("inp", flow, TestingSource([rows[i : i + 70] for i in range(0, 700, 70)]))
    keyed = op.key_on("by_first_symbol", chunks, lambda chunk: chunk[0].symbol)
    op.output("ticks_out", keyed, TimescaleBackgroundSink(TimescaleSink(db, TICKS), partitions=2))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert read_back(db, TICKS) == by_key(TICKS, rows)


def test_a_dataflow_aborted_and_resumed_stores_each_row_once(db: str, tmp_path: Path) -> None:
    """The snapshot is a barrier: a resume replays only rows after a durable epoch, and
    the replayed rows that are already stored are skipped (the direct COPY falls back)."""
    rows = make_ticks(1_000)
    chunks: list[Any] = [rows[i : i + 100] for i in range(0, 1_000, 100)]
    init_db_dir(tmp_path, 1)
    seen: list[SinkStats] = []

    def run(items: list[Any]) -> None:
        flow = Dataflow("timescale_background_recovery")
        keyed = op.key_on("by_first_symbol", op.input("inp", flow, TestingSource(items)), key)
        sink = TimescaleBackgroundSink(TimescaleSink(db, TICKS, on_write=seen.append))
        op.output("ticks_out", keyed, sink)
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))

    def key(chunk: Sequence[Tick]) -> str:
        return chunk[0].symbol

    items = [*chunks[:6], TestingSource.ABORT(), *chunks[6:]]  # aborts once only
    run(items)
    stored = len(read_back(db, TICKS))
    assert stored >= 500, "rows of every epoch before the abort are stored"
    seen.clear()
    run(items)  # resumes from the last snapshot, replaying rows already stored
    assert read_back(db, TICKS) == by_key(TICKS, rows)
    assert seen[-1].rows_written == 1_000 - stored
