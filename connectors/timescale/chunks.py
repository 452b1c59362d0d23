"""Chunks sized for the data: a replay's history lands in a few big chunks, live data in
chunks of each table's own interval, as before.

Each hypertable's chunk interval is sized for live data (migration 0002: ``ticks`` one
day, bars and the tables derived from them 30 days). Replayed at those intervals, twenty
years of daily NASDAQ closes (one tick per trading day) made 5,031 one-day chunks in
``ticks`` and 244 in each bar table (650 MB for 250k rows); the replay took 73 s, and
PostgreSQL then needed 11.5 s or more to *plan* "the latest tick of NDAQ". So before a
replay streams its file, it asks here for chunks that fit what it is about to write:

- :func:`replay_loads`: the rows each table will receive, and over which time range,
  from the file's :class:`~connectors.replay.profile.FileProfile` and the bar length;
- :func:`chunk_interval_us`: an interval that gives a chunk about :data:`TARGET_ROWS`
  rows at that rate, never below the table's own interval, at most :data:`MAX_INTERVAL_US`;
- :func:`plan_ranges`: the ranges to create, where the table has no chunk yet;
- :func:`presize_chunks`: creates them, one short transaction per table, and reports
  what it did (:class:`ChunkReport`).

How a chunk of a chosen range is made: TimescaleDB has no public function for it, and
its internal ``_timescaledb_functions.create_chunk`` refuses to run under the Apache
license (the embedded server's). So, in one transaction per table: set the table's chunk
interval to the big one, insert a placeholder row at the start of each range (TimescaleDB
creates the chunk around it: the interval-aligned range, cut to fit between existing
chunks), delete the row, and set the interval back. Other sessions never see the big
interval, because the catalog change is undone before it commits. The transaction holds
the lock TimescaleDB itself takes to create a chunk (SHARE UPDATE EXCLUSIVE on the
hypertable) for about 35 ms per chunk it creates (measured here; a third of a second for
a table's eight): concurrent inserts into existing chunks and all reads go on; only an
insert that needs a new chunk meanwhile waits for it.

Placeholder rows must fire no trigger (``bars``, ``forecasts`` and ``alerts`` announce
every new row on ``sentinel_stream``), so the transaction sets
``session_replication_role = replica``, which needs a superuser (or PostgreSQL 15's
``GRANT SET ON PARAMETER``); without it, tables with triggers keep their own interval.
Nothing here ever fails a replay: a table that cannot be pre-sized is reported and left
to create its chunks as it always did.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import numpy as np
import psycopg
from psycopg import sql

from connectors.replay.profile import DAY_US, FileProfile

__all__ = [
    "MAX_INTERVAL_US",
    "TARGET_ROWS",
    "ChunkReport",
    "Range",
    "RangePlan",
    "TableLoad",
    "chunk_interval_us",
    "plan_ranges",
    "presize_chunks",
    "replay_loads",
]

log = logging.getLogger(__name__)

# TimescaleDB's sizing guidance: the indexes of the chunks being written should fit in
# about 25% of memory. Measured here after the 20-year replay, a row costs 86-140 bytes
# of index (136 in `model_scores`, with three indexes), so a chunk of a million rows holds
# about 140 MB of index, and the six big tables a replay writes at once stay under 1 GB
# even when each reaches the target: a quarter of a 4 GB machine.
TARGET_ROWS = 1_000_000
# Sparse history needs a cap: at one row a day a million rows is millennia. Three years
# keeps retention and compression (which work a whole chunk at a time) usable, and puts
# twenty years of history in eight chunks a table.
MAX_INTERVAL_US = 3 * 365 * DAY_US

# What the dataflow writes per bar of one symbol, with the default model set (measured
# on the 20-year NASDAQ replay: 4,986 bars gave 29,910 forecasts, 229,262 scores, 44,865
# checkpoint rows and 7 alerts). An estimate within a factor of two is enough: it moves
# the interval by that factor, inside the bounds above.
ROWS_PER_BAR = {
    "bars": 1,
    "bar_metrics": 1,
    "forecasts": 6,
    "model_scores": 46,
    "alerts": 0.0015,
}
ROWS_PER_CHECKPOINT = 9  # one per model, plus the pipeline's own rows
SESSION_EVENTS_PER_DAY = 2  # a session's open and its close

# Values for the NOT NULL columns of a placeholder row that the tables' CHECK
# constraints accept (forecasts.target, alerts.severity, session_events.event); other
# columns get a value of their type (see _value_for). A new CHECK shows up in
# tests/connectors/test_chunks.py, which pre-sizes every table a replay writes.
_PLACEHOLDER_TEXT = {"target": "return", "severity": "info", "event": "open"}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- What a replay writes --------------------------------------------------------------


@dataclass(frozen=True)
class TableLoad:
    """About ``rows`` rows for ``table``, with times in ``[start_us, end_us)``, on
    ``days`` (UTC days since the epoch)."""

    table: str
    rows: float
    start_us: int
    end_us: int
    days: frozenset[int] = field(default_factory=frozenset, repr=False)

    @property
    def rows_per_day(self) -> float:
        return self.rows / max((self.end_us - self.start_us) / DAY_US, 1.0)


def replay_loads(
    profile: FileProfile, *, bar_us: int, checkpoint_every_us: int, store_ticks: bool
) -> list[TableLoad]:
    """The tables a replay of ``profile``'s rows writes into, and how much.

    A symbol makes at most one bar per bar length and at most one per tick, which is
    what bounds sparse data (a tick a day makes a bar a day whatever the bar length).
    Forecasts reach one bar past the last tick. ``ticks_rejected`` is not here: it only
    gets the file's bad rows, which should be few.
    """
    span_us = profile.last_us - profile.first_us
    bars = {s: min(n, span_us // bar_us + 1) for s, n in profile.symbol_rows.items()}
    checkpoints = sum(min(b, span_us // checkpoint_every_us + 1) for b in bars.values())
    sessions = sum(min(n, span_us // DAY_US + 1) for n in profile.symbol_rows.values())
    start, end = profile.first_us, profile.last_us + bar_us + 1

    def load(table: str, rows: float, end_us: int = end) -> TableLoad:
        return TableLoad(table, rows, start, end_us, profile.days)

    loads = [load("ticks", profile.rows, profile.last_us + 1)] if store_ticks else []
    loads += [load(t, k * sum(bars.values())) for t, k in ROWS_PER_BAR.items()]
    loads.append(load("model_checkpoints", ROWS_PER_CHECKPOINT * checkpoints))
    loads.append(load("session_events", SESSION_EVENTS_PER_DAY * sessions))
    return loads


def chunk_interval_us(
    rows_per_day: float,
    default_us: int,
    *,
    target_rows: int = TARGET_ROWS,
    max_us: int = MAX_INTERVAL_US,
) -> int:
    """The interval in which ``rows_per_day`` make about ``target_rows`` rows: a whole
    multiple of the table's ``default_us`` (so that big chunks start and end where the
    table's own chunks do), at least ``default_us`` and at most ``max_us``."""
    ideal = target_rows / rows_per_day * DAY_US if rows_per_day > 0 else math.inf
    multiple = min(ideal, max_us) // default_us
    return max(1, int(multiple)) * default_us


