"""Replay a historical trades file, CSV or Parquet, as a stream of raw row blocks.

:class:`ReplaySource` reads a file with the columns ``time``, ``symbol``, ``price`` and
optionally ``size`` (any order, names matched case-insensitively, other columns ignored)
and emits :class:`~dataflows.records.RawBatch` items whose messages are
:class:`~dataflows.records.RowBlock` payloads: the values as read, so that the dataflow
validates them and can store the raw payload of a bad row in the dead-letter table.

- CSV (``.csv``, ``.csv.gz``; a header line is required): every value is the string
  exactly as in the file (CSV quoting removed); a field missing from a short row reads as
  ``""``. Rows with nothing in any field (blank lines) are skipped, but they are rows:
  they keep their row number.
- Parquet (``.parquet``, ``.pq``): values as stored (str, int, float, ``None`` for null),
  except that timestamp-typed values become ISO 8601 strings in UTC with microseconds,
  ``"2024-01-02T14:30:00.000850Z"`` (naive timestamps are taken as UTC; nanoseconds are
  truncated), and date-typed values become ``"2024-01-02"``. Strings, unlike bare epoch
  integers, need no guess about their unit.

A row's ``seq`` is its 0-based data row number in the file (the header is not a row), so
a re-delivered row carries the same ``seq`` as the first time.

:func:`to_epoch_us` is the vectorized timestamp parser the dataflow reuses on the
``time`` column.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import warnings
from collections import deque
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from io import BufferedReader
from itertools import islice, pairwise
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from numpy.lib.stride_tricks import sliding_window_view
from typing_extensions import override

from dataflows.records import RawBatch, RowBlock, wall_clock_us

__all__ = ["ReplaySource", "ReplayState", "to_epoch_us"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Progress = Callable[[int, int | None], None]
TimeValues = Sequence[object] | np.ndarray

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
# Paced replays release rows at most this often (fewer, fuller batches), and one batch
# spans at most _PACE_SPAN_US of wall time even when the worker fell behind.
_PACE_TICK_US = 50_000
_PACE_SPAN_US = 100_000
# A row is paced by its own time or the median time of it and the next rows, whichever
# is earlier, so that one far-future timestamp cannot stall a paced replay.
_PACE_WINDOW = 9
# With a symbol filter most chunks may hold nothing to emit: read at most this many per
# call so that the worker is never blocked for long.
_MAX_CHUNKS_PER_CALL = 8

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


# --- Timestamps ---------------------------------------------------------------------


def to_epoch_us(values: TimeValues) -> tuple[IntArray, BoolArray]:
    """Parse timestamps to integer microseconds since the Unix epoch (UTC), vectorized.

    ``values`` is a sequence, or a numpy, pandas or pyarrow array. Returns ``(us, valid)``;
    ``us`` is 0 where ``valid`` is False. Accepted values:

    - ISO 8601 strings, with ``Z`` or an offset; naive means UTC; a date alone means its
      midnight UTC. Exact to the microsecond (digits below it are truncated).
    - Epoch numbers, or strings holding one, in a unit guessed from the magnitude:
      seconds below 1e11, milliseconds below 1e14, microseconds below 1e17, else
      nanoseconds. Float seconds and milliseconds are rounded to the microsecond (their
      binary fractions are inexact); integers and finer units are truncated (floor).
    - ``datetime``/``date``, pandas, numpy and pyarrow timestamps (naive means UTC).

    Anything else (empty or blank strings, garbage, None, NaN, NaT, booleans) is invalid.

    >>> us, ok = to_epoch_us(["2024-01-02T09:30:00.5+01:00", "1704187800", "x"])
    >>> us.tolist(), ok.tolist()
    ([1704184200500000, 1704187800000000, 0], [True, True, False])
    """
    arr = _as_array(values)
    kind = arr.dtype.kind
    if kind == "M":
        return _datetime64_to_us(arr)
    if kind in "iuf":
        return _numbers_to_us(arr)
    if kind in "US":
        arr = arr.astype(object)
    elif kind != "O":  # booleans, timedeltas, complex numbers: not timestamps
        return _invalid(len(arr))
    return _objects_to_us(arr)


def _as_array(values: TimeValues) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.ravel()
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy()
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.to_numpy(zero_copy_only=False)
    return np.fromiter(values, dtype=object, count=len(values))


def _invalid(n: int) -> tuple[IntArray, BoolArray]:
    return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)


def _objects_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    inferred = pd.api.types.infer_dtype(arr, skipna=True)
    if inferred == "string":
        return _strings_to_us(arr)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return _number_objects_to_us(arr)
    if inferred in ("datetime", "datetime64", "date"):
        return _datetimes_to_us(arr)
    if inferred in ("empty", "boolean"):
        return _invalid(len(arr))
    return _mixed_to_us(arr)


def _numbers_to_us(x: np.ndarray) -> tuple[IntArray, BoolArray]:
    """Epoch numbers in a unit guessed from their magnitude."""
    if x.dtype.kind in "iu":
        valid = np.ones(len(x), dtype=np.bool_)
        if x.dtype.kind == "u":
            valid &= x <= _INT64_MAX
        xi = x.astype(np.int64)
        valid &= xi != _INT64_MIN  # its magnitude does not fit in int64
        mag = np.abs(xi)
        # Products that overflow belong to the branches np.select does not pick.
        us = np.select(
            [mag < 10**11, mag < 10**14, mag < 10**17], [xi * 10**6, xi * 10**3, xi], xi // 1000
        )
        return np.where(valid, us, 0).astype(np.int64), valid
    xf = x.astype(np.float64)
    valid = np.isfinite(xf) & (np.abs(xf) < 1e19)
    xf = np.where(valid, xf, 0.0)
    mag = np.abs(xf)
    us_f = np.select([mag < 1e11, mag < 1e14, mag < 1e17], [xf * 1e6, xf * 1e3, xf], xf / 1e3)
    us_f = np.where(mag >= 1e14, np.floor(us_f), np.rint(us_f))
    return us_f.astype(np.int64), valid


def _number_objects_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    us, ok = _invalid(len(arr))
    present = ~pd.isna(arr)
    vals = arr[present]
    if pd.api.types.infer_dtype(vals) == "integer":
        try:
            sub_us, sub_ok = _numbers_to_us(vals.astype(np.int64))
        except OverflowError:  # beyond int64: far outside any plausible time
            sub_us, sub_ok = _numbers_to_us(vals.astype(np.float64))
    else:
        sub_us, sub_ok = _numbers_to_us(vals.astype(np.float64))
    us[present], ok[present] = sub_us, sub_ok
    return us, ok


def _datetime64_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    valid = ~np.isnat(arr)
    us = arr.astype("datetime64[us]").view(np.int64)
    return np.where(valid, us, 0).astype(np.int64), valid


def _datetimes_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    parsed = pd.to_datetime(arr, utc=True, errors="coerce")
    valid = ~np.asarray(parsed.isna())
    us = np.asarray(parsed.as_unit("us").asi8)
    return np.where(valid, us, 0).astype(np.int64), valid


def _strings_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    """ISO 8601 or numeric strings; the batch's first string picks what to try first."""
    us, ok = _invalid(len(arr))
    todo = np.arange(len(arr))
    first = next((v for v in arr if isinstance(v, str) and v.strip()), "")
    if _NUMBER.fullmatch(first):
        todo = _parse_numeric_strings(arr, todo, us, ok)
        _parse_iso_strings(arr, todo, us, ok)
    else:
        todo = _parse_iso_strings(arr, todo, us, ok)
        _parse_numeric_strings(arr, todo, us, ok)
    return us, ok


