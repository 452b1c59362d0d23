"""The end-of-day archive and retention, against the real embedded TimescaleDB.

Ticks over 2024-03-08 (Friday) to 2024-03-12 (Tuesday) for an XNYS stock and a 24/7 coin:
pre-market and after-hours trades (one after 00:00 UTC, in the next UTC chunk), a
Saturday trade, the US switch to summer time (Sunday 03-10), values on day boundaries.
The first archive round runs at 2024-03-12T12:00Z: every day is due except the coin's
03-12, which is not over.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.archive import (
    SCHEMA,
    Archive,
    ArchivePolicy,
    Problem,
    RetentionReport,
    apply_retention,
    archive_days,
    checksum,
    verify_day,
)
from connectors.replay import ReplaySource, ReplayState
from dataflows.records import RowBlock
from dataflows.times import to_epoch_us
from sentinel.cli import main
from sentinel.settings import get_settings

UTC = dt.timezone.utc
STOCK, COIN = "AAPL", "BINANCE:BTCUSDT"
TZ = {STOCK: "America/New_York", COIN: "UTC"}
DAYS = [dt.date(2024, 3, d) for d in range(8, 13)]
NOW = dt.datetime(2024, 3, 12, 12, tzinfo=UTC)
FAR = dt.datetime(2030, 1, 1, tzinfo=UTC)
COLUMNS = "time, symbol, price, size, seq, conditions, extended"
CONDITIONS = [None, None, None, "12", "1,12", "", "NA", 'quote" and\nnewline']


def us(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def stock_times() -> list[dt.datetime]:
    """Friday pre-market to after hours (19:30 ET is 00:30Z Saturday), a Saturday trade,
    Monday (EDT) 04:00 ET on the dot to 20:15 ET (00:15Z Tuesday)."""
    times = [at("2024-03-08T08:00:00-05:00"), at("2024-03-08T19:30:00-05:00")]
    times += [at("2024-03-08T09:30:00-05:00") + dt.timedelta(minutes=3 * i) for i in range(130)]
    times += [at("2024-03-09T10:00:00-05:00")]
    times += [at("2024-03-11T04:00:00-04:00"), at("2024-03-11T20:15:00-04:00")]
    times += [at("2024-03-11T09:30:00-04:00") + dt.timedelta(minutes=3 * i) for i in range(130)]
    return times


def coin_times() -> list[dt.datetime]:
    """Every 15 minutes from 03-08T00:00Z to 03-12T12:00Z, plus the last microsecond of
    each day and a trade at the same instant as one of the stock's."""
    start = dt.datetime(2024, 3, 8, tzinfo=UTC)
    times = [start + dt.timedelta(minutes=15 * i) for i in range(4 * 24 * 4 + 49)]
    times += [dt.datetime.combine(d, dt.time(23, 59, 59, 999_999), UTC) for d in DAYS[:4]]
    return [*times, at("2024-03-08T09:30:00-05:00")]


def tick_rows() -> list[tuple[object, ...]]:
    rng = random.Random(7)
    rows: list[tuple[object, ...]] = []
    for symbol, times in ((STOCK, stock_times()), (COIN, coin_times())):
        for i, t in enumerate(times):
            price = round(rng.uniform(100, 200), rng.choice([2, 6]))
            size = float(rng.randint(1, 500))
            extended = symbol == STOCK and not (14 <= t.hour < 21)
            rows.append((t, symbol, price, size, 1000 + i, rng.choice(CONDITIONS), extended))
    return rows


def closes() -> list[tuple[object, ...]]:
    """The close events the dataflow would have written by NOW."""
    rows: list[tuple[object, ...]] = [
        (at("2024-03-08T16:00:00-05:00"), STOCK, "close", DAYS[0], "XNYS"),
        (at("2024-03-11T16:00:00-04:00"), STOCK, "close", DAYS[3], "XNYS"),
    ]
    for d in DAYS[:4]:
        end = dt.datetime.combine(d + dt.timedelta(days=1), dt.time(0), UTC)
        rows.append((end, COIN, "close", d, "24/7"))
    return rows


