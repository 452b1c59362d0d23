"""TimescaleDB sinks: batched binary COPY straight into the table, idempotent on replay.

Delivery guarantee: both sinks are at-least-once. :class:`TimescaleSink`'s
``write_batch`` returns only once every row it was given is committed (Bytewax snapshots
after it returns); :class:`TimescaleBackgroundSink` writes on a thread per partition and
its snapshot waits until every row before it is committed. Either way a resumed dataflow
may hand over rows that are already stored, and those are skipped. Given the sources'
stable ``seq`` numbers (every table's primary key identifies a row by its content's
origin), each row lands exactly once.

How a chunk of rows is written, in one transaction:

1. the common case: ``COPY <table> FROM STDIN (FORMAT BINARY)`` straight into the
   hypertable (TimescaleDB routes the rows and creates chunks as needed), times sent as
   binary ``timestamptz`` computed exactly from the ``int`` microseconds (no datetime
   objects in the hot path), JSON as binary ``jsonb``;
2. a unique violation (rows already there: a replay after recovery, or duplicates within
   the chunk) aborts that COPY whole; the transaction is rolled back and the chunk is
   redone through a staging table: ``COPY pg_temp.<stage>`` (times as ``int8``), then
   ``INSERT INTO <table> SELECT ... ON CONFLICT (<key>) DO NOTHING``, turning the
   microseconds into ``timestamptz`` in SQL (a table with a revision column, ``bars``,
   updates instead where the row's revision is higher than the stored one's). The stage
   is a ``TEMP`` table ``ON COMMIT DELETE ROWS`` (it empties itself at commit, a
   rollback discards its rows). Chunks
   keep going through the stage until one skips nothing (the replay is over), then the
   direct COPY is back. Either way a chunk's rows land once, atomically.

Outages (connection refused or lost, too many connections, server shutting down or
starting up, ...) are retried forever by default, on the same rows, with exponential
backoff and full jitter, blocking the dataflow meanwhile (back-pressure). A row the
server or the driver refuses (a value PostgreSQL cannot store, a violated CHECK) is
isolated by halving its chunk until it stands alone; the other rows are written, the
refused one is logged with its error and counted (``rows_failed``), so one bad value
never takes good rows with it nor stops the dataflow (a resumed dataflow would only meet
it again). Any other error is raised as :class:`TimescaleSinkError` naming the table.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import operator
import random
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any, NamedTuple

import psycopg
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from psycopg import postgres, sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from typing_extensions import override

from connectors.timescale.specs import TIME, Row, TableSpec
from connectors.timescale.writer import BackgroundWriter, BackgroundWriterError

log = logging.getLogger(__name__)

_STAGE_TYPES = {TIME: "int8", "jsonb": "text"}
# SQLSTATE classes of errors that a later attempt can outlive: connection exception,
# transaction rollback (deadlock, serialization), insufficient resources (too many
# connections, disk full), object in use / lock not available, operator intervention
# (shutdown, starting up), system error. Others (e.g. 54, program limit exceeded: an
# index row too large) are properties of the rows and fail again, so they are raised.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})
# Errors that belong to some row of a chunk: a value the server refuses (data exception,
# integrity violation, an index row too large) or one the driver cannot encode.
_ROW_ERRORS = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    UnicodeError,
    OverflowError,
)


class TimescaleSinkError(RuntimeError):
    """Rows could not be written (bad data, or retries exhausted)."""


@dataclass(frozen=True)
class SinkStats:
    """Counters of one partition since it was built.

    ``rows_written`` were inserted; ``rows_skipped`` were already there (duplicates,
    from the insert's row count); ``rows_failed`` were refused one by one (logged);
    ``retries`` counts failed attempts that were retried; ``last_error`` is the latest
    error, retried or not.
    """

    table: str
    worker_index: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    retries: int = 0
    last_error: str | None = None
    rows_failed: int = 0


class _Statements(NamedTuple):
    create_stage: sql.Composed
    copy: sql.Composed
    insert_skipping: sql.Composed
    stage_types: list[str]
    copy_direct: sql.Composed
    direct_types: list[str]
    json_indexes: tuple[int, ...]
    latest: _Latest | None


class _Latest(NamedTuple):
    """How a chunk keeps ``<table>_latest`` current: its newest row per key, COPYed into a
    stage of its own and upserted from there in one statement (an ``executemany`` cost
    25 us of Python a row, in the writer threads, taken from the dataflow's time)."""

    create_stage: sql.Composed
    copy: sql.Composed
    upsert: sql.Composed
    key: Callable[[Row], Any]
    order: Callable[[Row], Any]


@functools.cache
def _statements(spec: TableSpec) -> _Statements:
    stage = sql.Identifier(f"sentinel_stage_{spec.table}")
    stage_types = [_STAGE_TYPES.get(t, t) for t in spec.pg_types]
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    return _Statements(
        create_stage=_create_stage(spec, stage),
        copy=sql.SQL("COPY pg_temp.{} ({}) FROM STDIN (FORMAT BINARY)").format(stage, cols),
        insert_skipping=_insert_skipping(spec, stage),
        stage_types=stage_types,
        copy_direct=sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(spec.table), cols
        ),
        direct_types=list(spec.pg_types),
        json_indexes=tuple(i for i, t in enumerate(spec.pg_types) if t == "jsonb"),
        latest=_latest_statements(spec),
    )


def _insert_skipping(spec: TableSpec, stage: sql.Identifier) -> sql.Composed:
    """The staged rows into the table, skipping those already stored; with a revision
    column, a row of a higher revision than the stored one replaces it (the highest of
    the chunk's rows of one key: a statement may not touch a row twice)."""
    table, key = sql.Identifier(spec.table), sql.SQL(", ").join(map(sql.Identifier, spec.key))
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    if spec.revision is None:
        return sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM pg_temp.{} ON CONFLICT ({}) DO NOTHING"
        ).format(table, cols, _select_exprs(spec), stage, key)
    revision = sql.Identifier(spec.revision)
    updates = _set_from_excluded(spec, spec.key)
    return sql.SQL(
        "INSERT INTO {table} ({cols}) SELECT DISTINCT ON ({key}) {exprs} FROM pg_temp.{stage} "
        "ORDER BY {key}, {revision} DESC "
        "ON CONFLICT ({key}) DO UPDATE SET {updates} "
        "WHERE coalesce({table}.{revision}, 0) < EXCLUDED.{revision}"
    ).format(
        table=table,
        cols=cols,
        exprs=_select_exprs(spec),
        stage=stage,
        key=key,
        revision=revision,
        updates=updates,
    )