# --- Which ranges to create ----------------------------------------------------------


class Range(NamedTuple):
    start_us: int
    end_us: int


@dataclass(frozen=True)
class RangePlan:
    """Chunk ranges to create, each by a placeholder at its start; ``fence_us``: where a
    temporary chunk of the table's own interval must stop the last one (and be dropped
    after), or None."""

    ranges: tuple[Range, ...]
    fence_us: int | None = None


def plan_ranges(
    load: TableLoad,
    *,
    interval_us: int,
    default_us: int,
    existing: Sequence[Range],
    now_us: int,
) -> RangePlan:
    """The chunks of ``interval_us`` that ``load`` needs where ``existing`` has none.

    TimescaleDB aligns a chunk to a multiple of its interval since the epoch and cuts it
    to fit between existing chunks; a range is planned only where at least two of the
    table's own chunks would otherwise hold rows, so that gaps the data does not reach
    (weekends between the day chunks of an earlier replay) stay empty, and so do the
    tables that only get a row here and there (one symbol's alerts). A range reaches
    past the data only while that stays behind live data (the table's chunk before the
    one holding ``now_us``): a replay that ends near today stops at the end of its data,
    and the live rows after it get chunks of the table's own interval.
    """
    end = -(-load.end_us // default_us) * default_us
    live_from = (now_us // default_us - 1) * default_us
    day_starts = np.array(sorted(load.days), dtype=np.int64) * DAY_US
    ranges: list[Range] = []
    clipped = False
    for k in range(load.start_us // interval_us, -(-end // interval_us)):
        bucket = Range(k * interval_us, (k + 1) * interval_us)
        top = bucket.end_us if bucket.end_us <= live_from else min(bucket.end_us, end)
        for gap in _uncovered(Range(bucket.start_us, top), existing):
            if _worth_a_chunk(gap, day_starts, load.rows, default_us):
                ranges.append(gap)
                clipped |= gap.end_us == end < bucket.end_us
    covered = any(r.start_us <= end < r.end_us for r in existing)
    return RangePlan(tuple(ranges), end if clipped and not covered else None)


def _uncovered(span: Range, existing: Iterable[Range]) -> list[Range]:
    """The parts of ``span`` that no ``existing`` range covers."""
    gaps, at = [], span.start_us
    for r in sorted(existing):
        if r.end_us <= at or r.start_us >= span.end_us:
            continue
        if r.start_us > at:
            gaps.append(Range(at, r.start_us))
        at = max(at, r.end_us)
    if at < span.end_us:
        gaps.append(Range(at, span.end_us))
    return gaps


def _worth_a_chunk(gap: Range, day_starts: np.ndarray, rows: float, default_us: int) -> bool:
    """Would the data otherwise put rows in two or more of the table's own chunks in
    ``gap``? Its days there must span two of them (``day_starts`` is sorted: the first
    and last day tell), and its share of ``rows`` must be two or more (alerts are rare)."""
    lo, hi = (int(i) for i in np.searchsorted(day_starts, [gap.start_us, gap.end_us]))
    if hi - lo < 2 or rows * (hi - lo) / len(day_starts) < 2:
        return False
    return bool(day_starts[lo] // default_us != day_starts[hi - 1] // default_us)


# --- Creating them ------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkReport:
    """What :func:`presize_chunks` did to one table."""

    table: str
    interval_us: int
    created: tuple[Range, ...] = ()
    note: str = ""

    def line(self) -> str:
        if self.created:
            first, last = min(self.created), max(self.created)
            return (
                f"{self.table}: {len(self.created)} new chunk(s) of {_span(self.interval_us)}, "
                f"{_iso(first.start_us)} to {_iso(last.end_us)}"
            )
        return f"{self.table}: {self.note}"


class _Skip(Exception):
    """The table is left as it is, for the reason given."""


def presize_chunks(
    dsn: str,
    loads: Sequence[TableLoad],
    *,
    interval_us: int | None = None,
    lock_timeout_s: float = 5.0,
) -> list[ChunkReport]:
    """Create the big chunks each of ``loads`` needs, one transaction per table, and
    report them; ``interval_us`` overrides the computed interval (rounded down to a
    multiple of each table's own). A table whose lock is not granted within
    ``lock_timeout_s``, or that cannot take a placeholder row, is reported and left."""
    reports = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT (extract(epoch FROM now()) * 1e6)::bigint").fetchone()
        now_us = int(row[0]) if row else 0
        for load in loads:
            report = _presize(conn, load, interval_us, lock_timeout_s, now_us)
            log.debug("chunks: %s", report.line())
            reports.append(report)
    return reports


def _presize(
    conn: psycopg.Connection[Any],
    load: TableLoad,
    override_us: int | None,
    lock_timeout_s: float,
    now_us: int,
) -> ChunkReport:
    interval = 0
    try:
        column, default_us = _dimension(conn, load.table)
        if override_us is None:
            interval = chunk_interval_us(load.rows_per_day, default_us)
        else:
            interval = max(1, override_us // default_us) * default_us
        if interval <= default_us:
            rate = f"~{load.rows_per_day:,.0f} rows/day"
            return ChunkReport(load.table, default_us, note=f"keeps {_span(default_us)} ({rate})")
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(int(lock_timeout_s * 1000)))
            created = _presize_locked(conn, load, column, interval, default_us, now_us)
    except psycopg.errors.LockNotAvailable:
        return ChunkReport(load.table, interval, note="left as is: busy (lock timeout)")
    except (_Skip, psycopg.Error) as exc:
        return ChunkReport(load.table, interval, note=f"left as is: {_first_line(exc)}")
    return ChunkReport(load.table, interval, created, "" if created else "no new chunks needed")


def _presize_locked(
    conn: psycopg.Connection[Any],
    load: TableLoad,
    column: str,
    interval_us: int,
    default_us: int,
    now_us: int,
) -> tuple[Range, ...]:
    """Inside the table's transaction: lock out other chunk creators, plan around the
    chunks that exist, create the rest; returns the new chunks' ranges."""
    if not _triggers_off(conn) and _has_triggers(conn, load.table):
        raise _Skip("has triggers, and this role may not set session_replication_role")
    conn.execute(
        sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(sql.Identifier(load.table))
    )
    existing = _chunk_ranges(conn, load.table)
    plan = plan_ranges(
        load, interval_us=interval_us, default_us=default_us, existing=existing, now_us=now_us
    )
    if not plan.ranges:
        return ()
    _create(conn, load.table, column, plan, interval_us, default_us)
    return tuple(sorted(set(_chunk_ranges(conn, load.table)) - set(existing)))


def _create(
    conn: psycopg.Connection[Any],
    table: str,
    column: str,
    plan: RangePlan,
    interval_us: int,
    default_us: int,
) -> None:
    insert = _placeholder(conn, table, column)
    fence = insert(plan.fence_us) if plan.fence_us is not None else None
    _set_interval(conn, table, interval_us)
    for r in plan.ranges:
        _delete(conn, insert(r.start_us))
    _set_interval(conn, table, default_us)
    if fence is not None:
        _delete(conn, fence)
        _drop_chunk(conn, table, fence[0])


def _triggers_off(conn: psycopg.Connection[Any]) -> bool:
    """Keep this transaction's rows from firing triggers, if the role may."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def _has_triggers(conn: psycopg.Connection[Any], table: str) -> bool:
    # ts_insert_blocker only fires on inserts that bypass TimescaleDB.
    row = conn.execute(
        """SELECT count(*) FROM pg_trigger
           WHERE tgrelid = %s::regclass AND NOT tgisinternal AND tgenabled <> 'D'
             AND tgname <> 'ts_insert_blocker'""",
        [table],
    ).fetchone()
    return bool(row and row[0])


def _dimension(conn: psycopg.Connection[Any], table: str) -> tuple[str, int]:
    """The table's time column and its chunk interval in microseconds."""
    row = conn.execute(
        """SELECT column_name, (extract(epoch FROM time_interval) * 1e6)::bigint
           FROM timescaledb_information.dimensions
           WHERE format('%%I.%%I', hypertable_schema, hypertable_name)::regclass
                 = %s::regclass AND time_interval IS NOT NULL
           ORDER BY dimension_number LIMIT 1""",
        [table],
    ).fetchone()
    if row is None:
        raise _Skip(f"{table} is not a hypertable partitioned by time")
    return str(row[0]), int(row[1])


def _chunk_ranges(conn: psycopg.Connection[Any], table: str) -> list[Range]:
    rows = conn.execute(
        """SELECT (extract(epoch FROM range_start) * 1e6)::bigint,
                  (extract(epoch FROM range_end) * 1e6)::bigint
           FROM timescaledb_information.chunks
           WHERE format('%%I.%%I', hypertable_schema, hypertable_name)::regclass
                 = %s::regclass""",
        [table],
    ).fetchall()
    return [Range(int(a), int(b)) for a, b in rows]


def _set_interval(conn: psycopg.Connection[Any], table: str, interval_us: int) -> None:
    conn.execute("SELECT set_chunk_time_interval(%s::regclass, %s::bigint)", [table, interval_us])


_Placed = tuple[int, str]  # (the chunk's oid, the row's ctid)


def _placeholder(
    conn: psycopg.Connection[Any], table: str, column: str
) -> Callable[[int], _Placed]:
    """An insert of a placeholder row at a given time: the time column and every NOT NULL
    column without a default get a value; returns where the row went."""
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
           WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
             AND (a.attname = %s OR (a.attnotnull AND NOT a.atthasdef
                                     AND a.attidentity = '' AND a.attgenerated = ''))
           ORDER BY a.attnum""",
        [table, column],
    ).fetchall()
    names = [str(r[0]) for r in rows]
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING tableoid::oid, ctid::text").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(str(r[1]))) for r in rows),
    )

    def insert(at_us: int) -> _Placed:
        at = _EPOCH + timedelta(microseconds=at_us)
        values = [at if name == column else _value_for(name, str(t), at) for name, _, t in rows]
        row = conn.execute(query, values).fetchone()
        assert row is not None  # RETURNING of a one-row insert
        return int(row[0]), str(row[1])

    return insert


def _value_for(name: str, typname: str, at: datetime) -> object:
    if typname in ("text", "varchar", "bpchar", "name"):
        return _PLACEHOLDER_TEXT.get(name, "")
    if typname in ("int2", "int4", "int8", "float4", "float8", "numeric"):
        return 1
    if typname in ("timestamptz", "timestamp", "date"):
        return at
    simple: dict[str, object] = {"bool": False, "bytea": b"", "json": "{}", "jsonb": "{}"}
    if typname in simple:
        return simple[typname]
    raise _Skip(f"no placeholder value for column {name} of type {typname}")


def _delete(conn: psycopg.Connection[Any], placed: _Placed) -> None:
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE ctid = %s::tid").format(_chunk_name(conn, placed[0])),
        [placed[1]],
    )


def _chunk_name(conn: psycopg.Connection[Any], oid: int) -> sql.Composable:
    row = conn.execute(
        """SELECT n.nspname, c.relname
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s""",
        [oid],
    ).fetchone()
    assert row is not None  # a chunk this transaction just wrote to
    return sql.Identifier(str(row[0]), str(row[1]))


def _drop_chunk(conn: psycopg.Connection[Any], table: str, oid: int) -> None:
    """Drop the fence chunk by its exact range (``drop_chunks``: a plain DROP TABLE of a
    chunk leaves TimescaleDB's catalog behind)."""
    row = conn.execute(
        """SELECT range_start, range_end, format('%%I.%%I', chunk_schema, chunk_name)
           FROM timescaledb_information.chunks
           WHERE format('%%I.%%I', chunk_schema, chunk_name)::regclass::oid = %s""",
        [oid],
    ).fetchone()
    if row is None:
        raise _Skip("the fence chunk vanished")
    dropped = conn.execute(
        "SELECT drop_chunks(%s::regclass, older_than => %s, newer_than => %s)::text",
        [table, row[1], row[0]],
    ).fetchall()
    if [r[0] for r in dropped] != [row[2]]:
        raise _Skip(f"dropping the fence chunk {row[2]} would drop {dropped}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _span(us: int) -> str:
    days, rest = divmod(us, DAY_US)
    if rest:
        return f"{us / 3_600_000_000:g} hours"
    return "1 day" if days == 1 else f"{days} days"


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%d")