def _parse_iso_strings(arr: np.ndarray, idx: IntArray, us: IntArray, ok: BoolArray) -> IntArray:
    """Parse ``arr[idx]`` as ISO 8601 into ``us``/``ok``; return the indices that failed."""
    if len(idx) == 0:
        return idx
    sub = arr[idx]
    parsed = pd.to_datetime(sub, utc=True, errors="coerce", format="ISO8601")
    good = ~np.asarray(parsed.isna())
    # The ISO parser also takes a few bare numbers ("2024", "20240102", "-5"): numbers win.
    hits = np.flatnonzero(good)
    lengths = np.fromiter(map(len, sub[hits]), dtype=np.int64, count=len(hits))
    for k in hits[lengths <= 12]:
        if _NUMBER.fullmatch(sub[k]):
            good[k] = False
    us[idx[good]] = np.asarray(parsed.as_unit("us").asi8)[good]
    ok[idx[good]] = True
    return idx[~good]


def _parse_numeric_strings(arr: np.ndarray, idx: IntArray, us: IntArray, ok: BoolArray) -> IntArray:
    """Parse ``arr[idx]`` as epoch numbers into ``us``/``ok``; return the indices that failed."""
    if len(idx) == 0:
        return idx
    sub = arr[idx]
    nums = np.asarray(pd.to_numeric(sub, errors="coerce"))
    good = np.isfinite(nums) if nums.dtype.kind == "f" else np.ones(len(nums), dtype=np.bool_)
    sub_us, sub_ok = _numbers_to_us(nums)
    if nums.dtype.kind == "f":
        # float64 is exact only below 2**53: integers beyond it (nanoseconds) are re-read
        exact: dict[int, int] = {}
        for k in np.flatnonzero(good & (np.abs(nums) >= 2.0**53)).tolist():
            if _INTEGER.fullmatch(sub[k]) and _INT64_MIN < (v := int(sub[k])) <= _INT64_MAX:
                exact[k] = v
        if exact:
            values = np.fromiter(exact.values(), dtype=np.int64, count=len(exact))
            keys = list(exact)
            sub_us[keys], sub_ok[keys] = _numbers_to_us(values)
    us[idx[good]] = sub_us[good]
    ok[idx[good]] = sub_ok[good]
    return idx[~good]


