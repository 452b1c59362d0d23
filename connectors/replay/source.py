"""The replay source: one partition per file, resumable from a row number.

:class:`ReplaySource` builds a :class:`_ReplayPartition`, which reads the file in chunks
(:mod:`connectors.replay.formats`), parses each chunk's times once, paces the rows when a
speed is set (:mod:`connectors.replay.pacing`), and emits them as
:class:`~dataflows.records.RowBlock` payloads of :class:`~dataflows.records.RawBatch`
items. A row's ``seq`` is its 0-based data row number in the file (the header is not a
row; for a directory, its position in the merged stream), so a re-delivered row carries the
same ``seq`` as the first time.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

from connectors.replay.formats import FileInfo, RawChunk, inspect_file, read_chunks
from connectors.replay.pacing import Pacer, pace_times
from dataflows.records import RawBatch, RowBlock, wall_clock_us
from dataflows.times import BoolArray, IntArray, to_epoch_us

__all__ = ["Progress", "ReplaySource", "ReplayState"]

Progress = Callable[[int, int | None], None]

# With a symbol filter most chunks may hold nothing to emit: read at most this many per
# call so that the worker is never blocked for long.
_MAX_CHUNKS_PER_CALL = 8

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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
    def of(cls, raw: RawChunk) -> _Chunk:
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


class _ReplayPartition(StatefulSourcePartition[RawBatch, ReplayState]):
    def __init__(
        self,
        info: FileInfo,
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
        self._pacer = None if speed is None else Pacer(speed, clock)
        self._batch_rows = batch_rows
        self._on_progress = on_progress
        self._reader = read_chunks(info, state.next_row, batch_rows, symbols)
        self._next_row = state.next_row
        self._clock_us = state.clock_us
        self._chunks: deque[_Chunk] = deque()
        self._pos = 0  # the next row of self._chunks[0] to emit
        self._eof = False
        self._finished = False
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
        needed = 1 if self._pacer is None else 2
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
        if self._pacer is not None:
            due, self._wake_us = self._pacer.release(self._pace(chunk)[lo:hi])
            hi = lo + due
        if hi == lo:
            return None
        self._pos = hi
        self._next_row = int(chunk.seq[hi - 1]) + 1
        return self._batch(chunk, lo, hi)

    def _pace(self, chunk: _Chunk) -> IntArray:
        """The chunk's pace times, worked out once, looking ahead into the next chunk."""
        if chunk.pace is None:
            ahead = self._chunks[1] if len(self._chunks) > 1 else None
            tail = np.empty(0, dtype=np.int64) if ahead is None else ahead.time_us[ahead.time_ok]
            chunk.pace = pace_times(chunk.time_us, chunk.time_ok, tail)
        return chunk.pace

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
            block = RowBlock(
                first,
                chunk.time[i:j],
                chunk.symbol[i:j],
                chunk.price[i:j],
                size,
                # Lists, not arrays: batches compare with == (a resumed replay's do).
                chunk.time_us[i:j].tolist(),
                chunk.time_ok[i:j].tolist(),
            )
            messages.append((first, block))
        return RawBatch(source=self._source, clock_us=self._clock_us, messages=messages)

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            if self._on_progress is not None:
                self._on_progress(self._next_row, self._next_row)


# --- The source ---------------------------------------------------------------------


class ReplaySource(FixedPartitionedSource[RawBatch, ReplayState]):
    """Replays one CSV or Parquet file of trades, or a directory of Parquet files (the
    end-of-day archive) merged by time; one partition, named after the file.

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
        ``time``, ``symbol``, ``price`` and optionally ``size``; or a directory of such
        Parquet files, each in time order, replayed as one stream in time order (the
        archive written by :mod:`connectors.archive`, or one ``date=...`` directory of it;
        see :mod:`connectors.replay.formats`).
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
        self._info = inspect_file(Path(path), count_rows=on_progress is not None)

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
