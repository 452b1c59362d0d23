"""The end-of-day archive of raw ticks, in Parquet, and the retention it makes safe.

After each close, the day's ticks of every symbol are written to a Parquet archive, one
file per symbol and day, and recorded in the manifest table ``tick_archive`` with their
row count and checksum. Retention then drops a ``ticks`` chunk only when every day with
rows in it is archived and verifies against both the manifest and the database: nothing
is ever dropped unarchived.

The archive unit is ``(symbol, day)``: ``day`` is the local date in the time zone of the
symbol's calendar (``tickers.calendar``, else the default; an override wins), and the
file holds the symbol's ticks with time in ``[local midnight, next local midnight)``,
pre-market and after-hours trades included. Layout (hive partitioning; symbols are
percent-encoded, ``BINANCE:BTCUSDT`` is ``symbol=BINANCE%3ABTCUSDT``)::

    <archive>/date=YYYY-MM-DD/symbol=SYM/ticks.parquet

with the columns of ``ticks``: ``time`` (timestamp[us, UTC]), ``symbol``, ``price``,
``size``, ``seq``, ``conditions``, ``extended``, sorted by ``(time, seq)``. The archive is
a directory, or any URI ``pyarrow.fs.FileSystem.from_uri`` takes (``file://...``,
``s3://bucket/prefix?endpoint_override=host:9000`` for S3-compatible stores). A file is
written under a temporary name and then moved into place, so its final name never holds
half a file. ``sentinel replay`` reads the archive, or any part of it, directly.

When a day is archived (:func:`archive_days`, run every ``archive_every_s`` by
``sentinel archive --watch``), by :class:`ArchivePolicy`:

- a day with a ``close`` row in ``session_events`` once it is over by the wall clock plus
  ``grace_s`` (1 h), or as soon as the symbol has a tick after the day (a replay, or the
  next session's first trade): late after-hours trades are in;
- a day without one (a weekend or holiday trade, a session the dataflow did not see close)
  once it has been over for ``settle_s`` (1 day): no day with ticks stays unarchived;
- a day archived within the last ``recheck_s`` (2 days) is counted again each round and
  archived again if the database has gained rows (late ticks, a backlog caught up).

An archive never shrinks: a day whose database rows are fewer than its archive's (part of
it dropped already, or rows deleted) is not rewritten.

The checksum (:func:`checksum`) is a sha256 over the rows in ``(time, seq)`` order, each
column's values as little-endian bytes; it is computed the same way from the rows fetched
from the database and from the Parquet file read back, so it does not depend on how either
side ordered or encoded them.

Retention (:func:`apply_retention`) runs on Apache-only and community servers alike
(migration 0009 removes 0004's time-only retention policy on ``ticks``, which would drop
chunks unarchived). For each chunk of ``ticks`` whose range ended more than ``days`` ago it
locks the chunk against inserts, finds every ``(symbol, day)`` with rows in it, and drops
exactly that chunk if each one verifies: the file is readable, its rows and checksum equal
the manifest's, its rows within the chunk's range equal the database's, and it was archived
at least ``grace_s`` ago (its rows have stopped changing). Otherwise the chunk stays, and
the report says which day refused it and why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import io
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from psycopg import sql

from dataflows.records import US
from dataflows.sessions import DEFAULT_CALENDAR, UnknownCalendar, market_calendar, normalize

__all__ = [
    "SCHEMA",
    "Archive",
    "ArchivePolicy",
    "ArchivedDay",
    "ChunkDecision",
    "Problem",
    "RetentionReport",
    "Verification",
    "apply_retention",
    "archive_days",
    "checksum",
    "day_span",
    "local_day",
    "verify_day",
]

log = logging.getLogger(__name__)

FILE_NAME = "ticks.parquet"
SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("symbol", pa.string()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("seq", pa.int64()),
        ("conditions", pa.string()),
        ("extended", pa.bool_()),
    ]
)
"""The columns of an archive file (those of ``ticks``), in order."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_LOCK_KEY = 0x5E17_A2C  # one archiver or retention run per database at a time
_CHECKSUM_TAG = b"stock-sentinel ticks v1\0"
_SORT = [("time", "ascending"), ("seq", "ascending")]