def _create_stage(spec: TableSpec, stage: sql.Identifier) -> sql.Composed:
    """A temporary table for ``spec``'s rows as the sink holds them (times as int8
    microseconds, JSON as text), emptied at each commit."""
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_STAGE_TYPES.get(t, t)))
        for c, t in zip(spec.columns, spec.pg_types, strict=True)
    )
    return sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        stage, definitions
    )


def _select_exprs(spec: TableSpec) -> sql.Composable:
    return sql.SQL(", ").join(
        _select_expr(c, t) for c, t in zip(spec.columns, spec.pg_types, strict=True)
    )


def _set_from_excluded(spec: TableSpec, key: tuple[str, ...]) -> sql.Composed:
    """``c = EXCLUDED.c`` for every column of ``spec`` outside ``key``: an upsert's SET."""
    return sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
        for c in spec.columns
        if c not in key
    )


def _latest_statements(spec: TableSpec) -> _Latest | None:
    """``INSERT INTO <table>_latest ... ON CONFLICT (<latest key>) DO UPDATE`` from a
    stage, replacing the stored row only with a newer one (so a replayed row changes
    nothing)."""
    if spec.latest_key is None:
        return None
    latest = sql.Identifier(f"{spec.table}_latest")
    stage = sql.Identifier(f"sentinel_latest_{spec.table}")
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    updates = _set_from_excluded(spec, spec.latest_key)
    newest_by = spec.newest_by
    newer = sql.SQL("({}) < ({})").format(
        sql.SQL(", ").join(sql.Identifier(f"{spec.table}_latest", c) for c in newest_by),
        sql.SQL(", ").join(sql.Identifier("excluded", c) for c in newest_by),
    )
    upsert = sql.SQL(
        "INSERT INTO {} ({}) SELECT {} FROM pg_temp.{} ON CONFLICT ({}) DO UPDATE SET {} WHERE {}"
    ).format(
        latest,
        cols,
        _select_exprs(spec),
        stage,
        sql.SQL(", ").join(map(sql.Identifier, spec.latest_key)),
        updates,
        newer,
    )
    position = spec.columns.index
    return _Latest(
        create_stage=_create_stage(spec, stage),
        copy=sql.SQL("COPY pg_temp.{} ({}) FROM STDIN (FORMAT BINARY)").format(stage, cols),
        upsert=upsert,
        key=operator.itemgetter(*map(position, spec.latest_key)),
        order=operator.itemgetter(*map(position, newest_by)),
    )


