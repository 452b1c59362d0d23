"""The replay file formats: what a file must hold, and its rows read in chunks.

A file has the columns ``time``, ``symbol``, ``price`` and optionally ``size`` (any order,
names matched case-insensitively, other columns ignored). Values are passed on as read,
so that the dataflow validates them and can store the raw payload of a bad row:

- CSV (``.csv``, ``.csv.gz``; a header line is required): every value is the string
  exactly as in the file (CSV quoting removed); a field missing from a short row reads as
  ``""``. Rows with nothing in any field (blank lines) are skipped, but they are rows:
  they keep their row number.
- Parquet (``.parquet``, ``.pq``): values as stored (str, int, float, ``None`` for null),
  except that timestamp-typed values become ISO 8601 strings in UTC with microseconds,
  ``"2024-01-02T14:30:00.000850Z"`` (naive timestamps are taken as UTC; nanoseconds are
  truncated), and date-typed values become ``"2024-01-02"``. Strings, unlike bare epoch
  integers, need no guess about their unit.
- A directory of Parquet files, such as the end-of-day archive
  (``date=YYYY-MM-DD/symbol=SYM/ticks.parquet``, see :mod:`connectors.archive`) or any
  part of it: every ``.parquet``/``.pq`` file below it (names starting with ``.`` or
  ``_`` skipped, as Hive and Spark do) is one stream, merged by time: rows come in
  ``(time, seq, symbol)`` order (``seq`` when every file has an integer one), so days come
  in date order and within a day all symbols interleave as they traded, whatever calendar
  each is on. Each file must have the same columns and a timestamp-typed ``time``, and be
  in time order itself (the archive's are; a file that is not comes out late, never lost).
  Values are as for one Parquet file; a row's number is its position in the merged
  stream, so a resumed replay needs the directory to hold the same files.

:func:`inspect_file` learns what a replay needs to know about its file once;
:func:`read_chunks` then streams :class:`RawChunk` s of rows from any row on.
"""

from __future__ import annotations

import csv
import gzip
import warnings
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from io import BufferedReader
from itertools import islice
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataflows.times import BoolArray, IntArray

CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
REQUIRED_COLUMNS = ("time", "symbol", "price")
OPTIONAL_COLUMNS = ("size",)

# Rows are counted for progress only while that stays cheap.
_COUNT_MAX_BYTES = 2 * 1024**3
_COUNT_MAX_GZIP_BYTES = 256 * 1024**2
# A CSV row may have this many fields more than the header before pandas' fast reader
# gives up on the file and the stdlib csv reader takes over.
_CSV_SLACK_FIELDS = 4


# --- The file -----------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetPart:
    """One Parquet file of a directory replayed as one stream."""

    path: Path
    columns: dict[str, str]  # time/symbol/price[/size] -> the file's column
    types: dict[str, pa.DataType]  # the same roles -> their Arrow types (time: us, UTC)
    seq: str | None  # an integer column named seq, the tie-break of equal times
    rows: int
    first_us: int | None  # the file's earliest time by its statistics, if it has them


@dataclass(frozen=True)
class FileInfo:
    """What a replay needs to know about its file, learned once when the source is built."""

    path: Path
    format: str  # "csv", "parquet" or "dataset" (a directory of Parquet files)
    columns: dict[str, int | str]  # time/symbol/price[/size] -> CSV field index | column
    width: int  # fields in the CSV header
    total_rows: int | None
    parts: tuple[DatasetPart, ...] = ()  # a dataset's files, in path order


def inspect_file(path: Path, *, count_rows: bool) -> FileInfo:
    name = path.name
    if path.is_dir():
        return _inspect_dataset(path)
    lowered = name.lower()
    if lowered.endswith(CSV_SUFFIXES):
        fmt = "csv"
    elif lowered.endswith(PARQUET_SUFFIXES):
        fmt = "parquet"
    else:
        known = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
        raise ValueError(f"{name}: unknown file type (expected a name ending in {known})")
    if not path.exists():
        raise ValueError(f"{name}: no such file ({path})")
    if not path.is_file():
        raise ValueError(f"{name}: not a regular file ({path})")
    if fmt == "csv":
        header = _csv_header(path)
        columns: dict[str, int | str] = dict(_match_columns(name, header))
        total = _count_csv_rows(path) if count_rows else None
        return FileInfo(path, fmt, columns, len(header), total)
    names, total = _parquet_schema(path)
    columns = {role: names[i] for role, i in _match_columns(name, names).items()}
    return FileInfo(path, fmt, columns, len(names), total)