@dataclass(frozen=True)
class ArchivePolicy:
    """When days are archived and which calendar a symbol is on (see the module doc)."""

    default_calendar: str = DEFAULT_CALENDAR
    calendar_override: str | None = None
    grace_s: float = 3600.0
    settle_s: float = 86_400.0
    recheck_s: float = 2 * 86_400.0


# --- Days ---------------------------------------------------------------------------


def _to_dt(t_us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=t_us)


def _to_us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def local_day(t_us: int, tz: str) -> dt.date:
    """The local date in ``tz`` of the instant ``t_us``.

    >>> local_day(1_709_942_400_000_000, "America/New_York")  # 2024-03-09T00:00Z
    datetime.date(2024, 3, 8)
    """
    return _to_dt(t_us).astimezone(ZoneInfo(tz)).date()


def day_span(day: dt.date, tz: str) -> tuple[int, int]:
    """``[start, end)`` in microseconds of the instants whose local date in ``tz`` is
    ``day``: local midnight to the next one (23 or 25 hours long on a DST change).

    >>> day_span(dt.date(2024, 3, 10), "America/New_York")  # clocks go forward
    (1710046800000000, 1710129600000000)
    """
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return _to_us(start), _to_us(end)


# --- The store ----------------------------------------------------------------------


def _public_uri(uri: str) -> str:
    """``uri`` without credentials (user info, secret-looking query parameters): what the
    manifest and the logs may show."""
    if "://" not in uri:
        return os.path.abspath(os.path.expanduser(uri))
    parts = urlsplit(uri)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    secret = ("key", "secret", "token", "password", "credential")
    query = [(k, v) for k, v in parse_qsl(parts.query) if not any(s in k.lower() for s in secret)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


class Archive:
    """The archive at ``uri``: a directory, or a ``pyarrow.fs`` URI (``file://``, ``s3://``).

    >>> Archive("s3://KEY:SECRET@bucket/ticks?region=eu-west-1").uri_of("A:B", dt.date(2024, 1, 2))
    's3://bucket/ticks/date=2024-01-02/symbol=A%3AB/ticks.parquet?region=eu-west-1'
    """

    def __init__(self, uri: str) -> None:
        if "://" in uri:
            fs, base = pafs.FileSystem.from_uri(uri)
        else:
            fs, base = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
        self.fs: pafs.FileSystem = fs
        self.base = base.rstrip("/") or "/"
        self.uri = _public_uri(uri)

    def __repr__(self) -> str:
        return f"Archive({self.uri!r})"

    @staticmethod
    def relative(symbol: str, day: dt.date) -> str:
        return f"date={day.isoformat()}/symbol={quote(symbol, safe='')}/{FILE_NAME}"

    def path_of(self, symbol: str, day: dt.date) -> str:
        """The file's path on :attr:`fs`."""
        return f"{self.base}/{self.relative(symbol, day)}"

    def uri_of(self, symbol: str, day: dt.date) -> str:
        """The file's URI, without credentials (what the manifest records)."""
        if "://" not in self.uri:
            return f"{self.uri.rstrip('/')}/{self.relative(symbol, day)}"
        parts = urlsplit(self.uri)
        path = f"{parts.path.rstrip('/')}/{self.relative(symbol, day)}"
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    def write(self, symbol: str, day: dt.date, table: pa.Table) -> None:
        """Write the day's file: under a temporary name first, then moved into place."""
        final = self.path_of(symbol, day)
        parent = final.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{FILE_NAME}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, tmp, filesystem=self.fs, compression="zstd")
            self.fs.move(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def read(self, symbol: str, day: dt.date) -> pa.Table:
        """The day's file, in :data:`SCHEMA`; OSError, pyarrow errors or KeyError (a column
        missing) if it cannot be read as such."""
        with self.fs.open_input_file(self.path_of(symbol, day)) as f:
            return _canonical(pq.ParquetFile(f).read())


def _canonical(table: pa.Table) -> pa.Table:
    """``table``'s archive columns, in order, in their archive types."""
    return pa.Table.from_arrays(
        [table.column(f.name).cast(f.type) for f in SCHEMA], schema=SCHEMA
    ).combine_chunks()


# --- The checksum -------------------------------------------------------------------


def checksum(table: pa.Table) -> str:
    """sha256 (hex) of a symbol's ticks, whatever order and encoding they came in.

    The rows are sorted by ``(time, seq)``, then the row count and each column of
    :data:`SCHEMA` in order are hashed: its validity as bytes, then its values as
    little-endian int64 (time as microseconds, seq), float64 (price, size), uint8
    (extended) or, for strings, their int64 UTF-8 lengths and then their bytes.
    """
    rows = _canonical(table).sort_by(_SORT)
    h = hashlib.sha256(_CHECKSUM_TAG)
    h.update(np.int64(rows.num_rows).astype("<i8").tobytes())
    for f in SCHEMA:
        column = rows.column(f.name).combine_chunks()
        h.update(np.asarray(column.is_valid().to_numpy(zero_copy_only=False), np.uint8).tobytes())
        if pa.types.is_string(f.type):
            _hash_strings(h, column)
        else:
            _hash_numbers(h, column, f.type)
    return h.hexdigest()


def _hash_numbers(h: Any, column: pa.Array, kind: pa.DataType) -> None:
    if pa.types.is_timestamp(kind):
        column, dtype = column.cast(pa.int64()), "<i8"
    elif pa.types.is_boolean(kind):
        column, dtype = column.cast(pa.uint8()), "<u1"
    elif pa.types.is_floating(kind):
        dtype = "<f8"
    else:
        dtype = "<i8"
    filled = pc.fill_null(column, pa.scalar(0, column.type))
    h.update(np.ascontiguousarray(filled.to_numpy(zero_copy_only=False), dtype=dtype).tobytes())


def _hash_strings(h: Any, column: pa.Array) -> None:
    if len(column) == 0:
        return
    filled = pc.fill_null(column.cast(pa.large_string()), "")
    _, offsets_buf, data_buf = filled.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64, count=len(filled) + 1, offset=filled.offset * 8)
    h.update(np.diff(offsets).astype("<i8").tobytes())
    if data_buf is not None:
        h.update(memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])])