def _newest_per_key(rows: Sequence[Row], latest: _Latest) -> list[Row]:
    """The newest row of each latest key among ``rows`` (the last of equals), sorted by
    key, so that concurrent writers lock the latest rows in one order (no deadlock)."""
    key, order = latest.key, latest.order
    newest: dict[Any, Row] = {}
    for row in rows:
        k = key(row)
        held = newest.get(k)
        if held is None or order(row) >= order(held):
            newest[k] = row
    return [newest[k] for k in sorted(newest)]


def _select_expr(column: str, pg_type: str) -> sql.Composable:
    ident = sql.Identifier(column)
    if pg_type == TIME:
        # Exact to the microsecond: int8 * interval goes through float8, exact for
        # |t| < 2**53 us (years 1685 to 2255).
        return sql.SQL("'epoch'::timestamptz + {} * interval '1 microsecond'").format(ident)
    if pg_type == "jsonb":
        return sql.SQL("{}::jsonb").format(ident)
    return ident


# PostgreSQL's binary timestamptz is int8 microseconds since 2000-01-01 00:00 UTC.
_PG_EPOCH_US = 946_684_800_000_000
_INT8 = struct.Struct("!q")


class _MicrosTimestamptzDumper(Dumper):
    """``int`` microseconds since the Unix epoch as binary ``timestamptz``, exactly.

    Registered by oid only, so it serves the direct COPY's ``set_types`` and nothing else.
    """

    format = Format.BINARY
    oid = postgres.types["timestamptz"].oid

    def dump(self, obj: Any) -> bytes:
        try:
            return _INT8.pack(obj - _PG_EPOCH_US)
        except struct.error as exc:  # a row error, isolated like any refused value
            raise OverflowError(f"time {obj!r} us is out of range: {exc}") from exc


class _JsonTextJsonbDumper(Dumper):
    """JSON text (``str``) as binary ``jsonb``: version 1, then the text; the server parses it."""

    format = Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + obj.encode()


def _with_json_text(rows: Sequence[Row], indexes: tuple[int, ...]) -> list[Row]:
    """Rows with their JSON values as JSON text (a ``str`` is taken as JSON already)."""
    out: list[Row] = []
    for row in rows:
        values = list(row)
        for i in indexes:
            if values[i] is not None and not isinstance(values[i], str):
                values[i] = json.dumps(values[i], allow_nan=False)
        out.append(values)
    return out