def _mixed_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    """Values of several kinds: group them by kind, then parse each group vectorized."""
    us, ok = _invalid(len(arr))
    groups: dict[str, list[int]] = {"str": [], "num": [], "time": []}
    values = arr.copy()
    for i, value in enumerate(arr):
        v = value.as_py() if isinstance(value, pa.Scalar) else value
        values[i] = v
        if isinstance(v, str):
            groups["str"].append(i)
        elif isinstance(v, (bool, np.bool_)):
            continue
        elif isinstance(v, (int, float, Decimal, np.integer, np.floating)):
            groups["num"].append(i)
        elif isinstance(v, (datetime, date, np.datetime64)):
            groups["time"].append(i)
    parsers = {"str": _strings_to_us, "num": _number_objects_to_us, "time": _datetimes_to_us}
    for kind, members in groups.items():
        if members:
            us[members], ok[members] = parsers[kind](values[members])
    return us, ok


# --- Files ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileInfo:
    """What a replay needs to know about its file, learned once when the source is built."""

    path: Path
    format: str  # "csv" or "parquet"
    columns: dict[str, int | str]  # time/symbol/price[/size] -> CSV field index | column
    width: int  # fields in the CSV header
    total_rows: int | None


def _inspect(path: Path, *, count_rows: bool) -> _FileInfo:
    name = path.name
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
        return _FileInfo(path, fmt, columns, len(header), total)
    names, total = _parquet_schema(path)
    columns = {role: names[i] for role, i in _match_columns(name, names).items()}
    return _FileInfo(path, fmt, columns, len(names), total)


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


# --- Readers: chunks of rows, streamed from a given row on --------------------------


class _RawChunk(NamedTuple):
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