# --- The database -------------------------------------------------------------------

_FETCH = """COPY (
    SELECT time, symbol, price, size, seq, conditions, extended
    FROM ticks WHERE symbol = {symbol} AND time >= {lo} AND time < {hi} ORDER BY time, seq
) TO STDOUT (FORMAT csv, FORCE_QUOTE (symbol, conditions))"""

_CSV_CONVERT = pacsv.ConvertOptions(
    column_types={f.name: f.type for f in SCHEMA},
    null_values=[""],
    strings_can_be_null=True,
    quoted_strings_can_be_null=False,  # "" is an empty string, a bare empty field NULL
    true_values=["t"],
    false_values=["f"],
)


def _fetch(conn: psycopg.Connection[Any], symbol: str, lo_us: int, hi_us: int) -> pa.Table:
    """The symbol's ticks with time in ``[lo, hi)``, in :data:`SCHEMA`, by ``(time, seq)``.

    Text COPY read by Arrow's CSV reader: faster than rows as Python tuples, and exact:
    times print in ISO 8601 in UTC to the microsecond, and ``extra_float_digits`` makes
    PostgreSQL print the shortest digits that read back as the same float.
    """
    query = sql.SQL(_FETCH).format(
        symbol=sql.Literal(symbol), lo=sql.Literal(_to_dt(lo_us)), hi=sql.Literal(_to_dt(hi_us))
    )
    buf = io.BytesIO()
    with conn.cursor() as cur:
        cur.execute("SET extra_float_digits = 3; SET datestyle = 'ISO'; SET timezone = 'UTC'")
        with cur.copy(query) as copy:
            for data in copy:
                buf.write(data)
    if not buf.getbuffer().nbytes:
        return SCHEMA.empty_table()
    buf.seek(0)
    table = pacsv.read_csv(
        buf,
        read_options=pacsv.ReadOptions(column_names=SCHEMA.names),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=_CSV_CONVERT,
    )
    return _canonical(table)