def _is_transient(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    if conn is not None and conn.broken:
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    # Client-side failures (refused, lost, timed out) carry no SQLSTATE.
    return exc.sqlstate is None or exc.sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES


class _TimescalePartition(StatelessSinkPartition[Sequence[Row]]):
    """One worker's writer, with its own connection (opened lazily, reopened on loss)."""

    def __init__(self, sink: TimescaleSink, worker_index: int) -> None:
        self._sink = sink
        self._spec = sink.spec
        self._sql = _statements(sink.spec)
        self._conn: psycopg.Connection[Any] | None = None
        self._rng = random.Random()
        self._direct = True  # COPY straight into the table, until a chunk conflicts
        self._span_us: int | None = None  # the most time one transaction may cover
        self._time_index = (
            sink.spec.columns.index(sink.spec.time_columns[0]) if (sink.spec.time_columns) else None
        )
        self.stats = SinkStats(table=sink.spec.table, worker_index=worker_index)

    @override
    def write_batch(self, items: list[Sequence[Row]]) -> None:
        """Write every row of every item, committed before this returns."""
        table = self._spec.table
        rows = _flatten(items, table)
        width = len(self._spec.columns)
        if any(len(r) != width for r in rows):  # a bug upstream, not bad data: stop
            bad = next(r for r in rows if len(r) != width)
            error = f"rows for table {table!r}: expected {width} values in row, got {len(bad)}"
            self._record(last_error=error)
            raise TimescaleSinkError(error)
        if self._sql.json_indexes:
            try:
                rows = _with_json_text(rows, self._sql.json_indexes)
            except (TypeError, ValueError) as exc:
                raise TimescaleSinkError(
                    f"rows for table {table!r} hold a value that is not JSON: {exc}"
                ) from exc
        step = self._sink.batch_rows
        for group in self._by_time_span(rows):
            for start in range(0, len(group), step):
                self._write_chunk(group[start : start + step])

    @override
    def close(self) -> None:
        self._disconnect()
        if self._sink.on_close is not None:
            self._sink.on_close(self.stats)

    def _by_time_span(self, rows: list[Row]) -> list[list[Row]]:
        """Split rows so that no transaction touches more than ~16 chunks.

        A replay of years of daily data would otherwise insert into thousands of chunks
        at once, and PostgreSQL runs out of lock slots ("out of shared memory").
        """
        idx = self._time_index
        if idx is None or len(rows) < 2:
            return [rows]
        attempt = 0
        while self._span_us is None:  # known once connected: connect with retries
            attempt += 1
            try:
                self._connection()
            except Exception as exc:
                self._failed(exc, attempt, len(rows))
        span = self._span_us
        times = [r[idx] for r in rows]
        if not span or max(times) - min(times) <= span:
            return [rows]
        groups: list[list[Row]] = []
        start = None
        for i in sorted(range(len(rows)), key=times.__getitem__):
            if start is None or times[i] - start > span:
                start = times[i]
                groups.append([])
            groups[-1].append(rows[i])
        return groups

    # -- one chunk, with retries ------------------------------------------------------

    def _write_chunk(self, rows: Sequence[Row]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                inserted = self._copy_and_insert(rows)
            except _ROW_ERRORS as exc:
                if self._conn is None or self._conn.broken:
                    self._failed(exc, attempt, len(rows))
                    continue
                self._isolate(rows, exc)
                return
            except Exception as exc:
                self._failed(exc, attempt, len(rows))
                continue
            self._record(
                rows_written=self.stats.rows_written + inserted,
                rows_skipped=self.stats.rows_skipped + len(rows) - inserted,
            )
            return

    def _copy_and_insert(self, rows: Sequence[Row]) -> int:
        """Write one chunk in one transaction; the number of rows it inserted."""
        conn = self._connection()
        if self._direct:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    _copy_rows(cur, self._sql.copy_direct, self._sql.direct_types, rows)
                    self._keep_latest(cur, rows)
                return len(rows)
            except psycopg.errors.UniqueViolation:
                # Some rows are there already (a replay): the COPY was rolled back whole.
                self._direct = False
        with conn.transaction(), conn.cursor() as cur:
            _copy_rows(cur, self._sql.copy, self._sql.stage_types, rows)
            cur.execute(self._sql.insert_skipping)
            inserted = cur.rowcount
            self._keep_latest(cur, rows)
        # Back to direct COPY once a chunk had nothing to skip: the replay is over.
        self._direct = inserted == len(rows)
        return inserted

    def _keep_latest(self, cur: psycopg.Cursor[Any], rows: Sequence[Row]) -> None:
        """Bring ``<table>_latest`` up to date with ``rows``, in their transaction."""
        latest = self._sql.latest
        if latest is not None:
            _copy_rows(cur, latest.copy, self._sql.stage_types, _newest_per_key(rows, latest))
            cur.execute(latest.upsert)

    def _isolate(self, rows: Sequence[Row], exc: Exception) -> None:
        """Write every row of a refused chunk but the ones refused on their own."""
        if len(rows) > 1:
            mid = len(rows) // 2
            self._write_chunk(rows[:mid])
            self._write_chunk(rows[mid:])
            return
        error = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.error(
            "sink %r (worker %d): refused a row, left out: %s; row %s",
            self._spec.table,
            self.stats.worker_index,
            error,
            ascii(tuple(rows[0]))[:2000],
        )
        self._record(rows_failed=self.stats.rows_failed + 1, last_error=error)

    def _failed(self, exc: Exception, attempt: int, n_rows: int) -> None:
        """Back off after a transient error; raise after any other, or the last attempt."""
        table = self._spec.table
        error = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, for logs
        if not _is_transient(exc, self._conn):
            self._record(last_error=error)
            raise TimescaleSinkError(
                f"writing {n_rows} rows to table {table!r} failed: {error}"
            ) from exc
        self._disconnect()
        max_attempts = self._sink.max_attempts
        if max_attempts is not None and attempt >= max_attempts:
            self._record(last_error=error)
            raise TimescaleSinkError(
                f"gave up writing {n_rows} rows to table {table!r} after {attempt} attempts: "
                f"{error}"
            ) from exc
        delay = self._backoff(attempt)
        log.warning(
            "sink %r (worker %d): attempt %d to write %d rows failed: %s; retrying in %.2f s",
            table,
            self.stats.worker_index,
            attempt,
            n_rows,
            error,
            delay,
        )
        self._record(retries=self.stats.retries + 1, last_error=error)
        self._sink.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2 ** (attempt - 1))]."""
        cap = min(
            self._sink.backoff_max_s, self._sink.backoff_initial_s * 2.0 ** min(attempt - 1, 60)
        )
        return self._rng.uniform(0.0, cap)

    def _record(self, **changes: Any) -> None:
        self.stats = replace(self.stats, **changes)
        if self._sink.on_write is not None:
            self._sink.on_write(self.stats)

    # -- the connection ---------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                self._sink.dsn,
                autocommit=True,
                connect_timeout=self._sink.connect_timeout_s,
                application_name=f"sentinel-sink-{self._spec.table}",
            )
            conn.adapters.register_dumper(None, _MicrosTimestamptzDumper)
            conn.adapters.register_dumper(None, _JsonTextJsonbDumper)
            try:
                conn.execute(self._sql.create_stage)
                if self._sql.latest is not None:
                    conn.execute(self._sql.latest.create_stage)
                if self._span_us is None:
                    self._span_us = _max_span_us(conn, self._spec)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


_CHUNKS_PER_TRANSACTION = 16


def _copy_rows(
    cur: psycopg.Cursor[Any], statement: sql.Composed, types: list[str], rows: Sequence[Row]
) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(types)
        write_row = copy.write_row
        for row in rows:
            write_row(row)


def _max_span_us(conn: psycopg.Connection[Any], spec: TableSpec) -> int:
    """16 chunk intervals of the table's time dimension (0: not a hypertable)."""
    row = conn.execute(
        """SELECT (extract(epoch FROM time_interval) * 1e6)::bigint
           FROM timescaledb_information.dimensions
           WHERE hypertable_name = %s AND column_name = %s AND time_interval IS NOT NULL""",
        [spec.table, spec.time_columns[0]] if spec.time_columns else [spec.table, ""],
    ).fetchone()
    return int(row[0]) * _CHUNKS_PER_TRANSACTION if row and row[0] else 0