def _open_binary(path: Path) -> gzip.GzipFile | BufferedReader:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _open_text(path: Path, encoding: str = "utf-8") -> IO[str]:
    """A CSV file as text for the stdlib reader: undecodable bytes become U+FFFD."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, errors="replace", newline="")
    return open(path, encoding=encoding, errors="replace", newline="")


def _csv_header(path: Path) -> list[str]:
    try:
        with _open_text(path, "utf-8-sig") as text:
            header = next(csv.reader(text), None)
    except (OSError, EOFError, csv.Error) as exc:
        raise ValueError(f"{path.name}: cannot read the CSV header: {exc}") from exc
    if not header:
        raise ValueError(f"{path.name}: the file is empty; a header line is required")
    return header


def _parquet_schema(path: Path) -> tuple[list[str], int]:
    try:
        with pq.ParquetFile(path) as pf:
            return list(pf.schema_arrow.names), pf.metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{path.name}: not a readable Parquet file: {exc}") from exc


def _match_columns(name: str, header: Sequence[str]) -> dict[str, int]:
    """Positions of the required and optional columns in ``header``."""
    positions: dict[str, int] = {}
    for i, column in enumerate(header):
        role = column.strip().lower()
        if role in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            if role in positions:
                raise ValueError(f"{name}: column {role!r} appears more than once")
            positions[role] = i
    missing = [role for role in REQUIRED_COLUMNS if role not in positions]
    if missing:
        raise ValueError(
            f"{name}: missing required column(s) {', '.join(map(repr, missing))}; "
            f"the file has {list(header)!r}, needs time, symbol, price and optionally size"
        )
    return positions


def _count_csv_rows(path: Path) -> int | None:
    """Data rows in a CSV file by counting newlines, or None when that would be slow."""
    gzipped = path.name.lower().endswith(".gz")
    size = path.stat().st_size
    if size > (_COUNT_MAX_GZIP_BYTES if gzipped else _COUNT_MAX_BYTES):
        return None
    newlines, seen, last = 0, 0, b"\n"
    try:
        with _open_binary(path) as f:
            while block := f.read(1 << 20):
                newlines += block.count(b"\n")
                seen += len(block)
                last = block[-1:]
                if seen > _COUNT_MAX_BYTES:
                    return None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path.name}: cannot read the file: {exc}") from exc
    lines = newlines + (last != b"\n")
    return max(lines - 1, 0)


# --- Chunks of rows, streamed from a given row on -----------------------------------


class RawChunk(NamedTuple):
    """Rows ``[start, end)`` of a file as read; ``keep`` holds the offsets of the rows
    kept (None: all of them) and the columns hold the kept rows only."""

    start: int
    end: int
    keep: IntArray | None
    time: list[object]
    symbol: list[object]
    price: list[object]
    size: list[object] | None


def _chunk_sizes(start: int, chunk_rows: int) -> Iterator[int]:
    """Chunks end on multiples of ``chunk_rows``, so a resumed replay batches as the first
    run did."""
    yield chunk_rows - start % chunk_rows
    while True:
        yield chunk_rows


def read_chunks(
    info: FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[RawChunk, None, None]:
    """The file's rows from row ``start`` on, ``chunk_rows`` at a time, only those of
    ``symbols`` if given; a read error becomes a ValueError that names the file."""
    readers = {"csv": _read_csv, "parquet": _read_parquet, "dataset": _read_dataset}
    reader = readers[info.format]
    try:
        yield from reader(info, start, chunk_rows, symbols)
    except (OSError, EOFError, csv.Error, pa.ArrowException) as exc:
        raise ValueError(f"{info.path.name}: cannot read the file: {exc}") from exc


def _roles(info: FileInfo) -> list[str]:
    return [role for role in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if role in info.columns]


def _read_csv(
    info: FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[RawChunk, None, None]:
    """pandas' C reader, as strings. It takes rows shorter than the header, and a few
    fields longer; a row longer still makes it fail, and the stdlib reader takes over."""
    row = start
    try:
        with pd.read_csv(
            info.path,
            engine="c",
            header=None,
            names=list(range(info.width + _CSV_SLACK_FIELDS)),
            index_col=False,
            dtype=object,
            na_filter=False,
            skip_blank_lines=False,
            skiprows=1 + start,
            chunksize=chunk_rows,
            encoding="utf-8",
            encoding_errors="replace",
        ) as reader:
            for size in _chunk_sizes(start, chunk_rows):
                try:
                    with warnings.catch_warnings():
                        # A first row longer than `names` loses its extra fields, which
                        # are past every column we read: nothing to warn about.
                        warnings.simplefilter("ignore", pd.errors.ParserWarning)
                        frame = reader.get_chunk(size)
                except StopIteration:
                    return
                if frame.empty:
                    return
                columns = {role: frame[info.columns[role]].to_numpy() for role in _roles(info)}
                blank = columns["time"] == ""
                if blank.any():
                    blank[blank] = (frame[blank] == "").all(axis=1).to_numpy()
                yield _csv_chunk(row, columns, blank, symbols)
                row += len(frame)
    except pd.errors.ParserError:
        yield from _read_csv_stdlib(info, row, chunk_rows, symbols)


def _read_csv_stdlib(
    info: FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[RawChunk, None, None]:
    """The slow reader that takes any row: missing fields read as ``""``."""
    positions = {role: int(info.columns[role]) for role in _roles(info)}
    with _open_text(info.path) as text:
        reader = csv.reader(text)
        deque(islice(reader, 1 + start), maxlen=0)  # the header and the rows before start
        row = start
        for size in _chunk_sizes(start, chunk_rows):
            records = list(islice(reader, size))
            if not records:
                return
            columns = {
                role: _object_array([r[i] if i < len(r) else "" for r in records])
                for role, i in positions.items()
            }
            blank = np.fromiter((not any(r) for r in records), dtype=np.bool_, count=len(records))
            yield _csv_chunk(row, columns, blank, symbols)
            row += len(records)


def _object_array(values: list[object]) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=len(values))


def _csv_chunk(
    start: int,
    columns: dict[str, np.ndarray],
    blank: BoolArray,
    symbols: frozenset[str] | None,
) -> RawChunk:
    n = len(blank)
    keep = ~blank
    if symbols is not None:
        # Few distinct symbols: normalize each once, not once a row.
        codes, distinct = pd.factorize(columns["symbol"])
        wanted = [isinstance(s, str) and s.strip().upper() in symbols for s in distinct]
        keep &= np.array([*wanted, False], dtype=np.bool_)[codes]  # code -1: missing
    offsets = None if keep.all() else np.flatnonzero(keep)

    def kept(role: str) -> list[object]:
        values = columns[role] if offsets is None else columns[role][offsets]
        return values.tolist()

    size = kept("size") if "size" in columns else None
    return RawChunk(start, start + n, offsets, kept("time"), kept("symbol"), kept("price"), size)


def _read_parquet(
    info: FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[RawChunk, None, None]:
    """Batches of the needed columns; whole row groups before ``start`` are never read."""
    names = {role: str(info.columns[role]) for role in _roles(info)}
    with pq.ParquetFile(info.path) as pf:
        meta = pf.metadata
        group, skip = 0, start
        while group < meta.num_row_groups and skip >= meta.row_group(group).num_rows:
            skip -= meta.row_group(group).num_rows
            group += 1
        if group == meta.num_row_groups:
            return
        batches = pf.iter_batches(
            batch_size=chunk_rows,
            row_groups=list(range(group, meta.num_row_groups)),
            columns=list(dict.fromkeys(names.values())),
        )
        for row, table in _in_chunks(batches, start, skip, chunk_rows):
            yield _parquet_chunk(row, table, names, symbols)


def _in_chunks(
    batches: Iterable[pa.RecordBatch], start: int, skip: int, chunk_rows: int
) -> Iterator[tuple[int, pa.Table]]:
    """``(first row, table)`` chunks of the rows from row ``start`` on, sized by
    :func:`_chunk_sizes`; ``batches`` holds ``skip`` rows before row ``start``."""
    sizes = _chunk_sizes(start, chunk_rows)
    want, row, pending, have = next(sizes), start, [], 0
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        batch, skip = batch.slice(skip), 0
        pending.append(batch)
        have += batch.num_rows
        while have >= want:
            table = pa.Table.from_batches(pending)
            yield row, table.slice(0, want)
            pending, have, row = table.slice(want).to_batches(), have - want, row + want
            want = next(sizes)
    if have:
        yield row, pa.Table.from_batches(pending)


def _parquet_chunk(
    start: int, table: pa.Table, names: dict[str, str], symbols: frozenset[str] | None
) -> RawChunk:
    n = table.num_rows
    offsets = None
    if symbols is not None:
        mask = _parquet_symbol_mask(table.column(names["symbol"]), symbols)
        if not mask.all():
            offsets = np.flatnonzero(mask)
            table = table.filter(pa.array(mask))
    columns = {role: _column_values(table.column(name)) for role, name in names.items()}
    return RawChunk(
        start,
        start + n,
        offsets,
        columns["time"],
        columns["symbol"],
        columns["price"],
        columns.get("size"),
    )


def _parquet_symbol_mask(column: pa.ChunkedArray, symbols: frozenset[str]) -> BoolArray:
    values = column.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    normalized = pc.utf8_upper(pc.utf8_trim_whitespace(values))
    found = pc.is_in(normalized, value_set=pa.array(sorted(symbols), type=normalized.type))
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _column_values(column: pa.ChunkedArray) -> list[object]:
    """A Parquet column as Python values; timestamps and dates as ISO 8601 strings."""
    values = column.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = values.type
    if pa.types.is_timestamp(kind):
        # Dropping the zone keeps the stored UTC instants; the string then says it is UTC.
        text = pc.cast(pc.cast(values, pa.timestamp("us"), safe=False), pa.string())
        text = pc.replace_substring(text, " ", "T", max_replacements=1)
        values = pc.binary_join_element_wise(text, "Z", "")
    elif pa.types.is_date(kind):
        values = pc.cast(values, pa.string())
    elif (pa.types.is_integer(kind) or pa.types.is_floating(kind)) and values.null_count == 0:
        return values.to_numpy().tolist()
    return values.to_pylist()


# --- A directory of Parquet files, merged by time -----------------------------------

_TIME = pa.timestamp("us", tz="UTC")
_NEVER = np.iinfo(np.int64).max


def _inspect_dataset(path: Path) -> FileInfo:
    files = sorted(
        p
        for p in path.rglob("*")
        if p.name.lower().endswith(PARQUET_SUFFIXES)
        and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        and p.is_file()
    )
    if not files:
        raise ValueError(f"{path.name}: no Parquet files (.parquet, .pq) in the directory {path}")
    parts = [_dataset_part(path, f) for f in files]
    roles = set(parts[0].columns)
    for part in parts[1:]:
        if set(part.columns) != roles:
            raise ValueError(
                f"{path.name}: {part.path.relative_to(path)} has the columns "
                f"{sorted(part.columns)}, {parts[0].path.relative_to(path)} "
                f"{sorted(roles)}: every file of a directory needs the same"
            )
    columns: dict[str, int | str] = {
        r: r for r in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if r in roles
    }
    total = sum(part.rows for part in parts)
    info = FileInfo(path, "dataset", columns, len(columns), total, tuple(parts))
    _merged_schema(info)  # the files' types must agree
    return info


def _dataset_part(root: Path, path: Path) -> DatasetPart:
    label = f"{root.name}/{path.relative_to(root)}"
    try:
        with pq.ParquetFile(path) as pf:
            schema, meta = pf.schema_arrow, pf.metadata
            first = _first_time(meta, schema)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"{label}: not a readable Parquet file: {exc}") from exc
    names = list(schema.names)
    columns = {role: names[i] for role, i in _match_columns(label, names).items()}
    types = {role: _value_type(schema.field(name).type) for role, name in columns.items()}
    if not pa.types.is_timestamp(types["time"]):
        raise ValueError(
            f"{label}: the time column is {types['time']}; the files of a directory are "
            "merged by time, so it must be a Parquet timestamp"
        )
    types["time"] = _TIME
    seq = next((n for n in names if n.strip().lower() == "seq"), None)
    if seq is not None and not pa.types.is_integer(_value_type(schema.field(seq).type)):
        seq = None
    return DatasetPart(path, columns, types, seq, meta.num_rows, first)


def _value_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _first_time(meta: pq.FileMetaData, schema: pa.Schema) -> int | None:
    """The smallest time in the file's row group statistics, or None if any lacks them."""
    names = [n for n in schema.names if n.strip().lower() == "time"]
    leaves = [meta.schema.column(j).path for j in range(meta.num_columns)]
    if len(names) != 1 or names[0] not in leaves or meta.num_row_groups == 0:
        return None
    j = leaves.index(names[0])
    firsts = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(j).statistics
        if stats is None or not stats.has_min_max:
            return None
        try:
            value = pd.Timestamp(stats.min)
            value = value.tz_localize("UTC") if value.tzinfo is None else value
            firsts.append(value.value // 1000)  # `value` is in nanoseconds, whatever the unit
        except (TypeError, ValueError, OverflowError):
            return None
    return min(firsts)


class _Cursor:
    """One file of a merge: its rows read so far and not yet merged, in role columns."""

    def __init__(self, part: DatasetPart, schema: pa.Schema, batch_rows: int) -> None:
        self.part = part
        self.schema = schema
        self._file = pq.ParquetFile(part.path)
        wanted = [
            *part.columns.values(),
            *([part.seq] if part.seq and "seq" in schema.names else []),
        ]
        self._batches = self._file.iter_batches(
            batch_size=batch_rows, columns=list(dict.fromkeys(wanted))
        )
        self.rows = schema.empty_table()
        self.times = np.empty(0, dtype=np.int64)
        self.done = False

    @property
    def last(self) -> int:
        """The latest time read: no row to come is earlier, if the file is in time order."""
        return int(self.times.max()) if len(self.times) else _NEVER

    def load(self) -> None:
        """Read the file's next batch (or find it done, and close it)."""
        for batch in self._batches:
            if batch.num_rows:
                table = self._roles(batch)
                self.rows = pa.concat_tables([self.rows, table])
                self.times = np.concatenate([self.times, _times_us(table)])
                return
        self.done = True
        self._file.close()

    def _roles(self, batch: pa.RecordBatch) -> pa.Table:
        sources = dict(self.part.columns)
        if "seq" in self.schema.names and self.part.seq:
            sources["seq"] = self.part.seq
        arrays = [pc.cast(batch.column(sources[f.name]), f.type, safe=False) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def take(self, bound: int) -> pa.Table | None:
        """Remove and return the rows earlier than ``bound``."""
        before = self.times < bound
        if not before.any():
            return None
        if before.all():
            taken, self.rows, self.times = self.rows, self.schema.empty_table(), self.times[:0]
            return taken
        taken = self.rows.filter(pa.array(before))
        self.rows, self.times = self.rows.filter(pa.array(~before)), self.times[~before]
        return taken

    def close(self) -> None:
        self._file.close()


def _times_us(table: pa.Table) -> np.ndarray:
    """The times as int64 microseconds; a missing time as the earliest (it goes out at
    once, to be rejected by the parse step)."""
    times = pc.fill_null(table.column("time").cast(pa.int64()), -_NEVER)
    return np.asarray(times.to_numpy(), dtype=np.int64)


def _merged_schema(info: FileInfo) -> pa.Schema:
    roles = _roles(info)
    try:
        schema = pa.unify_schemas(
            [pa.schema([(r, p.types[r]) for r in roles]) for p in info.parts],
            promote_options="permissive",
        )
    except (pa.ArrowException, TypeError) as exc:
        raise ValueError(f"{info.path.name}: the files' column types disagree: {exc}") from exc
    if all(p.seq for p in info.parts):
        schema = schema.append(pa.field("seq", pa.int64()))
    return schema


def _merge(info: FileInfo, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of every file of ``info``, merged in ``(time, seq, symbol)`` order.

    A file is opened when the merge reaches its first time (from its statistics; a file
    without them is opened at once), and rows go out once no file can still hold an
    earlier one: each open file holds a batch or so of rows in memory at a time.
    """
    schema = _merged_schema(info)
    keys = [(k, "ascending") for k in ("_at", "seq", "symbol") if k in {"_at", *schema.names}]
    waiting = deque(
        sorted(
            (p for p in info.parts if p.rows),
            key=lambda p: -_NEVER if p.first_us is None else p.first_us,
        )
    )
    cursors: list[_Cursor] = []
    try:
        while waiting or cursors:
            for c in cursors:
                if not c.done and not len(c.times):
                    c.load()
            cursors = [c for c in cursors if len(c.times) or not c.done]
            opening = _NEVER
            if waiting:
                opening = -_NEVER if waiting[0].first_us is None else waiting[0].first_us
            reading = min((c.last for c in cursors if not c.done), default=_NEVER)
            bound = min(opening, reading)
            taken = [t for c in cursors if (t := c.take(bound)) is not None]
            if taken:
                merged = pa.concat_tables(taken)
                merged = merged.append_column("_at", pa.array(_times_us(merged)))
                yield from merged.sort_by(keys).drop_columns(["_at"]).to_batches()
            elif waiting and opening <= reading:
                cursor = _Cursor(waiting.popleft(), schema, batch_rows)
                cursors.append(cursor)
                cursor.load()
            else:
                for c in cursors:
                    if not c.done and c.last == reading:
                        c.load()
    finally:
        for c in cursors:
            c.close()


def _read_dataset(
    info: FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[RawChunk, None, None]:
    names = {role: role for role in _roles(info)}
    for row, table in _in_chunks(_merge(info, chunk_rows), start, start, chunk_rows):
        yield _parquet_chunk(row, table, names, symbols)