def _first_tick(
    conn: psycopg.Connection[Any], symbol: str, lo_us: int | None, hi_us: int | None = None
) -> int | None:
    """The time of the symbol's first tick at or after ``lo`` (and before ``hi``)."""
    where = [sql.SQL("symbol = %s")]
    params: list[Any] = [symbol]
    if lo_us is not None:
        where.append(sql.SQL("time >= %s"))
        params.append(_to_dt(lo_us))
    if hi_us is not None:
        where.append(sql.SQL("time < %s"))
        params.append(_to_dt(hi_us))
    query = sql.SQL("SELECT time FROM ticks WHERE {} ORDER BY time LIMIT 1").format(
        sql.SQL(" AND ").join(where)
    )
    row = conn.execute(query, params).fetchone()
    return None if row is None else _to_us(row[0])


def _symbols(
    conn: psycopg.Connection[Any], lo_us: int | None = None, hi_us: int | None = None
) -> list[str]:
    """Every symbol with ticks (in ``[lo, hi)``), by a walk over the primary key's index:
    one probe per symbol, not a scan of the table."""
    where = sql.SQL("")
    params: list[Any] = []
    if lo_us is not None and hi_us is not None:
        where = sql.SQL(" AND time >= %s AND time < %s")
        params = [_to_dt(lo_us), _to_dt(hi_us)]
    query = sql.SQL("SELECT symbol FROM ticks WHERE symbol > %s{} ORDER BY symbol LIMIT 1").format(
        where
    )
    found: list[str] = []
    while (
        row := conn.execute(query, [found[-1] if found else "", *params]).fetchone()
    ) is not None:
        found.append(row[0])
    return found


class _Day(NamedTuple):
    symbol: str
    day: dt.date
    start_us: int
    end_us: int
    later: bool  # the symbol has a tick after the day (before the walk's end, if any)


def _days_with_ticks(
    conn: psycopg.Connection[Any],
    symbol: str,
    tz: str,
    lo_us: int | None = None,
    hi_us: int | None = None,
) -> Iterator[_Day]:
    """Each local day of the symbol with ticks in ``[lo, hi)``, in order: one index probe
    per day."""
    t = _first_tick(conn, symbol, lo_us, hi_us)
    while t is not None:
        day = local_day(t, tz)
        start, end = day_span(day, tz)
        following = (
            None if hi_us is not None and end >= hi_us else _first_tick(conn, symbol, end, hi_us)
        )
        yield _Day(symbol, day, start, end, following is not None)
        t = following


def _calendars(
    conn: psycopg.Connection[Any], symbols: Iterable[str], policy: ArchivePolicy
) -> dict[str, str]:
    """Each symbol's calendar: the override, else ``tickers.calendar``, else the default."""
    symbols = list(symbols)
    if policy.calendar_override:
        return dict.fromkeys(symbols, normalize(policy.calendar_override))
    rows = conn.execute(
        "SELECT symbol, calendar FROM tickers WHERE symbol = ANY(%s)", [symbols]
    ).fetchall()
    listed = dict(rows)
    found = {}
    for s in symbols:
        try:
            found[s] = normalize(listed.get(s) or policy.default_calendar)
        except UnknownCalendar:
            log.warning("%s: unknown calendar %r, using %s", s, listed[s], policy.default_calendar)
            found[s] = normalize(policy.default_calendar)
    return found


def _tz(calendar: str) -> str:
    return market_calendar(calendar).tz


class _Entry(NamedTuple):
    """A manifest row."""

    calendar: str
    start_us: int
    end_us: int
    uri: str
    rows: int
    checksum: str
    archived_us: int


_MANIFEST = """SELECT symbol, day, calendar, day_start, day_end, uri, rows, checksum, archived_at
               FROM tick_archive"""


def _entry(row: tuple[Any, ...]) -> _Entry:
    _, _, calendar, start, end, uri, rows, digest, archived = row
    return _Entry(calendar, _to_us(start), _to_us(end), uri, rows, digest, _to_us(archived))


def _manifest(conn: psycopg.Connection[Any]) -> dict[tuple[str, dt.date], _Entry]:
    return {(r[0], r[1]): _entry(r) for r in conn.execute(_MANIFEST)}


def _manifest_entry(conn: psycopg.Connection[Any], symbol: str, day: dt.date) -> _Entry | None:
    row = conn.execute(_MANIFEST + " WHERE symbol = %s AND day = %s", [symbol, day]).fetchone()
    return None if row is None else _entry(row)