def _flatten(items: Sequence[Sequence[Row]], table: str) -> list[Row]:
    for item in items:
        # A bare record here would be flattened into its fields: refuse it clearly.
        if item and not isinstance(item[0], (tuple, list)):
            raise TypeError(
                f"sink for table {table!r}: each item must be a list of rows, "
                f"got {type(item).__name__} starting with {type(item[0]).__name__}"
            )
    return list(chain.from_iterable(items))


class TimescaleSink(DynamicSink[Sequence[Row]]):
    """Write lists of rows into one TimescaleDB table; at-least-once, idempotent.

    Each item is a list of rows (records or tuples in ``spec``'s column order), so
    upstream hands over whole chunks. Every worker opens its own connection. A batch is
    committed in chunks of at most ``batch_rows`` rows, each in one transaction, before
    ``write_batch`` returns: with Bytewax snapshotting after that, delivery is
    at-least-once. A chunk is COPYed straight into the table; one that meets rows already
    stored (a replay) is redone with ``ON CONFLICT DO NOTHING``, so each row lands exactly
    once (given the sources' stable ``seq`` numbers).

    On a transient error (:class:`psycopg.OperationalError` for a lost or refused
    connection, too many connections, a server shutting down or starting up...) the same
    rows are retried after ``sleep(delay)``, the delay drawn uniformly from
    ``[0, min(backoff_max_s, backoff_initial_s * 2 ** (attempt - 1))]``, until they are
    written or ``max_attempts`` attempts failed (``None``: retry forever, blocking the
    dataflow meanwhile). Other errors raise :class:`TimescaleSinkError` at once, naming
    the table; the failed chunk is rolled back whole. ``on_write(stats)`` receives the
    partition's :class:`SinkStats` after every committed chunk and every failed attempt;
    ``on_close(stats)`` the final ones when Bytewax closes the partition (a finite input
    ran out), so that a status published in the background can be made current then.
    """

    def __init__(
        self,
        dsn: str,
        spec: TableSpec,
        *,
        batch_rows: int = 50_000,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 30.0,
        max_attempts: int | None = None,
        on_write: Callable[[SinkStats], None] | None = None,
        on_close: Callable[[SinkStats], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        connect_timeout_s: int = 10,
    ) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("backoff must satisfy 0 < backoff_initial_s <= backoff_max_s")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 or None, got {max_attempts}")
        self.dsn = dsn
        self.spec = spec
        self.batch_rows = batch_rows
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.on_write = on_write
        self.on_close = on_close
        self.sleep = sleep
        self.connect_timeout_s = connect_timeout_s

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TimescalePartition:
        return _TimescalePartition(self, worker_index)


def write_rows(
    dsn: str,
    spec: TableSpec,
    rows: Sequence[Row],
    *,
    batch_rows: int = 50_000,
    backoff_initial_s: float = 0.2,
    backoff_max_s: float = 30.0,
    max_attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SinkStats:
    """Write ``rows`` into ``spec.table`` as the sink does, without Bytewax; its counters."""
    sink = TimescaleSink(
        dsn,
        spec,
        batch_rows=batch_rows,
        backoff_initial_s=backoff_initial_s,
        backoff_max_s=backoff_max_s,
        max_attempts=max_attempts,
        sleep=sleep,
    )
    part = sink.build("write_rows", 0, 1)
    try:
        part.write_batch([rows])
    finally:
        part.close()
    return part.stats


class _BackgroundPartition(StatefulSinkPartition[Sequence[Row], None]):
    """A :class:`_TimescalePartition` run by a :class:`BackgroundWriter`.

    ``write_batch`` queues and returns; ``snapshot`` is the barrier: it returns once every
    row queued before it is committed, so Bytewax's snapshot of an epoch never covers a
    row that is not durable. A writer error is raised by the next ``write_batch``,
    ``snapshot`` or ``close``.
    """

    def __init__(self, sink: TimescaleBackgroundSink, step_id: str, part: str) -> None:
        self._rows = _TimescalePartition(sink.sink, int(part))
        self._writer: BackgroundWriter[list[Sequence[Row]]] = BackgroundWriter(
            self._write,
            max_pending_rows=sink.max_pending_rows,
            name=f"sink-{step_id}-{part}",
        )

    @property
    def stats(self) -> SinkStats:
        return self._rows.stats

    def _write(self, batches: list[list[Sequence[Row]]]) -> None:
        """Bytewax's batches queued meanwhile, written as one."""
        self._rows.write_batch(batches[0] if len(batches) == 1 else list(chain(*batches)))

    @override
    def write_batch(self, values: list[Sequence[Row]]) -> None:
        with self._raised():
            self._writer.put(values, sum(map(len, values)))

    @override
    def snapshot(self) -> None:
        with self._raised():
            self._writer.drain()

    @override
    def close(self) -> None:
        try:
            with self._raised():
                self._writer.close()
        finally:
            self._rows.close()

    @contextlib.contextmanager
    def _raised(self) -> Iterator[None]:
        try:
            yield
        except BackgroundWriterError as exc:
            cause = exc.__cause__
            if isinstance(cause, TimescaleSinkError):
                raise TimescaleSinkError(str(cause)) from cause
            raise TimescaleSinkError(
                f"sink for table {self._rows.stats.table!r} failed: {cause!r}"
            ) from cause


class TimescaleBackgroundSink(FixedPartitionedSink[Sequence[Row], None]):
    """``sink`` (a :class:`TimescaleSink`) writing in the background; at-least-once,
    idempotent.

    Items are ``(key, rows)``: Bytewax routes each to one of ``partitions`` partitions by
    its key (a symbol, say); each partition has its own connection and writer thread,
    so the database stores one batch while the dataflow computes the next. At most
    ``max_pending_rows`` rows wait per partition (``write_batch`` blocks beyond:
    back-pressure); each partition's snapshot, taken by Bytewax at every epoch's end,
    waits until all rows before it are committed, so delivery stays at-least-once and
    a resumed dataflow only replays rows that the idempotent write skips. Rows are
    written as ``sink`` writes them (its retries, row isolation, stats, ``on_write``,
    called from the writer thread, and ``on_close``); a writer error that is not retried
    stops the dataflow at the next ``write_batch`` or snapshot. The snapshot state is
    ``None``: where to resume is the sources' business.
    """

    def __init__(
        self, sink: TimescaleSink, *, partitions: int = 1, max_pending_rows: int = 200_000
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        if max_pending_rows < 1:
            raise ValueError(f"max_pending_rows must be at least 1, got {max_pending_rows}")
        self.sink = sink
        self.partitions = partitions
        self.max_pending_rows = max_pending_rows

    @override
    def list_parts(self) -> list[str]:
        return [str(i) for i in range(self.partitions)]

    @override
    def part_fn(self, item_key: str) -> int:
        return zlib.crc32(item_key.encode())

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _BackgroundPartition:
        return _BackgroundPartition(self, step_id, for_part)
