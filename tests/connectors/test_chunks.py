"""Chunks sized for a replay (connectors.timescale.chunks), and the file profile they are
sized from (connectors.replay.profile); the database parts on the real embedded
TimescaleDB."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg.conninfo import make_conninfo

from connectors.replay.formats import inspect_file
from connectors.replay.profile import DAY_US, FileProfile, profile_file
from connectors.timescale.chunks import (
    MAX_INTERVAL_US,
    Range,
    TableLoad,
    chunk_interval_us,
    plan_ranges,
    presize_chunks,
    replay_loads,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_US = 3_600 * 1_000_000
D2000 = 10_957  # 2000-01-01, in days since the epoch
NOW_US = 20_000 * DAY_US  # 2024-10-04: "today" of the pure tests
REPLAY_TABLES = (
    "ticks",
    "bars",
    "bar_metrics",
    "forecasts",
    "model_scores",
    "alerts",
    "model_checkpoints",
    "session_events",
)


def weekdays(first_day: int, years: float) -> list[int]:
    """Days since the epoch, Monday to Friday (day 0 was a Thursday)."""
    return [d for d in range(first_day, first_day + int(years * 365)) if (d + 3) % 7 < 5]


def daily_profile(days: list[int], symbols: tuple[str, ...] = ("NDAQ",)) -> FileProfile:
    """One tick per symbol per day, at 20:59 UTC."""
    return FileProfile(
        first_us=days[0] * DAY_US + 21 * HOUR_US,
        last_us=days[-1] * DAY_US + 21 * HOUR_US,
        symbol_rows={s: len(days) for s in symbols},
        days=frozenset(days),
    )


def daily_loads(days: list[int]) -> list[TableLoad]:
    return replay_loads(
        daily_profile(days), bar_us=DAY_US, checkpoint_every_us=1200 * 10**6, store_ticks=True
    )


def at(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def chunks(conn: psycopg.Connection[Any], table: str) -> list[Range]:
    rows = conn.execute(
        """SELECT (extract(epoch FROM range_start) * 1e6)::bigint,
                  (extract(epoch FROM range_end) * 1e6)::bigint
           FROM timescaledb_information.chunks WHERE hypertable_name = %s
           ORDER BY range_start""",
        [table],
    ).fetchall()
    return [Range(int(a), int(b)) for a, b in rows]


def intervals(conn: psycopg.Connection[Any]) -> dict[str, timedelta]:
    rows = conn.execute(
        "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
    ).fetchall()
    return {str(t): i for t, i in rows}


def assert_disjoint(ranges: list[Range]) -> None:
    ordered = sorted(ranges)
    for a, b in itertools.pairwise(ordered):
        assert a.end_us <= b.start_us, (a, b)


def insert_tick(conn: psycopg.Connection[Any], us: int, seq: int = 0) -> None:
    conn.execute(
        "INSERT INTO ticks (time, symbol, price, seq) VALUES (%s, 'LIVE', 1, %s)", [at(us), seq]
    )


def insert_daily_ticks(conn: psycopg.Connection[Any], days: list[int]) -> None:
    conn.execute(
        """INSERT INTO ticks (time, symbol, price, seq)
           SELECT to_timestamp(d * 86400 + 75600), 'NDAQ', 1, k
           FROM unnest(%s::int[]) WITH ORDINALITY AS u(d, k)""",
        [days],
    )


# --- Pure sizing ---------------------------------------------------------------------


def test_the_interval_follows_the_rate_within_its_bounds() -> None:
    day, month = DAY_US, 30 * DAY_US
    assert chunk_interval_us(1, day) == MAX_INTERVAL_US  # sparse: capped
    assert chunk_interval_us(1, month) == 36 * month  # the cap, in whole 30-day chunks
    assert chunk_interval_us(5_000_000, day) == day  # dense: the table's own
    assert chunk_interval_us(10_000, day) == 100 * day  # 1M rows at 10k a day
    assert chunk_interval_us(10_000, month) == 90 * day  # rounded down to 30-day chunks
    assert chunk_interval_us(0, day) == MAX_INTERVAL_US


def test_sparse_daily_data_makes_a_bar_a_day_whatever_the_bar() -> None:
    days = weekdays(D2000, 2)
    for bar_us in (60 * 10**6, DAY_US):
        loads = {
            x.table: x
            for x in replay_loads(
                daily_profile(days, ("A", "B")),
                bar_us=bar_us,
                checkpoint_every_us=1200 * 10**6,
                store_ticks=True,
            )
        }
        assert loads["ticks"].rows == loads["bars"].rows == 2 * len(days)
        assert loads["model_scores"].rows == 46 * loads["bars"].rows
        assert loads["model_checkpoints"].rows == 9 * loads["bars"].rows
    assert "ticks" not in {
        x.table
        for x in replay_loads(
            daily_profile(days), bar_us=DAY_US, checkpoint_every_us=1, store_ticks=False
        )
    }


def test_dense_data_makes_one_bar_per_bar_length() -> None:
    profile = FileProfile(0, HOUR_US - 1, {"A": 1_000_000}, frozenset({0}))
    bars = {
        x.table: x.rows
        for x in replay_loads(
            profile, bar_us=60 * 10**6, checkpoint_every_us=1200 * 10**6, store_ticks=True
        )
    }
    assert bars["bars"] == 60
    assert bars["model_checkpoints"] == 9 * 3


def test_twenty_years_in_a_fresh_table_are_a_few_aligned_ranges() -> None:
    ticks = daily_loads(weekdays(D2000, 20))[0]
    plan = plan_ranges(
        ticks, interval_us=MAX_INTERVAL_US, default_us=DAY_US, existing=[], now_us=NOW_US
    )
    assert 7 <= len(plan.ranges) <= 8
    assert plan.fence_us is None  # history well behind today: whole buckets
    assert all(r.end_us - r.start_us == MAX_INTERVAL_US for r in plan.ranges)
    assert all(r.start_us % MAX_INTERVAL_US == 0 for r in plan.ranges)
    assert plan.ranges[0].start_us <= ticks.start_us
    assert plan.ranges[-1].end_us >= ticks.end_us
    assert_disjoint(list(plan.ranges))


def test_ranges_go_around_existing_chunks_and_skip_gaps_without_data() -> None:
    days = weekdays(D2000, 3)
    ticks = daily_loads(days)[0]
    inside = Range(days[100] * DAY_US, (days[100] + 1) * DAY_US)
    plan = plan_ranges(
        ticks, interval_us=MAX_INTERVAL_US, default_us=DAY_US, existing=[inside], now_us=NOW_US
    )
    assert_disjoint([*plan.ranges, inside])
    assert any(r.end_us == inside.start_us for r in plan.ranges)
    assert any(r.start_us == inside.end_us for r in plan.ranges)
    # An earlier replay's day chunks cover every trading day: weekends stay empty.
    every_day = [Range(d * DAY_US, (d + 1) * DAY_US) for d in days]
    again = plan_ranges(
        ticks, interval_us=MAX_INTERVAL_US, default_us=DAY_US, existing=every_day, now_us=NOW_US
    )
    assert again.ranges == ()


def test_one_symbols_few_alerts_get_no_chunks_ahead() -> None:
    alerts = next(x for x in daily_loads(weekdays(D2000, 20)) if x.table == "alerts")
    assert alerts.rows < 10
    plan = plan_ranges(
        alerts, interval_us=MAX_INTERVAL_US, default_us=30 * DAY_US, existing=[], now_us=NOW_US
    )
    assert plan.ranges == ()


def test_history_that_ends_near_today_stops_at_its_end() -> None:
    today = NOW_US // DAY_US
    ticks = daily_loads(weekdays(today - 400, 400 / 365 - 0.01))[0]
    plan = plan_ranges(
        ticks, interval_us=MAX_INTERVAL_US, default_us=DAY_US, existing=[], now_us=NOW_US
    )
    end = -(-ticks.end_us // DAY_US) * DAY_US
    assert plan.ranges[-1].end_us == end <= NOW_US
    assert plan.fence_us == end


# --- The file profile ----------------------------------------------------------------


def test_profile_of_csv_parquet_and_a_directory(tmp_path: Path) -> None:
    times = pd.to_datetime(["2001-01-02T21:00:00Z", "2001-01-03T21:00:00Z", "2003-05-06T21:00:00Z"])
    frame = pd.DataFrame({"time": times, "symbol": [" ndaq", "NDAQ", "SPX"], "price": 1.0})
    csv = tmp_path / "d.csv"
    text = frame.assign(time=frame.time.dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(index=False)
    csv.write_text(text + "not a time,NDAQ,1\nshort\n")
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet)
    directory = tmp_path / "archive" / "x"
    directory.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / "a.parquet")
    for path in (csv, parquet, directory.parent):
        profile = profile_file(inspect_file(path, count_rows=False))
        assert profile is not None
        assert profile.symbol_rows == {"NDAQ": 2, "SPX": 1}, path
        assert (at(profile.first_us), at(profile.last_us)) == (times[0], times[2])
        assert profile.days == frozenset(t.value // 10**9 // 86_400 for t in times)
        only = profile_file(inspect_file(path, count_rows=False), frozenset({"NDAQ"}))
        assert only is not None
        assert only.symbol_rows == {"NDAQ": 2}
        assert at(only.last_us) == times[1]
    assert profile_file(inspect_file(csv, count_rows=False), frozenset({"NONE"})) is None


# --- In the database -------------------------------------------------------------------


def test_years_make_a_few_chunks_per_table_and_live_days_stay_small(db: str) -> None:
    days = weekdays(D2000, 9)
    # One symbol raises a handful of alerts in years: as many symbols would, say.
    loads = [replace(x, rows=1000) if x.table == "alerts" else x for x in daily_loads(days)]
    with psycopg.connect(db, autocommit=True) as conn:
        before = intervals(conn)
        reports = {r.table: r for r in presize_chunks(db, loads)}
        assert set(reports) == set(REPLAY_TABLES)
        for table in REPLAY_TABLES:
            made = chunks(conn, table)
            assert 1 <= len(made) <= 4, (table, reports[table])
            assert len(reports[table].created) == len(made), reports[table]
            assert_disjoint(made)
        assert intervals(conn) == before
        assert (
            f"{len(reports['ticks'].created)} new chunk(s) of 1095 days" in reports["ticks"].line()
        )
        # The replay's rows land in them; live ticks of today get a day chunk of their own.
        insert_daily_ticks(conn, days)
        assert len(chunks(conn, "ticks")) == len(reports["ticks"].created)
        assert conn.execute("SELECT count(*) FROM ticks").fetchone() == (len(days),)
        now = conn.execute("SELECT now()").fetchone()
        assert now is not None
        insert_tick(conn, int((now[0] - EPOCH) / timedelta(microseconds=1)))
        newest = chunks(conn, "ticks")[-1]
        assert newest.end_us - newest.start_us == DAY_US
        for table in ("bars", "forecasts", "model_scores", "alerts", "session_events"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        # Once covered, a second run has nothing to do.
        again = presize_chunks(db, daily_loads(days))
        assert all(not r.created for r in again)
        assert len(chunks(conn, "ticks")) == len(reports["ticks"].created) + 1


def test_presizing_goes_around_an_existing_chunk(db: str) -> None:
    days = weekdays(D2000, 4)
    with psycopg.connect(db, autocommit=True) as conn:
        insert_tick(conn, days[300] * DAY_US + HOUR_US)
        (existing,) = chunks(conn, "ticks")
        (report,) = presize_chunks(db, daily_loads(days)[:1])
        made = chunks(conn, "ticks")
        assert existing in made
        assert_disjoint(made)
        assert len(report.created) == len(made) - 1 >= 2
        assert any(r.end_us == existing.start_us for r in made)
        assert any(r.start_us == existing.end_us for r in made)
        assert conn.execute("SELECT count(*) FROM ticks").fetchone() == (1,)


def test_history_up_to_today_leaves_the_next_day_to_live_data(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute("SELECT (extract(epoch FROM now()) / 86400)::int").fetchone()
        assert row is not None
        today = int(row[0])
        days = list(range(today - 200, today))  # up to yesterday
        (report,) = presize_chunks(db, daily_loads(days)[:1], interval_us=365 * DAY_US)
        end = today * DAY_US
        assert report.created
        assert max(report.created).end_us == end
        assert max(chunks(conn, "ticks")).end_us == end  # the fence chunk is gone
        insert_tick(conn, end + HOUR_US)
        newest = chunks(conn, "ticks")[-1]
        assert newest == Range(end, end + DAY_US)


def test_placeholder_rows_announce_nothing(db: str) -> None:
    loads = [x for x in daily_loads(weekdays(D2000, 5)) if x.table in ("bars", "forecasts")]
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN sentinel_stream")
        reports = presize_chunks(db, loads)
        assert all(r.created for r in reports), reports
        with psycopg.connect(db, autocommit=True) as other:
            other.execute("NOTIFY sentinel_stream, 'marker'")
        first = next(listener.notifies(timeout=10))
        assert first.payload == "marker"


def test_a_busy_table_is_reported_not_waited_for(db: str) -> None:
    """A live insert that is creating a chunk holds the lock chunk creation takes."""
    loads = daily_loads(weekdays(D2000, 5))[:2]  # ticks and bars
    with psycopg.connect(db) as live:
        insert_tick(live, D2000 * DAY_US + 500 * DAY_US)  # a new chunk, not committed
        reports = {r.table: r for r in presize_chunks(db, loads, lock_timeout_s=0.2)}
        assert "busy" in reports["ticks"].note
        assert not reports["ticks"].created
        assert reports["bars"].created
        live.commit()


def test_inserts_into_existing_chunks_go_on_meanwhile(db: str) -> None:
    days = weekdays(D2000, 5)
    with psycopg.connect(db, autocommit=True) as conn:
        insert_tick(conn, days[-1] * DAY_US + 30 * DAY_US)
    with psycopg.connect(db) as live:
        insert_tick(live, days[-1] * DAY_US + 30 * DAY_US + HOUR_US, 1)  # still open
        (report,) = presize_chunks(db, daily_loads(days)[:1], lock_timeout_s=1)
        assert report.created, report
        live.commit()
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ticks").fetchone() == (2,)


def test_a_role_that_may_not_leaves_every_table_as_it_is(db: str) -> None:
    role = f"chunks_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            dsn = make_conninfo(db, user=role)
            reports = presize_chunks(dsn, daily_loads(weekdays(D2000, 5)))
            assert all(not r.created and "left as is" in r.note for r in reports), reports
            assert "triggers" in {r.table: r for r in reports}["bars"].note
            assert chunks(admin, "ticks") == []
        finally:
            admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("override_days", [400, 1])
def test_an_override_is_rounded_to_the_tables_own_chunks(db: str, override_days: int) -> None:
    loads = [x for x in daily_loads(weekdays(D2000, 3)) if x.table in ("ticks", "bars")]
    reports = {r.table: r for r in presize_chunks(db, loads, interval_us=override_days * DAY_US)}
    if override_days == 1:
        assert all(not r.created and r.note.startswith("keeps") for r in reports.values())
        return
    assert reports["ticks"].interval_us == 400 * DAY_US
    assert reports["bars"].interval_us == 390 * DAY_US