def _count(conn: psycopg.Connection[Any], symbol: str, lo_us: int, hi_us: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM ticks WHERE symbol = %s AND time >= %s AND time < %s",
        [symbol, _to_dt(lo_us), _to_dt(hi_us)],
    ).fetchone()
    return int(row[0]) if row else 0


def _locked(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY]).fetchone()
    return bool(row and row[0])


# --- Archiving ----------------------------------------------------------------------


@dataclass(frozen=True)
class ArchivedDay:
    """One ``(symbol, day)`` written to the archive and recorded, verified, in the manifest;
    ``replaced_rows`` is the row count of the archive it replaced (None if it is new)."""

    symbol: str
    day: dt.date
    calendar: str
    day_start_us: int
    day_end_us: int
    uri: str
    rows: int
    checksum: str
    replaced_rows: int | None = None


class ArchiveError(RuntimeError):
    """A file written to the archive did not read back as written."""


def _due(d: _Day, closed: bool, now_us: int, policy: ArchivePolicy) -> bool:
    if closed:
        return d.later or now_us >= d.end_us + policy.grace_s * US
    return now_us >= d.end_us + policy.settle_s * US


def _pending(
    conn: psycopg.Connection[Any], *, now_us: int, policy: ArchivePolicy
) -> Iterator[tuple[_Day, str, _Entry | None]]:
    """The days to archive now: (day, calendar, its manifest entry if archived before)."""
    symbols = _symbols(conn)
    calendars = _calendars(conn, symbols, policy)
    manifest = _manifest(conn)
    closes = set(
        conn.execute("SELECT symbol, session_date FROM session_events WHERE event = 'close'")
    )
    for symbol in symbols:
        calendar = calendars[symbol]
        for d in _days_with_ticks(conn, symbol, _tz(calendar)):
            entry = manifest.get((symbol, d.day))
            if entry is None:
                if _due(d, (symbol, d.day) in closes, now_us, policy):
                    yield d, calendar, None
            elif entry.archived_us >= now_us - policy.recheck_s * US:
                n = _count(conn, symbol, entry.start_us, entry.end_us)
                if n > entry.rows:
                    yield d._replace(start_us=entry.start_us, end_us=entry.end_us), calendar, entry
                elif n < entry.rows:
                    log.warning(
                        "%s %s: the database holds %d rows, the archive %d; keeping the archive",
                        symbol,
                        d.day,
                        n,
                        entry.rows,
                    )


def _chosen(
    conn: psycopg.Connection[Any], only: Iterable[tuple[str, dt.date]], policy: ArchivePolicy
) -> Iterator[tuple[_Day, str, _Entry | None]]:
    """The given days, due or not (a repair): spans of archived days as archived."""
    wanted = sorted(set(only))
    calendars = _calendars(conn, {s for s, _ in wanted}, policy)
    for symbol, day in wanted:
        entry = _manifest_entry(conn, symbol, day)
        calendar = entry.calendar if entry else calendars[symbol]
        start, end = (entry.start_us, entry.end_us) if entry else day_span(day, _tz(calendar))
        yield _Day(symbol, day, start, end, False), calendar, entry


def _archive_one(
    conn: psycopg.Connection[Any],
    archive: Archive,
    d: _Day,
    calendar: str,
    entry: _Entry | None,
    now_us: int,
) -> ArchivedDay | None:
    table = _fetch(conn, d.symbol, d.start_us, d.end_us)
    if table.num_rows == 0 or (entry is not None and table.num_rows < entry.rows):
        log.warning(
            "%s %s: not archived: the database holds %d rows%s",
            d.symbol,
            d.day,
            table.num_rows,
            "" if entry is None else f", the archive {entry.rows} (an archive never shrinks)",
        )
        return None
    digest = checksum(table)
    archive.write(d.symbol, d.day, table)
    back = archive.read(d.symbol, d.day)
    if back.num_rows != table.num_rows or checksum(back) != digest:
        raise ArchiveError(f"{archive.uri_of(d.symbol, d.day)} did not read back as written")
    uri = archive.uri_of(d.symbol, d.day)
    now = _to_dt(now_us)
    conn.execute(
        """INSERT INTO tick_archive (symbol, day, calendar, day_start, day_end, uri, rows,
                                     checksum, archived_at, verified_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (symbol, day) DO UPDATE SET
               calendar = EXCLUDED.calendar, day_start = EXCLUDED.day_start,
               day_end = EXCLUDED.day_end, uri = EXCLUDED.uri, rows = EXCLUDED.rows,
               checksum = EXCLUDED.checksum, archived_at = EXCLUDED.archived_at,
               verified_at = EXCLUDED.verified_at""",
        [
            d.symbol,
            d.day,
            calendar,
            _to_dt(d.start_us),
            _to_dt(d.end_us),
            uri,
            table.num_rows,
            digest,
            now,
            now,
        ],
    )
    replaced = None if entry is None else entry.rows
    return ArchivedDay(
        d.symbol, d.day, calendar, d.start_us, d.end_us, uri, table.num_rows, digest, replaced
    )


