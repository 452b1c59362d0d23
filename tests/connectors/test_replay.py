"""ReplaySource: reading, batching, filtering, resuming, pacing."""

from __future__ import annotations

import gzip
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import bytewax.operators as op
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, cluster_main, run_main

from connectors.replay import ReplaySource, ReplayState
from dataflows.records import RawBatch, RowBlock
from dataflows.times import to_epoch_us

T0_US = 1_704_205_800_000_000  # 2024-01-02T14:30:00Z
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SYMBOLS = ["AAPL", "MSFT", "MSFT", "NVDA"]

Row = tuple[int, object, object, object, object]  # seq, time, symbol, price, size


def iso(us: int) -> str:
    """An independent formatter: stdlib datetime, not the code under test."""
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def trades(n: int) -> list[tuple[int, str, float, int]]:
    """n trades 40.123 ms apart: (time us, symbol, price, size)."""
    return [
        (T0_US + i * 40_123, SYMBOLS[i % 4], round(100 + i * 0.25, 2), 10 + i) for i in range(n)
    ]


def write_csv(path: Path, lines: Sequence[str]) -> Path:
    data = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data.encode()))
    else:
        path.write_text(data)
    return path


def trades_csv(path: Path, n: int) -> Path:
    lines = ["time,symbol,price,size"]
    lines += [f"{iso(t)},{s},{p},{q}" for t, s, p, q in trades(n)]
    return write_csv(path, lines)