def _read(
    info: _FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[_RawChunk, None, None]:
    reader = _read_csv if info.format == "csv" else _read_parquet
    try:
        yield from reader(info, start, chunk_rows, symbols)
    except (OSError, EOFError, csv.Error, pa.ArrowException) as exc:
        raise ValueError(f"{info.path.name}: cannot read the file: {exc}") from exc


def _roles(info: _FileInfo) -> list[str]:
    return [role for role in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if role in info.columns]


def _read_csv(
    info: _FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[_RawChunk, None, None]:
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
    info: _FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[_RawChunk, None, None]:
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
) -> _RawChunk:
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
    return _RawChunk(start, start + n, offsets, kept("time"), kept("symbol"), kept("price"), size)


def _read_parquet(
    info: _FileInfo, start: int, chunk_rows: int, symbols: frozenset[str] | None
) -> Generator[_RawChunk, None, None]:
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
                yield _parquet_chunk(row, table.slice(0, want), names, symbols)
                pending, have, row = table.slice(want).to_batches(), have - want, row + want
                want = next(sizes)
        if have:
            yield _parquet_chunk(row, pa.Table.from_batches(pending), names, symbols)


def _parquet_chunk(
    start: int, table: pa.Table, names: dict[str, str], symbols: frozenset[str] | None
) -> _RawChunk:
    n = table.num_rows
    offsets = None
    if symbols is not None:
        mask = _parquet_symbol_mask(table.column(names["symbol"]), symbols)
        if not mask.all():
            offsets = np.flatnonzero(mask)
            table = table.filter(pa.array(mask))
    columns = {role: _column_values(table.column(name)) for role, name in names.items()}
    return _RawChunk(
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


# --- The partition ------------------------------------------------------------------


class ReplayState(NamedTuple):
    """Where a replay partition resumes: the file's next data row (0-based) and the
    stream clock of the last batch, carried into batches with no parseable time."""

    next_row: int
    clock_us: int


@dataclass
class _Chunk:
    """Rows ``[start, end)`` of the file: the kept ones, numbered, their times parsed."""

    start: int
    end: int
    seq: IntArray
    time: list[object]
    symbol: list[object]
    price: list[object]
    size: list[object] | None
    time_us: IntArray
    time_ok: BoolArray
    pace: IntArray | None = None  # filled in when a paced replay reaches the chunk

    @classmethod
    def of(cls, raw: _RawChunk) -> _Chunk:
        rows = np.arange(len(raw.time), dtype=np.int64) if raw.keep is None else raw.keep
        time_us, time_ok = to_epoch_us(raw.time)
        return cls(
            start=raw.start,
            end=raw.end,
            seq=raw.start + rows.astype(np.int64),
            time=raw.time,
            symbol=raw.symbol,
            price=raw.price,
            size=raw.size,
            time_us=time_us,
            time_ok=time_ok,
        )


def _pace_times(chunk: _Chunk, ahead: _Chunk | None) -> IntArray:
    """The event time each row is paced by: its own time, or the median time of it and
    the next rows if that is earlier (a lone far-future time must not stall the replay).
    Rows with no time are due at once (``INT64_MIN``)."""
    n = len(chunk.seq)
    pace = np.full(n, _INT64_MIN, dtype=np.int64)
    ok = chunk.time_ok
    if not ok.any():
        return pace
    tail = np.empty(0, dtype=np.int64) if ahead is None else ahead.time_us[ahead.time_ok]
    tail = tail[: _PACE_WINDOW - 1]
    padded = np.full(n + _PACE_WINDOW - 1, np.nan)
    padded[:n] = np.where(ok, chunk.time_us, np.nan)
    padded[n : n + len(tail)] = tail
    medians = np.nanmedian(sliding_window_view(padded, _PACE_WINDOW)[ok], axis=1)
    pace[ok] = np.minimum(chunk.time_us[ok], np.floor(medians).astype(np.int64))
    return pace


class _ReplayPartition(StatefulSourcePartition[RawBatch, ReplayState]):
    def __init__(
        self,
        info: _FileInfo,
        state: ReplayState,
        *,
        speed: float | None,
        symbols: frozenset[str] | None,
        batch_rows: int,
        on_progress: Progress | None,
        clock: Callable[[], int],
    ) -> None:
        self._source = f"replay:{info.path.name}"
        self._total = info.total_rows
        self._speed = speed
        self._batch_rows = batch_rows
        self._on_progress = on_progress
        self._clock = clock
        self._reader = _read(info, state.next_row, batch_rows, symbols)
        self._next_row = state.next_row
        self._clock_us = state.clock_us
        self._chunks: deque[_Chunk] = deque()
        self._pos = 0  # the next row of self._chunks[0] to emit
        self._eof = False
        self._finished = False
        self._origin: tuple[int, int] | None = None  # (wall, event) us of the first paced row
        self._wake_us: int | None = None

    @override
    def next_batch(self) -> list[RawBatch]:
        before = self._next_row
        self._wake_us = None
        ready = self._fill()
        if not self._chunks and self._eof:
            self._finish()
            raise StopIteration
        batch = self._take() if ready else None
        if self._next_row != before and self._on_progress is not None:
            self._on_progress(self._next_row, self._total)
        return [] if batch is None else [batch]

    @override
    def next_awake(self) -> datetime | None:
        if self._wake_us is None:
            return None
        return _EPOCH + timedelta(microseconds=self._wake_us)

    @override
    def snapshot(self) -> ReplayState:
        return ReplayState(self._next_row, self._clock_us)

    @override
    def close(self) -> None:
        self._reader.close()

    def _fill(self) -> bool:
        """Read chunks until one has rows to emit (and, when paced, the next one is read
        too, to look ahead); False if it takes longer than one call should."""
        needed = 1 if self._speed is None else 2
        loads = 0
        while True:
            while self._chunks and self._pos >= len(self._chunks[0].seq):
                self._next_row = self._chunks.popleft().end
                self._pos = 0
            if self._eof or len(self._chunks) >= needed:
                return bool(self._chunks)
            if loads == _MAX_CHUNKS_PER_CALL:
                return False
            raw = next(self._reader, None)
            loads += 1
            if raw is None:
                self._eof = True
            else:
                self._chunks.append(_Chunk.of(raw))

    def _take(self) -> RawBatch | None:
        chunk = self._chunks[0]
        lo = self._pos
        hi = min(len(chunk.seq), lo + self._batch_rows)
        if self._speed is not None:
            hi = self._paced_end(chunk, lo, hi, self._speed)
        if hi == lo:
            return None
        self._pos = hi
        self._next_row = int(chunk.seq[hi - 1]) + 1
        return self._batch(chunk, lo, hi)

    def _paced_end(self, chunk: _Chunk, lo: int, hi: int, speed: float) -> int:
        """How far rows ``lo:hi`` of the chunk are due now; sets the next wake-up."""
        if chunk.pace is None:
            chunk.pace = _pace_times(chunk, self._chunks[1] if len(self._chunks) > 1 else None)
        pace = chunk.pace[lo:hi]
        timed = np.flatnonzero(pace != _INT64_MIN)
        now = self._clock()
        if self._origin is None:
            if len(timed) == 0:
                return hi
            self._origin = (now, int(pace[timed[0]]))  # the first row goes at once
        wall0, event0 = self._origin
        allowed = min(event0 + math.floor((now - wall0) * speed), _INT64_MAX)
        cap = allowed
        if len(timed):
            cap = min(allowed, int(pace[timed[0]]) + math.floor(_PACE_SPAN_US * speed))
        late = np.flatnonzero(pace > cap)
        if len(late) == 0:
            return hi
        end = lo + int(late[0])
        next_pace = int(chunk.pace[end])
        if next_pace <= allowed:  # cut by the span cap but due already: no waiting
            return end
        due = wall0 + math.ceil((next_pace - event0) / speed)
        self._wake_us = max(due, now + _PACE_TICK_US) if end > lo else due
        return end

    def _batch(self, chunk: _Chunk, lo: int, hi: int) -> RawBatch:
        times = chunk.time_us[lo:hi][chunk.time_ok[lo:hi]]
        if len(times):
            middle = (len(times) - 1) // 2  # the lower median: a time of the batch itself
            self._clock_us = int(np.partition(times, middle)[middle])
        seq = chunk.seq[lo:hi]
        # Rows skipped by the symbol filter break the run of seqs: one block per run.
        cuts = (np.flatnonzero(np.diff(seq) != 1) + 1).tolist()
        messages: list[tuple[int, str | RowBlock]] = []
        for a, b in pairwise([0, *cuts, hi - lo]):
            first = int(seq[a])
            i, j = lo + a, lo + b
            size = None if chunk.size is None else chunk.size[i:j]
            block = RowBlock(first, chunk.time[i:j], chunk.symbol[i:j], chunk.price[i:j], size)
            messages.append((first, block))
        return RawBatch(source=self._source, clock_us=self._clock_us, messages=messages)

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            if self._on_progress is not None:
                self._on_progress(self._next_row, self._next_row)


# --- The source ---------------------------------------------------------------------


class ReplaySource(FixedPartitionedSource[RawBatch, ReplayState]):
    """Replays one CSV or Parquet file of trades; one partition, named after the file.

    Each item is a :class:`~dataflows.records.RawBatch` from ``replay:<file name>``
    holding one :class:`~dataflows.records.RowBlock` per run of consecutive rows (one
    per batch unless ``symbols`` skips rows). Its ``clock_us`` is the lower median of the
    batch's parseable times, robust to a few bad rows; a batch with none carries the
    previous clock (0 before any).

    Delivery: replays are deterministic and resumable. The state snapshot is the next row
    number (and the stream clock); a partition rebuilt from it emits exactly the rows an
    uninterrupted run would have emitted after that point, batched the same way at full
    speed. With Bytewax recovery that means at-least-once delivery: rows emitted after
    the last snapshot are emitted again after a restart, with the same ``seq`` (the
    0-based data row number in the file), so sinks can be idempotent.

    :arg path: A ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file with the columns
        ``time``, ``symbol``, ``price`` and optionally ``size``.
    :arg speed: None replays as fast as possible; X paces rows by event time at X times
        real speed: a row with time t is released no earlier than (t - t0) / X seconds
        after the first row (time t0), which is released at once. Pacing assumes a file
        in time order; rows earlier than the pace go at once. A resumed replay restarts
        pacing from its first row.
    :arg symbols: Keep only rows of these symbols (compared trimmed, case-insensitively);
        other rows are skipped, not rejected. A single string is one symbol.
    :arg batch_rows: At most this many rows per batch; files are read in chunks of this
        many rows.
    :arg on_progress: Called after each batch with (rows of the file done, total rows or
        None if unknown). The total is known for Parquet and, counted when the source is
        built, for CSV files up to 2 GiB (gzip: 256 MiB); the last call, when the file is
        done, passes the exact total.
    :arg clock: Wall clock in microseconds since the epoch, for pacing.
    :raises ValueError: The file is missing, of an unknown type, unreadable, or lacks a
        required column; or an argument is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        speed: float | None = None,
        symbols: Collection[str] | None = None,
        batch_rows: int = 10_000,
        on_progress: Progress | None = None,
        clock: Callable[[], int] = wall_clock_us,
    ) -> None:
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number or None (max), not {speed!r}")
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, not {batch_rows!r}")
        self._symbols = None
        if symbols is not None:
            wanted = [symbols] if isinstance(symbols, str) else list(symbols)
            self._symbols = frozenset(s.strip().upper() for s in wanted)
            if not self._symbols:
                raise ValueError("symbols is empty: the replay would skip every row")
        self._speed = speed
        self._batch_rows = batch_rows
        self._on_progress = on_progress
        self._clock = clock
        self._info = _inspect(Path(path), count_rows=on_progress is not None)

    @property
    def name(self) -> str:
        """The partition name: the file's name."""
        return self._info.path.name

    @property
    def total_rows(self) -> int | None:
        """Data rows in the file, if known (CSV: counted only when on_progress is given)."""
        return self._info.total_rows

    @override
    def list_parts(self) -> list[str]:
        return [self.name]

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: ReplayState | None
    ) -> _ReplayPartition:
        if for_part != self.name:
            raise ValueError(f"step {step_id!r}: no partition {for_part!r} in {self.name!r}")
        return _ReplayPartition(
            self._info,
            resume_state if resume_state is not None else ReplayState(0, 0),
            speed=self._speed,
            symbols=self._symbols,
            batch_rows=self._batch_rows,
            on_progress=self._on_progress,
            clock=self._clock,
        )