def _archive(
    conn: psycopg.Connection[Any],
    archive: Archive,
    *,
    now_us: int,
    policy: ArchivePolicy,
    only: Iterable[tuple[str, dt.date]] | None,
) -> list[ArchivedDay]:
    todo = list(
        _pending(conn, now_us=now_us, policy=policy)
        if only is None
        else _chosen(conn, only, policy)
    )
    done = []
    for d, calendar, entry in todo:
        archived = _archive_one(conn, archive, d, calendar, entry, now_us)
        if archived is not None:
            log.info("archived %s %s: %d rows to %s", d.symbol, d.day, archived.rows, archived.uri)
            done.append(archived)
    return done


def archive_days(
    dsn: str,
    uri: str,
    *,
    now_us: int,
    policy: ArchivePolicy = ArchivePolicy(),
    only: Iterable[tuple[str, dt.date]] | None = None,
) -> list[ArchivedDay]:
    """Archive every ``(symbol, day)`` that is due at ``now_us`` (see the module doc), or
    exactly the days ``only`` lists, due or not (to repair a damaged file: the database
    must still hold all of the day's rows). Each file is read back and checked before the
    manifest records it as verified. Returns the days written, in order; nothing if
    another archiver or retention run holds the database's archive lock."""
    archive = Archive(uri)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not _locked(conn):
            log.warning("another archive or retention run is in progress; skipping")
            return []
        return _archive(conn, archive, now_us=now_us, policy=policy, only=only)


# --- Verification -------------------------------------------------------------------


class Problem(enum.Enum):
    """Why a day does not verify."""

    MISSING = "not archived"
    UNREADABLE = "unreadable file"
    FILE_DIFFERS = "file differs from the manifest"
    DB_DIFFERS = "database differs from the archive"
    UNSETTLED = "archived too recently"


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one ``(symbol, day)``: ``problem`` None means verified.
    ``db_rows`` and ``archive_rows`` are the rows compared, within the range checked."""

    symbol: str
    day: dt.date
    problem: Problem | None
    detail: str = ""
    db_rows: int | None = None
    archive_rows: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        what = "verified" if self.ok else f"{self.problem.value if self.problem else ''}"
        return f"{self.symbol} {self.day}: {what}{f' ({self.detail})' if self.detail else ''}"


def _verify(
    conn: psycopg.Connection[Any],
    archive: Archive,
    symbol: str,
    day: dt.date,
    *,
    lo_us: int | None = None,
    hi_us: int | None = None,
    settled_before_us: int | None = None,
) -> Verification:
    """The file against the manifest, then its rows within ``[lo, hi)`` (the whole day by
    default) against the database's now."""
    entry = _manifest_entry(conn, symbol, day)
    if entry is None:
        return Verification(symbol, day, Problem.MISSING, "no row in tick_archive")
    where = archive.uri_of(symbol, day)
    try:
        table = archive.read(symbol, day)
        digest = checksum(table)
    except (OSError, pa.ArrowException, KeyError) as exc:
        return Verification(symbol, day, Problem.UNREADABLE, f"{where}: {exc}")
    if table.num_rows != entry.rows:
        detail = f"rows differ: {where} has {table.num_rows}, the manifest {entry.rows}"
        return Verification(symbol, day, Problem.FILE_DIFFERS, detail)
    if digest != entry.checksum:
        detail = f"checksum differs: {where} {digest[:12]}, the manifest {entry.checksum[:12]}"
        return Verification(symbol, day, Problem.FILE_DIFFERS, detail)
    lo = entry.start_us if lo_us is None else max(lo_us, entry.start_us)
    hi = entry.end_us if hi_us is None else min(hi_us, entry.end_us)
    times = table.column("time").cast(pa.int64())
    inside = pc.and_(pc.greater_equal(times, lo), pc.less(times, hi))
    part = table.filter(inside)
    db = _fetch(conn, symbol, lo, hi)
    counts = {"db_rows": db.num_rows, "archive_rows": part.num_rows}
    span = f"[{_to_dt(lo).isoformat()}, {_to_dt(hi).isoformat()})"
    if db.num_rows != part.num_rows:
        detail = (
            f"rows differ: the database has {db.num_rows} in {span}, the archive {part.num_rows}"
        )
        return Verification(symbol, day, Problem.DB_DIFFERS, detail, **counts)
    if checksum(db) != checksum(part):
        detail = f"checksum differs: the same {db.num_rows} rows in {span}, other values"
        return Verification(symbol, day, Problem.DB_DIFFERS, detail, **counts)
    if settled_before_us is not None and entry.archived_us > settled_before_us:
        detail = f"archived at {_to_dt(entry.archived_us).isoformat()}: its rows may still change"
        return Verification(symbol, day, Problem.UNSETTLED, detail, **counts)
    return Verification(symbol, day, None, "", **counts)