def insert_ticks(dsn: str, rows: list[tuple[object, ...]]) -> None:
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor().copy(f"COPY ticks ({COLUMNS}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


@pytest.fixture
def filled(db: str) -> str:
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO tickers (symbol, calendar) VALUES (%s, 'XNYS'), (%s, '24/7')",
            [STOCK, COIN],
        )
        conn.cursor().executemany(
            "INSERT INTO session_events (time, symbol, event, session_date, calendar) "
            "VALUES (%s, %s, %s, %s, %s)",
            closes(),
        )
    insert_ticks(db, tick_rows())
    return db


@pytest.fixture
def archived(filled: str, tmp_path: Path) -> tuple[str, Path]:
    root = tmp_path / "archive"
    archive_days(filled, str(root), now_us=us(NOW))
    return filled, root


# --- Reading both sides, independently of the code under test ---------------------


def db_frame(dsn: str) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {COLUMNS} FROM ticks").fetchall()
    frame = pd.DataFrame(rows, columns=SCHEMA.names)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return normalized(frame)


def normalized(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"time": "datetime64[us, UTC]", "seq": "int64", "extended": "bool"})
    frame["conditions"] = (
        frame["conditions"].astype(object).where(frame["conditions"].notna(), None)
    )
    return frame.sort_values(["symbol", "time", "seq"]).reset_index(drop=True)


def local_days(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [t.tz_convert(TZ[s]).date() for t, s in zip(frame["time"], frame["symbol"], strict=True)],
        index=frame.index,
    )


def files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def archive_frame(root: Path) -> pd.DataFrame:
    tables = [pq.ParquetFile(f).read() for f in files(root)]
    return normalized(pa.concat_tables(tables).to_pandas())


def manifest(dsn: str) -> dict[tuple[str, dt.date], tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT symbol, day, calendar, day_start, day_end, uri, rows, checksum, verified_at "
            "FROM tick_archive"
        ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def chunks(dsn: str) -> list[dt.date]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT range_start FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'ticks' ORDER BY range_start"
        ).fetchall()
    return [r[0].astimezone(UTC).date() for r in rows]


def retention(
    dsn: str, root: Path, now: dt.datetime = FAR, days: float = 90, dry_run: bool = False
) -> RetentionReport:
    report = apply_retention(dsn, str(root), days, now_us=us(now), dry_run=dry_run)
    if report.license != "apache":
        pytest.skip(f"retention runs on Apache-only servers; this one is {report.license!r}")
    return report


ARCHIVED = {(STOCK, DAYS[0]), (STOCK, DAYS[1]), (STOCK, DAYS[3])} | {(COIN, d) for d in DAYS[:4]}


# --- Archiving ----------------------------------------------------------------------


def test_archive_round_trip_equals_the_ticks_of_those_days(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    ticks = db_frame(dsn)
    keys = pd.Series(list(zip(ticks["symbol"], local_days(ticks), strict=True)))
    expected = ticks[keys.isin(ARCHIVED).to_numpy()].reset_index(drop=True)
    assert len(expected) == len(ticks) - 49  # the coin's 03-12 waits for its day to end
    pd.testing.assert_frame_equal(archive_frame(root), expected)

    listed = {f.relative_to(root).as_posix() for f in files(root)}
    assert "date=2024-03-08/symbol=AAPL/ticks.parquet" in listed
    assert "date=2024-03-09/symbol=BINANCE%3ABTCUSDT/ticks.parquet" in listed
    assert len(listed) == len(ARCHIVED)
    assert [p for p in root.rglob("*") if p.name.startswith(".")] == []  # no temporary files

    entries = manifest(dsn)
    assert set(entries) == ARCHIVED
    for (symbol, day), (calendar, start, end, uri, rows, digest, verified) in entries.items():
        tz = ZoneInfo(TZ[symbol])
        assert start == dt.datetime.combine(day, dt.time(0), tz)
        assert end == dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz)
        assert calendar == ("XNYS" if symbol == STOCK else "24/7")
        assert rows == int((expected["symbol"] == symbol).mul(local_days(expected) == day).sum())
        path = Path(str(uri))
        assert path.is_file()
        assert path.is_relative_to(root)
        assert digest == checksum(pq.ParquetFile(path).read())
        assert verified == NOW
    # The summer-time Monday starts at 04:00Z, the winter Friday at 05:00Z.
    assert entries[(STOCK, DAYS[3])][1] == at("2024-03-11T04:00:00Z")
    assert entries[(STOCK, DAYS[0])][1] == at("2024-03-08T05:00:00Z")