def trades_parquet(path: Path, n: int, row_group_size: int = 1000) -> Path:
    rows = trades(n)
    table = pa.table(
        {
            "time": pa.array([t for t, *_ in rows], pa.timestamp("us", tz="UTC")),
            "symbol": [s for _, s, _, _ in rows],
            "price": [p for *_, p, _ in rows],
            "size": [q for *_, q in rows],
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def drain(source: ReplaySource, state: ReplayState | None = None) -> list[RawBatch]:
    part = source.build_part("replay", source.name, state)
    batches: list[RawBatch] = []
    for _ in range(100_000):
        try:
            batches += part.next_batch()
        except StopIteration:
            part.close()
            return batches
    raise AssertionError("the partition never finished")


def flat(batches: Sequence[RawBatch]) -> list[Row]:
    """The rows of the batches, checking each RowBlock's shape on the way."""
    rows: list[Row] = []
    for batch in batches:
        for seq, block in batch.messages:
            assert isinstance(block, RowBlock)
            assert seq == block.first_seq
            n = len(block.time)
            assert len(block.symbol) == len(block.price) == n > 0
            sizes = block.size if block.size is not None else [None] * n
            assert len(sizes) == n
            rows += zip(
                range(seq, seq + n), block.time, block.symbol, block.price, sizes, strict=True
            )
    return rows


def seqs(batch: RawBatch) -> list[int]:
    return [seq for seq, *_ in flat([batch])]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000_000

    def __call__(self) -> int:
        return self.now


def normalized(rows: Sequence[Row]) -> list[tuple[int, int, str, float, float | None]]:
    us, ok = to_epoch_us([r[1] for r in rows])
    assert ok.all()
    return [
        (seq, int(t), str(sym), float(str(price)), None if size is None else float(str(size)))
        for (seq, _, sym, price, size), t in zip(rows, us, strict=True)
    ]


def trades_directory(path: Path, n: int, row_group_size: int = 3) -> Path:
    """n trades in a directory, one Parquet file per symbol (``symbol=S/part.parquet``),
    MSFT's without statistics; and files a replay skips (hidden, or Spark's markers)."""
    table = pq.read_table(trades_parquet(path.with_suffix(".parquet"), n))
    path.with_suffix(".parquet").unlink()
    for symbol in sorted(set(SYMBOLS)):
        (path / f"symbol={symbol}").mkdir(parents=True)
        rows = table.filter(pc.equal(table.column("symbol"), symbol))
        pq.write_table(
            rows,
            path / f"symbol={symbol}" / "part.parquet",
            row_group_size=row_group_size,
            write_statistics=symbol != "MSFT",
        )
    (path / "_SUCCESS").write_bytes(b"")
    (path / "symbol=AAPL" / ".part.parquet.tmp").write_bytes(b"half a file")
    (path / "_temporary").mkdir()
    pq.write_table(table, path / "_temporary" / "part.parquet")
    return path


@pytest.fixture(params=["csv", "csv.gz", "parquet", "directory"])
def trades_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """25 trades in each format; Parquet in row groups of 6 rows; a directory of a file
    per symbol in row groups of 3, merged back by time."""
    suffix = request.param
    if suffix == "parquet":
        return trades_parquet(tmp_path / "trades.parquet", 25, row_group_size=6)
    if suffix == "directory":
        return trades_directory(tmp_path / "trades", 25)
    return trades_csv(tmp_path / f"trades.{suffix}", 25)


# --- Reading ---------------------------------------------------------------------------


def test_csv_and_parquet_give_the_same_rows(tmp_path: Path) -> None:
    csv_batches = drain(ReplaySource(trades_csv(tmp_path / "t.csv", 25), batch_rows=10))
    pq_path = trades_parquet(tmp_path / "t.parquet", 25, row_group_size=6)
    pq_batches = drain(ReplaySource(pq_path, batch_rows=10))
    # The same batches of the same seqs, with the same stream clocks...
    assert [(b.clock_us, b.messages[0][0]) for b in csv_batches] == [
        (b.clock_us, b.messages[0][0]) for b in pq_batches
    ]
    assert [seqs(b) for b in csv_batches] == [seqs(b) for b in pq_batches]
    # ... and equivalent values.
    csv_rows, pq_rows = flat(csv_batches), flat(pq_batches)
    expected = [(i, t, s, p, float(q)) for i, (t, s, p, q) in enumerate(trades(25))]
    assert normalized(csv_rows) == expected
    assert normalized(pq_rows) == expected
    # CSV values are the file's strings; Parquet timestamps become ISO 8601 UTC strings.
    assert csv_rows[1] == (1, iso(T0_US + 40_123), "MSFT", "100.25", "11")
    assert pq_rows[1] == (1, "2024-01-02T14:30:00.040123Z", "MSFT", 100.25, 11)


def test_batch_rows_splits_batches_by_file_row(trades_file: Path) -> None:
    batches = drain(ReplaySource(trades_file, batch_rows=10))
    assert [[seq for seq, *_ in flat([b])] for b in batches] == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]
    assert all(len(b.messages) == 1 for b in batches)
    assert {b.source for b in batches} == {f"replay:{trades_file.name}"}
    assert batches[0].subscribed is None


def test_symbol_filter_keeps_file_row_numbers(trades_file: Path) -> None:
    batches = drain(ReplaySource(trades_file, symbols=[" msft", "NVDA"], batch_rows=10))
    rows = flat(batches)
    expected = [i for i in range(25) if SYMBOLS[i % 4] in ("MSFT", "NVDA")]
    assert [seq for seq, *_ in rows] == expected
    assert {sym for _, _, sym, _, _ in rows} == {"MSFT", "NVDA"}
    # Rows 1-3, 5-7, ... are runs: one RowBlock per run, never across a skipped row.
    runs = [
        (seq, len(block.time)) for seq, block in batches[0].messages if isinstance(block, RowBlock)
    ]
    assert runs == [(1, 3), (5, 3), (9, 1)]
    assert [batch.messages[0][0] for batch in batches] == [1, 10, 21]


def test_a_single_symbol_string_is_one_symbol(tmp_path: Path) -> None:
    rows = flat(drain(ReplaySource(trades_csv(tmp_path / "t.csv", 8), symbols="aapl")))
    assert [seq for seq, *_ in rows] == [0, 4]


def test_csv_values_stay_raw_and_odd_rows_keep_their_numbers(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "odd.csv",
        [
            "Venue, Price ,SYMBOL,time",  # any order, any case, extra columns ignored
            'X, 187.25 ,AAPL,"2024-01-02T14:30:00Z"',
            "",  # blank: skipped, but it is row 1
            'X,"1,5","MS\nFT",2024-01-02T14:30:01Z',  # quoted comma and newline
            "X,,NVDA",  # short row: the missing time reads as ""
            "X,3,AAPL,not a time,extra,fields",
        ],
    )
    source = ReplaySource(path)
    rows = flat(drain(source))
    assert rows == [
        (0, "2024-01-02T14:30:00Z", "AAPL", " 187.25 ", None),
        (2, "2024-01-02T14:30:01Z", "MS\nFT", "1,5", None),
        (3, "", "NVDA", "", None),
        (4, "not a time", "AAPL", "3", None),
    ]


def test_rows_far_longer_than_the_header_are_read_too(tmp_path: Path) -> None:
    # pandas' fast reader refuses such a row; the stdlib reader takes over from its chunk.
    lines = ["time,symbol,price"] + [f"{iso(T0_US + i)},AAPL,{i}" for i in range(12)]
    lines[8] += ",x" * 30
    path = write_csv(tmp_path / "ragged.csv", lines)
    rows = flat(drain(ReplaySource(path, batch_rows=3)))
    assert rows == [(i, iso(T0_US + i), "AAPL", str(i), None) for i in range(12)]
    for next_row in (7, 8):
        resumed = flat(drain(ReplaySource(path, batch_rows=3), ReplayState(next_row, 0)))
        assert resumed == rows[next_row:]


def test_parquet_values_as_stored(tmp_path: Path) -> None:
    table = pa.table(
        {
            "time": pa.array(
                [1_704_205_800_123_456_789, None], pa.timestamp("ns", tz="America/New_York")
            ),
            "symbol": pa.array(["AAPL", "MSFT"]).dictionary_encode(),
            "price": [187.25, None],
            "day": pa.array([date(2024, 1, 2), None], pa.date32()),
        }
    )
    pq.write_table(table, tmp_path / "t.pq")
    rows = flat(drain(ReplaySource(tmp_path / "t.pq")))
    assert rows == [
        (0, "2024-01-02T14:30:00.123456Z", "AAPL", 187.25, None),
        (1, None, "MSFT", None, None),
    ]
    renamed = table.select(["day", "symbol", "price"]).rename_columns(["time", "s", "p"])
    pq.write_table(renamed, tmp_path / "d.parquet")
    with pytest.raises(ValueError, match="'symbol', 'price'"):
        ReplaySource(tmp_path / "d.parquet")


def test_date_typed_parquet_times(tmp_path: Path) -> None:
    table = pa.table(
        {"time": pa.array([date(2024, 1, 2)], pa.date32()), "symbol": ["A"], "price": [1.0]}
    )
    pq.write_table(table, tmp_path / "d.parquet")
    rows = flat(drain(ReplaySource(tmp_path / "d.parquet")))
    assert rows == [(0, "2024-01-02", "A", 1.0, None)]
    assert to_epoch_us(["2024-01-02"])[0].tolist() == [1_704_153_600_000_000]


def test_stream_clock_is_the_batch_median_and_carries_over(tmp_path: Path) -> None:
    seconds = [7, 0, 5, 9, 0]
    lines = ["time,symbol,price"] + [f"{iso(T0_US + s * 10**6)},A,1" for s in seconds]
    lines += ["garbage,A,1", ",A,1", "1704205830,A,1"]  # no time, no time, epoch seconds
    path = write_csv(tmp_path / "clock.csv", lines)
    # rows 0-3: 0, 5, 7, 9 s -> the lower median, 5 s; rows 4-7: 0 and 30 s -> 0 s
    assert [b.clock_us for b in drain(ReplaySource(path, batch_rows=4))] == [
        T0_US + 5 * 10**6,
        T0_US,
    ]
    # One row a batch: a batch with no parseable time carries the previous clock.
    clocks = [T0_US + s * 10**6 for s in [7, 0, 5, 9, 0, 0, 0, 30]]
    assert [b.clock_us for b in drain(ReplaySource(path, batch_rows=1))] == clocks
    # The carried clock comes from the resume state, 0 if nothing came before.
    resumed = drain(ReplaySource(path, batch_rows=1), ReplayState(5, 42))
    assert [b.clock_us for b in resumed] == [42, 42, T0_US + 30 * 10**6]
    assert drain(ReplaySource(path, batch_rows=1), ReplayState(6, 0))[0].clock_us == 0


def test_progress_reports_rows_done_and_total(trades_file: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    source = ReplaySource(trades_file, batch_rows=10, on_progress=lambda d, t: calls.append((d, t)))
    assert source.total_rows == 25
    drain(source)
    assert calls == [(10, 25), (20, 25), (25, 25), (25, 25)]


def test_a_filter_that_matches_nothing_still_yields_control(tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    path = trades_csv(tmp_path / "t.csv", 100)
    source = ReplaySource(
        path, symbols=["ZZZ"], batch_rows=5, on_progress=lambda d, t: calls.append((d, t))
    )
    part = source.build_part("replay", source.name, None)
    assert part.next_batch() == []  # 8 chunks read, nothing to emit: back to the worker
    assert calls == [(40, 100)]
    assert drain(source) == []
    assert calls[-1] == (100, 100)


def test_progress_counts_rows_the_filter_skips(tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    path = trades_csv(tmp_path / "t.csv", 9)
    drain(ReplaySource(path, symbols=["AAPL"], on_progress=lambda d, t: calls.append((d, t))))
    assert calls == [(9, 9), (9, 9)]  # rows 0, 4, 8 sent; the whole file read


def test_a_directory_merges_its_files_by_time_seq_and_symbol(tmp_path: Path) -> None:
    """Files named out of time order, overlapping in time, equal times across files, a
    missing time, nanoseconds and another time zone: one stream in time order."""
    root = tmp_path / "d"
    (root / "b").mkdir(parents=True)
    ny = pa.timestamp("ns", tz="America/New_York")
    pq.write_table(
        pa.table(
            {
                "Time": pa.array([T0_US * 1000 + 999, (T0_US + 20) * 1000, None], ny),
                "symbol": ["A", "A", "A"],
                "price": [1.0, 2.0, 3.0],
                "seq": [5, 6, 7],
            }
        ),
        root / "b" / "a.parquet",
        row_group_size=1,
    )
    pq.write_table(
        pa.table(
            {
                "time": pa.array([T0_US - 5, T0_US, T0_US, T0_US + 30], pa.timestamp("us")),
                "SYMBOL": ["B", "B", "C", "B"],
                "price": [4, 5, 6, 7],
                "seq": [1, 5, 5, 8],
            }
        ),
        root / "a.pq",
    )
    rows = flat(drain(ReplaySource(root, batch_rows=2)))
    t0 = iso(T0_US)
    assert [(seq, time, sym, price) for seq, time, sym, price, _ in rows] == [
        (0, iso(T0_US - 5), "B", 4.0),
        (1, t0, "A", 1.0),  # nanoseconds truncated; seq 5 then symbol breaks the tie
        (2, t0, "B", 5.0),
        (3, t0, "C", 6.0),
        (4, None, "A", 3.0),  # no time: out as soon as read, for the parse step to reject
        (5, iso(T0_US + 20), "A", 2.0),
        (6, iso(T0_US + 30), "B", 7.0),
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no Parquet files"),
        ({"a.parquet": {"price": [1.0]}}, "missing required column"),
        ({"a.parquet": {"time": ["2024-01-02"], "symbol": ["A"], "price": [1.0]}}, "timestamp"),
        (
            {
                "a.parquet": {"time": [T0_US], "symbol": ["A"], "price": [1.0]},
                "b.parquet": {"time": [T0_US], "symbol": ["A"], "price": [1.0], "size": [2]},
            },
            "every file of a directory needs the same",
        ),
        (
            {
                "a.parquet": {"time": [T0_US], "symbol": ["A"], "price": [1.0]},
                "b.parquet": {"time": [T0_US], "symbol": ["A"], "price": ["1.0"]},
            },
            "column types disagree",
        ),
        ({"a.parquet": b"not parquet"}, r"d/a\.parquet: not a readable Parquet file"),
    ],
)
def test_directories_that_cannot_replay(
    tmp_path: Path, files: dict[str, dict[str, list[object]] | bytes], message: str
) -> None:
    root = tmp_path / "d"
    root.mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
            continue
        table = pa.table(content)
        if table.schema.names[0] == "time" and pa.types.is_integer(table.schema[0].type):
            table = table.set_column(0, "time", table.column(0).cast(pa.timestamp("us")))
        pq.write_table(table, root / name)
    with pytest.raises(ValueError, match=message):
        ReplaySource(root)


# --- Resuming ------------------------------------------------------------------------


def test_resume_from_a_snapshot_emits_exactly_the_rest(trades_file: Path) -> None:
    source = ReplaySource(trades_file, batch_rows=4)
    whole = drain(source)
    for stop in range(1, 7):
        part = source.build_part("replay", source.name, None)
        head = [b for _ in range(stop) for b in part.next_batch()]
        state = part.snapshot()
        assert state == ReplayState(4 * stop, head[-1].clock_us)
        tail = drain(source, state)
        assert flat(head + tail) == flat(whole)
        assert head + tail == whole  # the same batches, clocks included


@pytest.mark.parametrize("next_row", [5, 11, 13, 24, 25])
def test_resume_in_the_middle_of_a_chunk(trades_file: Path, next_row: int) -> None:
    source = ReplaySource(trades_file, batch_rows=4)
    whole = flat(drain(source))
    rest = drain(source, ReplayState(next_row, 0))
    assert flat(rest) == whole[next_row:]
    # The first batch ends on the chunk boundary, then batches are as in the first run.
    starts = [next_row, *range((next_row // 4 + 1) * 4, 25, 4)] if next_row < 25 else []
    assert [b.messages[0][0] for b in rest] == starts


def test_resume_after_a_snapshot_taken_mid_chunk(trades_file: Path) -> None:
    # Paced by a fake clock, the first call releases one row: the snapshot is mid-chunk.
    clock = FakeClock()
    source = ReplaySource(trades_file, batch_rows=10, speed=1.0, clock=clock)
    part = source.build_part("replay", source.name, None)
    head = part.next_batch()
    assert [seq for seq, *_ in flat(head)] == [0]
    clock.now += 100_000  # 0.1 s at speed 1: rows 1 and 2 (40 ms apart) are due
    head += part.next_batch()
    state = part.snapshot()
    assert state.next_row == 3
    rest = drain(ReplaySource(trades_file, batch_rows=10), state)
    assert flat(head + rest) == flat(drain(ReplaySource(trades_file, batch_rows=10)))


def test_resume_with_a_symbol_filter(trades_file: Path) -> None:
    source = ReplaySource(trades_file, batch_rows=5, symbols=["NVDA"])
    part = source.build_part("replay", source.name, None)
    head = part.next_batch() + part.next_batch()
    assert [seq for seq, *_ in flat(head)] == [3, 7]
    assert part.snapshot().next_row == 8
    rest = drain(source, part.snapshot())
    assert [seq for seq, *_ in flat(head + rest)] == [3, 7, 11, 15, 19, 23]


def test_parquet_resume_skips_row_groups(tmp_path: Path) -> None:
    path = trades_parquet(tmp_path / "t.parquet", 100, row_group_size=10)
    whole = flat(drain(ReplaySource(path, batch_rows=7)))
    for next_row in (0, 9, 10, 55, 99, 100):
        rest = flat(drain(ReplaySource(path, batch_rows=7), ReplayState(next_row, 0)))
        assert rest == whole[next_row:]


# --- Through Bytewax -----------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dataflow_gets_every_row_once(trades_file: Path, workers: int) -> None:
    out: list[list[int]] = []
    flow = Dataflow("replay_test")
    batches = op.input("replay", flow, ReplaySource(trades_file, batch_rows=4))
    op.output("out", op.map("seqs", batches, seqs), TestingSink(out))
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert sorted(seq for batch in out for seq in batch) == list(range(25))


def test_bytewax_recovery_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = trades_csv(tmp_path / "t.csv", 40)
    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    out: list[list[int]] = []
    crash = {"at": 23}

    def check(batch: RawBatch) -> list[int]:
        found = seqs(batch)
        if crash["at"] in found:
            raise RuntimeError("crash")
        return found

    def run() -> None:
        flow = Dataflow("replay_recovery")
        batches = op.input("replay", flow, ReplaySource(path, batch_rows=5))
        op.output("out", op.map("check", batches, check), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(db)))

    with pytest.raises(RuntimeError) as failure:
        run()
    causes: list[BaseException] = []
    error: BaseException | None = failure.value
    while error is not None:
        causes.append(error)
        error = error.__cause__
    assert "crash" in map(str, causes)
    first = [seq for batch in out for seq in batch]
    assert first == list(range(len(first)))
    assert len(first) <= 20
    out.clear()
    crash["at"] = -1
    run()
    second = [seq for batch in out for seq in batch]
    # Resumed from a snapshot, not restarted; from the crash or before it (at least once).
    assert 0 < second[0] <= 20
    assert second[0] <= len(first)
    assert second == list(range(second[0], 40))


# --- Pacing --------------------------------------------------------------------------


def paced_file(tmp_path: Path, times: Sequence[int]) -> Path:
    return write_csv(
        tmp_path / "paced.csv", ["time,symbol,price"] + [f"{iso(t)},A,1" for t in times]
    )


def test_pacing_releases_rows_by_event_time(tmp_path: Path) -> None:
    path = paced_file(tmp_path, [T0_US + k * 100_000 for k in range(11)])  # 1 s of trades
    clock = FakeClock()
    start = clock.now
    part = ReplaySource(path, speed=4.0, clock=clock).build_part("replay", "paced.csv", None)

    def step(after_us: int) -> list[int]:
        clock.now = start + after_us
        return [seq for seq, *_ in flat(part.next_batch())]

    def awake() -> int | None:
        wake = part.next_awake()
        return None if wake is None else (wake - EPOCH) // timedelta(microseconds=1) - start

    assert step(0) == [0]  # the first row at once
    assert awake() == 50_000  # row 1 is due at 25 ms; releases are at least 50 ms apart
    assert step(10_000) == []  # too early: nothing
    assert awake() == 25_000
    assert step(50_000) == [1, 2]  # event time 200 ms / 4
    assert awake() == 100_000
    # At 250 ms rows 3-10 are all due, but a batch spans at most 100 ms of wall time.
    assert step(250_000) == [3, 4, 5, 6, 7]
    assert awake() is None
    assert step(250_000) == [8, 9, 10]
    with pytest.raises(StopIteration):
        step(250_000)


def test_one_far_future_time_does_not_stall_pacing(tmp_path: Path) -> None:
    times = [T0_US + k * 100_000 for k in range(12)]
    times[3] = T0_US + 10**15  # decades later
    path = paced_file(tmp_path, times)
    clock = FakeClock()
    start = clock.now
    part = ReplaySource(path, speed=1.0, clock=clock).build_part("replay", "paced.csv", None)
    released: list[int] = []
    for after in range(0, 5_000_000, 10_000):
        clock.now = start + after
        try:
            released += [seq for seq, *_ in flat(part.next_batch())]
        except StopIteration:
            break
    assert released == list(range(12))
    assert after <= 1_100_000 + 50_000  # the last row, 1.1 s in, within one tick


def test_pacing_through_bytewax_takes_event_time_over_speed(tmp_path: Path) -> None:
    path = paced_file(tmp_path, [T0_US + k * 100_000 for k in range(11)])

    def elapsed(speed: float | None) -> float:
        out: list[list[int]] = []
        flow = Dataflow("replay_paced")
        batches = op.input("replay", flow, ReplaySource(path, speed=speed))
        op.output("out", op.map("seqs", batches, seqs), TestingSink(out))
        started = time.perf_counter()
        run_main(flow)
        assert sorted(seq for batch in out for seq in batch) == list(range(11))
        return time.perf_counter() - started

    assert 0.2 <= elapsed(4.0) <= 1.5
    assert elapsed(None) < 0.15


# --- Errors --------------------------------------------------------------------------


def test_one_partition_named_after_the_file(tmp_path: Path) -> None:
    source = ReplaySource(trades_csv(tmp_path / "t.csv", 1))
    assert source.list_parts() == ["t.csv"]
    with pytest.raises(ValueError, match=r"no partition 'other\.csv'"):
        source.build_part("replay", "other.csv", None)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.csv: no such file"):
        ReplaySource(tmp_path / "nope.csv")


def test_unknown_suffix(tmp_path: Path) -> None:
    (tmp_path / "trades.json").write_text("{}")
    with pytest.raises(ValueError, match=r"trades\.json: unknown file type"):
        ReplaySource(tmp_path / "trades.json")


def test_missing_price_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["time,symbol,size", "2024-01-02,A,1"])
    with pytest.raises(ValueError, match=r"t\.csv: missing required column\(s\) 'price'"):
        ReplaySource(path)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("dup.csv", b"time,symbol,price,Price\n", "'price' appears more than once"),
        ("bad.csv.gz", b"not gzip", "cannot read the CSV header"),
        ("bad.parquet", b"not parquet", "not a readable Parquet file"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=message):
        ReplaySource(tmp_path / name)


def test_bad_arguments(tmp_path: Path) -> None:
    path = trades_csv(tmp_path / "t.csv", 1)
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(path, speed=0)
    with pytest.raises(ValueError, match="batch_rows"):
        ReplaySource(path, batch_rows=0)
    with pytest.raises(ValueError, match="symbols is empty"):
        ReplaySource(path, symbols=[])