def _stamp(conn: psycopg.Connection[Any], checks: Iterable[Verification], now_us: int) -> None:
    keys = [(c.symbol, c.day) for c in checks if c.ok]
    if keys:
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE tick_archive SET verified_at = %s WHERE symbol = %s AND day = %s",
                [(_to_dt(now_us), s, d) for s, d in keys],
            )


def verify_day(dsn: str, uri: str, symbol: str, day: dt.date, *, now_us: int) -> Verification:
    """Verify one archived day: its file is readable, its rows and checksum equal the
    manifest's and the database's rows of that day now. Sets ``verified_at`` if so."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        result = _verify(conn, Archive(uri), symbol, day)
        _stamp(conn, [result], now_us)
        return result


# --- Retention ----------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkDecision:
    """What retention did with one ``ticks`` chunk: ``checks`` has one verification per
    ``(symbol, day)`` with rows in it; ``dropped`` is True if it was dropped (or, in a dry
    run, would be); ``rearchived`` lists days archived again because the database had
    gained rows (the chunk then waits for them to settle)."""

    chunk: str
    range_start_us: int
    range_end_us: int
    checks: tuple[Verification, ...]
    dropped: bool
    rearchived: tuple[tuple[str, dt.date], ...] = ()

    @property
    def refused(self) -> tuple[Verification, ...]:
        return tuple(c for c in self.checks if not c.ok)


@dataclass(frozen=True)
class RetentionReport:
    """A retention run. ``action``: ``applied``, ``dry run``, ``disabled`` (0 days),
    ``unsupported`` (no TimescaleDB license known) or ``busy`` (another run holds the lock).
    """

    license: str
    action: str
    days: float
    cutoff_us: int | None = None
    chunks: tuple[ChunkDecision, ...] = field(default_factory=tuple)

    @property
    def dropped(self) -> list[ChunkDecision]:
        return [c for c in self.chunks if c.dropped]

    @property
    def refused(self) -> list[ChunkDecision]:
        return [c for c in self.chunks if not c.dropped]


class _Chunk(NamedTuple):
    schema: str
    name: str
    start_us: int
    end_us: int


def _due_chunks(conn: psycopg.Connection[Any], cutoff_us: int) -> list[_Chunk]:
    rows = conn.execute(
        """SELECT chunk_schema, chunk_name, range_start, range_end
           FROM timescaledb_information.chunks
           WHERE format('%%I.%%I', hypertable_schema, hypertable_name)::regclass
                 = 'ticks'::regclass
             AND range_end <= %s
           ORDER BY range_start""",
        [_to_dt(cutoff_us)],
    ).fetchall()
    return [_Chunk(s, n, _to_us(a), _to_us(b)) for s, n, a, b in rows]


def _decide(
    conn: psycopg.Connection[Any],
    archive: Archive,
    chunk: _Chunk,
    *,
    now_us: int,
    policy: ArchivePolicy,
    dry_run: bool,
) -> ChunkDecision:
    """Verify every day with rows in the chunk and drop it if all verify, in one
    transaction holding a lock that keeps rows from being added to it meanwhile."""
    name = f"{chunk.schema}.{chunk.name}"
    with conn.transaction() as tx:
        conn.execute("SET LOCAL lock_timeout = '30s'")
        conn.execute(
            sql.SQL("LOCK TABLE {}.{} IN SHARE MODE").format(
                sql.Identifier(chunk.schema), sql.Identifier(chunk.name)
            )
        )
        symbols = _symbols(conn, chunk.start_us, chunk.end_us)
        calendars = _calendars(conn, symbols, policy)
        settled = now_us - int(policy.grace_s * US)
        checks = []
        for symbol in symbols:
            for d in _days_with_ticks(
                conn, symbol, _tz(calendars[symbol]), chunk.start_us, chunk.end_us
            ):
                checks.append(
                    _verify(
                        conn,
                        archive,
                        symbol,
                        d.day,
                        lo_us=chunk.start_us,
                        hi_us=chunk.end_us,
                        settled_before_us=settled,
                    )
                )
        drop = all(c.ok for c in checks)
        decision = ChunkDecision(name, chunk.start_us, chunk.end_us, tuple(checks), drop)
        if drop and not dry_run:
            dropped = conn.execute(
                "SELECT drop_chunks('ticks', older_than => %s, newer_than => %s)",
                [_to_dt(chunk.end_us), _to_dt(chunk.start_us)],
            ).fetchall()
            if [r[0] for r in dropped] != [name]:
                raise RuntimeError(f"drop_chunks dropped {dropped}, not just {name}; rolled back")
            _stamp(conn, checks, now_us)
        if dry_run or not drop:
            raise psycopg.Rollback(tx)
    return decision


def _license(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return (row[0] if row else None) or "none"


def _grown(check: Verification) -> bool:
    return (
        check.problem is Problem.DB_DIFFERS
        and check.db_rows is not None
        and check.archive_rows is not None
        and check.db_rows > check.archive_rows
    )


def apply_retention(
    dsn: str,
    uri: str,
    days: float,
    *,
    now_us: int,
    dry_run: bool = False,
    policy: ArchivePolicy = ArchivePolicy(),
    rearchive: bool = True,
) -> RetentionReport:
    """Drop the ``ticks`` chunks whose range ended more than ``days`` ago, each only if
    every day with rows in it is archived and verified (see the module doc). A day the
    database has gained rows for since it was archived is archived again when
    ``rearchive`` (not in a dry run); its chunk is then dropped by a later run, once the
    day has settled. Refusals are logged, with the day and the reason."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        license_ = _license(conn)
        if days <= 0:
            return RetentionReport(license_, "disabled", days)
        if license_ not in ("apache", "timescale"):
            log.warning("TimescaleDB license %r: no retention run", license_)
            return RetentionReport(license_, "unsupported", days)
        if not _locked(conn):
            log.warning("another archive or retention run is in progress; skipping")
            return RetentionReport(license_, "busy", days)
        archive = Archive(uri)
        cutoff = now_us - int(days * 86_400 * US)
        decisions = []
        for chunk in _due_chunks(conn, cutoff):
            decision = _decide(conn, archive, chunk, now_us=now_us, policy=policy, dry_run=dry_run)
            grown = [(c.symbol, c.day) for c in decision.refused if _grown(c)]
            if grown and rearchive and not dry_run:
                _archive(conn, archive, now_us=now_us, policy=policy, only=grown)
                decision = ChunkDecision(
                    decision.chunk,
                    decision.range_start_us,
                    decision.range_end_us,
                    decision.checks,
                    False,
                    tuple(grown),
                )
            for check in decision.refused:
                # Waiting for a day to settle is routine; anything else needs a look.
                level = logging.INFO if check.problem is Problem.UNSETTLED else logging.WARNING
                log.log(level, "retention keeps %s: %s", decision.chunk, check)
            decisions.append(decision)
        action = "dry run" if dry_run else "applied"
        return RetentionReport(license_, action, days, cutoff, tuple(decisions))
