"""What a replay file holds over time, learned in one cheap pass before the replay starts.

A replay sizes the database's chunks for what it is about to write (see
:mod:`connectors.timescale.chunks`), so it needs the file's time span, its rows per
symbol and the days that have rows. :func:`profile_file` reads only the ``time`` and
``symbol`` columns, with pyarrow (Parquet columns, or pyarrow's multithreaded CSV reader),
and parses times as the dataflow does (:func:`dataflows.times.to_epoch_us`): about a
million rows a second here, a few percent of the replay's own time. Rows it cannot read
(a malformed CSV line, a time that does not parse) are left out: the profile is an
estimate, and the replay itself still sees and rejects them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from connectors.replay.formats import FileInfo
from dataflows.times import to_epoch_us

__all__ = ["FileProfile", "profile_file"]

DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class FileProfile:
    """The rows of a file (of the symbols replayed) that have a valid time."""

    first_us: int
    last_us: int
    symbol_rows: dict[str, int]  # symbol (trimmed, upper case) -> rows
    days: frozenset[int]  # UTC days since the epoch that have rows

    @property
    def rows(self) -> int:
        return sum(self.symbol_rows.values())


def profile_file(info: FileInfo, symbols: frozenset[str] | None = None) -> FileProfile | None:
    """The profile of ``info``'s rows (only ``symbols``' if given, compared trimmed and
    upper case, as the replay does); None when no row has a valid time. Read errors raise
    ``OSError`` or ``pyarrow.ArrowException``."""
    wanted = None if symbols is None else pa.array(sorted(symbols), pa.string())
    first, last = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    counts: Counter[str] = Counter()
    days: set[int] = set()
    for times, names in _columns(info):
        names = pc.utf8_upper(pc.utf8_trim_whitespace(names.cast(pa.string())))
        if wanted is not None:
            keep = pc.fill_null(pc.is_in(names, value_set=wanted), False)
            times, names = times.filter(keep), names.filter(keep)
        us, ok = to_epoch_us(times)
        if not ok.any():
            continue
        us = us[ok]
        first, last = min(first, int(us.min())), max(last, int(us.max()))
        days.update(np.unique(us // DAY_US).tolist())
        kept = names.filter(pa.array(ok))
        for entry in pc.value_counts(kept).to_pylist():
            counts[entry["values"] or ""] += entry["counts"]
    if not counts:
        return None
    return FileProfile(first, last, dict(counts), frozenset(days))


def _columns(info: FileInfo) -> Iterator[tuple[pa.Array, pa.Array]]:
    """``(time, symbol)`` arrays of the file, a batch at a time."""
    if info.format == "csv":
        yield from _csv_columns(info)
    elif info.format == "parquet":
        yield from _parquet_columns(
            info.path, str(info.columns["time"]), str(info.columns["symbol"])
        )
    else:
        for part in info.parts:
            yield from _parquet_columns(part.path, part.columns["time"], part.columns["symbol"])


def _csv_columns(info: FileInfo) -> Iterator[tuple[pa.Array, pa.Array]]:
    # Fields are named by position: a header may repeat a name we do not read.
    names = [f"f{i}" for i in range(info.width)]
    time, symbol = (f"f{info.columns[role]}" for role in ("time", "symbol"))
    reader = pcsv.open_csv(
        info.path,  # a .gz name is decompressed on the fly
        read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pcsv.ParseOptions(invalid_row_handler=lambda _row: "skip"),
        convert_options=pcsv.ConvertOptions(
            include_columns=[time, symbol],
            column_types={time: pa.string(), symbol: pa.string()},
            strings_can_be_null=False,
        ),
    )
    with reader:
        for batch in reader:
            yield batch.column(time), batch.column(symbol)


def _parquet_columns(path: Path, time: str, symbol: str) -> Iterator[tuple[pa.Array, pa.Array]]:
    with pq.ParquetFile(path) as pf:
        for batch in pf.iter_batches(columns=list(dict.fromkeys([time, symbol]))):
            yield batch.column(time), batch.column(symbol)