def test_each_file_is_sorted_and_typed(archived: tuple[str, Path]) -> None:
    _, root = archived
    for f in files(root):
        table = pq.ParquetFile(f).read()
        assert table.schema.equals(SCHEMA)
        assert table == table.sort_by([("time", "ascending"), ("seq", "ascending")])


def test_an_archive_round_is_idempotent(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    before = {f: f.stat().st_mtime_ns for f in files(root)}
    assert archive_days(dsn, str(root), now_us=us(NOW + dt.timedelta(hours=1))) == []
    assert {f: f.stat().st_mtime_ns for f in files(root)} == before


def test_when_days_are_due(filled: str, tmp_path: Path) -> None:
    root = str(tmp_path / "a")

    def run(now: str) -> set[tuple[str, dt.date]]:
        return {(a.symbol, a.day) for a in archive_days(filled, root, now_us=us(at(now)))}

    # Friday closed and the stock traded after it (Saturday): due without waiting. The
    # Saturday trade has no session: due a day after Saturday ends (05:00Z Sunday).
    assert run("2024-03-09T00:00:00Z") >= {(STOCK, DAYS[0])}
    assert (STOCK, DAYS[1]) in run("2024-03-11T05:00:00Z")
    # Monday's day ends at 04:00Z Tuesday; with the hour of grace, due at 05:00Z.
    assert (STOCK, DAYS[3]) not in run("2024-03-12T04:59:59Z")
    assert run("2024-03-12T05:00:00Z") == {(STOCK, DAYS[3])}
    # The coin's Tuesday: no close event yet; due once over for a day.
    assert run("2024-03-13T23:59:59Z") == set()
    assert run("2024-03-14T00:00:00Z") == {(COIN, DAYS[4])}


def test_late_ticks_rewrite_the_day_and_its_manifest_row(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    rows = manifest(dsn)[(STOCK, DAYS[3])][4]
    late = (at("2024-03-11T23:59:00Z"), STOCK, 180.5, 7.0, 99_999, None, True)
    insert_ticks(dsn, [late])
    again = archive_days(dsn, str(root), now_us=us(NOW + dt.timedelta(hours=2)))
    assert [(a.symbol, a.day, a.rows, a.replaced_rows) for a in again] == [
        (STOCK, DAYS[3], rows + 1, rows)
    ]
    assert manifest(dsn)[(STOCK, DAYS[3])][4] == rows + 1
    file = root / Archive.relative(STOCK, DAYS[3])
    assert 99_999 in pq.ParquetFile(file).read().column("seq").to_pylist()


def test_an_archive_never_shrinks(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM ticks WHERE symbol = %s AND seq = 1000", [STOCK])
    file = root / Archive.relative(STOCK, DAYS[0])
    before = file.read_bytes()
    assert archive_days(dsn, str(root), now_us=us(NOW), only=[(STOCK, DAYS[0])]) == []
    assert file.read_bytes() == before
    check = verify_day(dsn, str(root), STOCK, DAYS[0], now_us=us(NOW))
    assert check.problem is Problem.DB_DIFFERS
    assert "rows differ" in check.detail


def test_a_file_uri_works_the_same(filled: str, tmp_path: Path) -> None:
    uri = (tmp_path / "a").as_uri()
    done = archive_days(filled, uri, now_us=us(NOW))
    assert {(a.symbol, a.day) for a in done} == ARCHIVED
    assert all(a.uri.startswith(uri + "/date=") for a in done)
    assert all(verify_day(filled, uri, a.symbol, a.day, now_us=us(NOW)).ok for a in done)


def test_the_checksum_ignores_row_order_but_not_values() -> None:
    rows = [r for r in tick_rows() if r[1] == COIN]
    table = pa.table({n: [r[i] for r in rows] for i, n in enumerate(SCHEMA.names)}).cast(SCHEMA)
    digest = checksum(table)
    assert checksum(table.take(list(reversed(range(len(rows)))))) == digest
    assert checksum(table.slice(1)) != digest
    empty = pa.array(["" if c is None else c for c in table.column("conditions").to_pylist()])
    assert checksum(table.set_column(5, "conditions", empty)) != digest  # NULL is not ""
    nudged = [table.column("price")[0].as_py() + 1e-9, *table.column("price").to_pylist()[1:]]
    assert checksum(table.set_column(2, "price", pa.array(nudged))) != digest


def test_manifest_uris_hold_no_credentials() -> None:
    archive = Archive("s3://AKIA:s3cret@bucket/prefix?region=x&scheme=http")
    assert archive.uri == "s3://bucket/prefix?region=x&scheme=http"


# --- Retention ----------------------------------------------------------------------


def test_retention_drops_only_archived_and_verified_chunks(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    assert chunks(dsn) == DAYS
    report = retention(dsn, root)
    assert report.action == "applied"
    assert [
        dt.datetime.fromtimestamp(c.range_start_us / 1e6, UTC).date() for c in report.dropped
    ] == DAYS[:4]
    # 03-12's chunk holds the stock's Monday after hours (archived) and the coin's Tuesday
    # (not archived): it stays.
    assert chunks(dsn) == [DAYS[4]]
    (kept,) = report.refused
    assert {(c.symbol, c.day, c.problem) for c in kept.checks} == {
        (STOCK, DAYS[3], None),
        (COIN, DAYS[4], Problem.MISSING),
    }
    remaining = db_frame(dsn)
    assert len(remaining) == 50  # nothing of the chunk was dropped
    # The stock's Friday spans two chunks; each was checked on its own part of the day.
    checked = [c for d in report.dropped for c in d.checks if (c.symbol, c.day) == (STOCK, DAYS[0])]
    assert [c.db_rows for c in checked] == [131, 1]
    assert manifest(dsn)[(STOCK, DAYS[0])][6] == FAR


def test_retention_waits_an_hour_after_archiving(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    # 2.4 hours of retention: the four full days' chunks are old enough at once, but their
    # days were archived less than an hour ago (their rows may still be changing).
    soon = retention(dsn, root, now=NOW + dt.timedelta(minutes=59), days=0.1)
    assert soon.dropped == []
    assert {c.problem for d in soon.chunks for c in d.refused} == {Problem.UNSETTLED}
    later = retention(dsn, root, now=NOW + dt.timedelta(hours=1), days=0.1)
    assert len(later.dropped) == 4


def test_a_dry_run_drops_nothing(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    report = retention(dsn, root, dry_run=True)
    assert report.action == "dry run"
    assert len(report.dropped) == 4
    assert chunks(dsn) == DAYS
    assert manifest(dsn)[(STOCK, DAYS[0])][6] == NOW  # verified_at untouched


def _change_one_price(path: Path) -> None:
    table = pq.ParquetFile(path).read()
    prices = table.column("price").to_pylist()
    prices[3] += 0.01
    pq.write_table(table.set_column(2, "price", pa.array(prices)), path)


def _drop_one_row(path: Path) -> None:
    pq.write_table(pq.ParquetFile(path).read().slice(1), path)


def _overwrite_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    ("damage", "problem", "reason"),
    [
        (_change_one_price, Problem.FILE_DIFFERS, "checksum differs"),
        (_drop_one_row, Problem.FILE_DIFFERS, "rows differ"),
        (_overwrite_bytes, None, ""),  # unreadable, or read with other values
        (_truncate, Problem.UNREADABLE, ""),
        (Path.unlink, Problem.UNREADABLE, ""),
    ],
)
def test_a_damaged_file_keeps_its_days_chunks(
    archived: tuple[str, Path],
    damage: Callable[[Path], object],
    problem: Problem | None,
    reason: str,
) -> None:
    dsn, root = archived
    damage(root / Archive.relative(STOCK, DAYS[0]))
    report = retention(dsn, root)
    # The stock's Friday is in the chunks of 03-08 and 03-09 (its after hours): both stay.
    assert chunks(dsn) == [DAYS[0], DAYS[1], DAYS[4]]
    for decision in report.refused[:2]:
        (bad,) = decision.refused
        assert (bad.symbol, bad.day) == (STOCK, DAYS[0])
        assert bad.problem in ({problem} if problem else {Problem.UNREADABLE, Problem.FILE_DIFFERS})
        assert reason in bad.detail
        assert "ticks.parquet" in bad.detail
    # Repair: archive the day again from the database, which still holds all of it.
    assert [
        a.day for a in archive_days(dsn, str(root), now_us=us(FAR), only=[(STOCK, DAYS[0])])
    ] == [DAYS[0]]
    retention(dsn, root, now=FAR + dt.timedelta(hours=1))
    assert chunks(dsn) == [DAYS[4]]


def test_retention_archives_again_a_day_that_gained_rows(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    insert_ticks(dsn, [(at("2024-03-09T12:00:00.5Z"), COIN, 150.0, 1.0, 77, None, False)])
    first = retention(dsn, root)
    assert chunks(dsn) == [DAYS[1], DAYS[4]]
    (kept, _) = first.refused
    (grown,) = kept.refused
    assert (grown.symbol, grown.day, grown.problem) == (COIN, DAYS[1], Problem.DB_DIFFERS)
    assert grown.archive_rows is not None
    assert grown.db_rows == grown.archive_rows + 1
    assert kept.rearchived == ((COIN, DAYS[1]),)
    second = retention(dsn, root, now=FAR + dt.timedelta(hours=1))
    assert len(second.dropped) == 1
    assert chunks(dsn) == [DAYS[4]]
    assert (
        77
        in pq.ParquetFile(root / Archive.relative(COIN, DAYS[1])).read().column("seq").to_pylist()
    )


def test_retention_of_zero_days_is_off(archived: tuple[str, Path]) -> None:
    dsn, root = archived
    assert apply_retention(dsn, str(root), 0, now_us=us(FAR)).action == "disabled"
    assert chunks(dsn) == DAYS


def test_calendar_override_wins(filled: str, tmp_path: Path) -> None:
    done = archive_days(
        filled, str(tmp_path / "a"), now_us=us(FAR), policy=ArchivePolicy(calendar_override="24/7")
    )
    assert {a.calendar for a in done} == {"24/7"}
    assert {(a.symbol, a.day) for a in done if a.symbol == STOCK} == {
        (STOCK, DAYS[0]),
        (STOCK, DAYS[1]),  # the after hours past 00:00Z and the Saturday trade
        (STOCK, DAYS[3]),
        (STOCK, DAYS[4]),
    }


# --- Replaying the archive ----------------------------------------------------------


def replayed(path: Path, symbols: list[str] | None = None) -> pd.DataFrame:
    source = ReplaySource(path, batch_rows=37, symbols=symbols)
    part = source.build_part("replay", source.name, None)
    seqs: list[int] = []
    times: list[object] = []
    names: list[object] = []
    prices: list[object] = []
    sizes: list[object] = []
    while True:
        try:
            batches = part.next_batch()
        except StopIteration:
            break
        for batch in batches:
            for first, block in batch.messages:
                assert isinstance(block, RowBlock)
                assert block.size is not None
                seqs += range(first, first + len(block.time))
                times += block.time
                names += block.symbol
                prices += block.price
                sizes += block.size
    part.close()
    time_us, ok = to_epoch_us(times)
    assert ok.all()
    return pd.DataFrame(
        {"seq": seqs, "time_us": time_us, "symbol": names, "price": prices, "size": sizes}
    )


def expected_replay(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(time_us=frame["time"].astype("int64"))
    frame = frame.sort_values(["time_us", "seq", "symbol"], kind="stable")
    return frame[["time_us", "symbol", "price", "size"]].reset_index(drop=True)


def test_replay_reads_the_archive_in_time_order(archived: tuple[str, Path]) -> None:
    _, root = archived
    got = replayed(root)
    assert got["seq"].tolist() == list(range(len(got)))
    assert got["time_us"].is_monotonic_increasing
    expected = expected_replay(archive_frame(root))
    pd.testing.assert_frame_equal(got.drop(columns="seq"), expected)
    assert ReplaySource(root).total_rows == len(expected)
    assert ReplaySource(root).name == "archive"


def test_replay_of_one_date_and_of_one_file(archived: tuple[str, Path]) -> None:
    _, root = archived
    date_dir = root / "date=2024-03-08"
    got = replayed(date_dir)
    pd.testing.assert_frame_equal(got.drop(columns="seq"), expected_replay(archive_frame(date_dir)))
    one = root / Archive.relative(COIN, DAYS[2])
    got = replayed(one)
    pd.testing.assert_frame_equal(
        got.drop(columns="seq"), expected_replay(archive_frame(one.parent))
    )


def test_replay_of_the_archive_resumes_and_filters(archived: tuple[str, Path]) -> None:
    _, root = archived
    whole = replayed(root)
    coin = replayed(root, symbols=[COIN.lower()])
    pd.testing.assert_frame_equal(
        coin, whole[whole["symbol"] == COIN].reset_index(drop=True)
    )  # the same row numbers as in the whole stream
    source = ReplaySource(root, batch_rows=37)
    part = source.build_part("replay", source.name, ReplayState(500, 0))
    rest: list[int] = []
    while True:
        try:
            for batch in part.next_batch():
                for first, block in batch.messages:
                    assert isinstance(block, RowBlock)
                    rest += range(first, first + len(block.time))
        except StopIteration:
            break
    assert rest == list(range(500, len(whole)))


# --- The command line ---------------------------------------------------------------


@pytest.fixture
def cli(filled: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``sentinel`` in this process, on the test database; yields the archive directory."""
    monkeypatch.setenv("DATABASE_URL", filled)
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SENTINEL_ARCHIVE_URI", str(tmp_path / "cli-archive"))
    get_settings.cache_clear()
    yield tmp_path / "cli-archive"
    get_settings.cache_clear()


def test_sentinel_archive_and_retention(
    cli: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # The wall clock is years past 2024: every day is due, the coin's Tuesday included.
    assert main(["archive"]) == 0
    err = capsys.readouterr().err
    assert "8 day(s), 703 rows, verified" in err
    assert len(files(cli)) == 8
    with caplog.at_level(logging.INFO, "connectors.archive"):
        assert main(["retention", "--dry-run"]) == 0
    assert "0 chunk(s) would drop, 5 kept" in capsys.readouterr().err
    # Each day was archived just now: its rows may still be changing.
    assert f"{STOCK} 2024-03-08: archived too recently (archived at " in caplog.text
    assert main(["archive", "--day", "2024-03-08"]) == 1
    assert "--day and --symbol go together" in capsys.readouterr().err
    assert main(["archive", "--day", "2024-03-08", "--symbol", "aapl"]) == 0
    assert "1 day(s), 132 rows" in capsys.readouterr().err


def test_sentinel_archive_watch_runs_rounds_until_interrupted(
    cli: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("sentinel.commands.archive._pause", sleep)
    assert main(["archive", "--watch"]) == 130
    assert rounds == [600.0, 600.0]
    err = capsys.readouterr().err
    assert "retention 90 days" in err
    assert "8 day(s)" in err  # the first round
    assert "kept" not in err  # days waiting to settle are not worth a report
