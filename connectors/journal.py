"""The feed journal: a durable, append-only log between the live feed and the dataflow.

A live websocket cannot rewind, so the feed process (``sentinel feed``) appends every
message it receives, stamped with its arrival time, to this log before anything else
happens to it, the way kdb+/tick's tickerplant logs each update before publishing it.
The dataflow reads the log through :class:`JournalSource`, whose position is Bytewax
recovery state: after a crash or restart the dataflow resumes from its last snapshot and
reads the same entries again, and the idempotent sinks store each row once.

Why SQLite (the standard library's ``sqlite3``) rather than segment files of our own:
in WAL mode a commit is atomic and survives a killed process (``synchronous=FULL``: an
OS crash or power loss too), one writer and any number of readers in other processes
never block each other, a reader sees a consistent snapshot, and the offset of an entry
is its ``INTEGER PRIMARY KEY AUTOINCREMENT`` row id, never reused even after pruning.
At scale a Kafka-compatible topic takes this place (see the README, "Reliability").

An entry is ``(pos, stamp_us, kind, payload)``:

- ``MESSAGE``: one websocket text; ``stamp_us`` is its ``seq``, the arrival time in
  microseconds, bumped to be unique and increasing (``dataflows.parse.arrival_us``);
- ``HEARTBEAT``: no payload; the feed's clock went on to ``stamp_us`` with nothing
  received, so time (watermarks, stale-feed checks) advances while the market is quiet;
- ``SUBSCRIBED``: the symbols the feed is subscribed to from here on, as a JSON list;
- ``BACKFILL``: trades fetched after a reconnect to fill its gap
  (:mod:`connectors.finnhub_rest`); ``stamp_us`` is a seq like a ``MESSAGE``'s (the fetch
  time, from the same sequence), the payload JSON ``{"source": "finnhub_tick" |
  "finnhub_candle", "message": "<a Finnhub trade message>"}``. The source emits each run
  of one source's entries as a batch of its own with that ``source``.

Retention: :meth:`Journal.prune` removes entries older than the retention period only
once every reader has recorded a later position, so an outage of the database (which
holds the dataflow back) never costs entries that were not yet processed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, NamedTuple

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

from dataflows.records import US, RawBatch, RowBlock, wall_clock_us

__all__ = [
    "BACKFILL",
    "HEARTBEAT",
    "MESSAGE",
    "SUBSCRIBED",
    "Entry",
    "Journal",
    "JournalBusyError",
    "JournalPosition",
    "JournalSource",
    "backfill_payload",
]

log = logging.getLogger(__name__)

MESSAGE, HEARTBEAT, SUBSCRIBED, BACKFILL = 0, 1, 2, 3
SOURCE = "finnhub"  # the `source` of the batches (and of `ticks_rejected` rows)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    stamp_us INTEGER,
    kind INTEGER NOT NULL,
    payload BLOB
);
CREATE TABLE IF NOT EXISTS readers (
    name TEXT PRIMARY KEY,
    pos INTEGER NOT NULL,
    updated_us INTEGER NOT NULL
);
"""


class JournalBusyError(RuntimeError):
    """Another process is already writing this journal."""


class Entry(NamedTuple):
    pos: int
    stamp_us: int | None
    kind: int
    payload: bytes | None


def _encode(text: str) -> bytes:
    # A websocket text is valid UTF-8, but a binary frame decoded with errors="replace"
    # or a test's string may hold lone surrogates: keep them, byte for byte.
    return text.encode("utf-8", "surrogatepass")


def decode_text(payload: bytes | None) -> str:
    return payload.decode("utf-8", "surrogatepass") if payload is not None else ""


def backfill_payload(source: str, message: str) -> str:
    """A ``BACKFILL`` entry's payload."""
    return json.dumps({"source": source, "message": message}, separators=(",", ":"))


def _backfilled(payload: bytes | None) -> tuple[str, str]:
    """A ``BACKFILL`` payload's ``(source, message)``; one that cannot be read goes on
    as a live message of its own text, for the parser to refuse with a reason."""
    text = decode_text(payload)
    try:
        doc = json.loads(text)
        return str(doc["source"]), str(doc["message"])
    except (ValueError, TypeError, KeyError):
        return SOURCE, text


class Journal:
    """One journal file. Open it once per process and thread; ``close()`` when done."""

    def __init__(self, path: Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock: IO[str] | None = None

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer ---------------------------------------------------------------------

    def lock_for_writing(self) -> None:
        """Become the only writer, or raise :class:`JournalBusyError`."""
        lock = (self.path.parent / f"{self.path.name}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise JournalBusyError(f"{self.path} is being written by another feed") from None
        self._lock = lock

    def append(self, entries: Sequence[tuple[int | None, int, bytes | str | None]]) -> None:
        """Append ``(stamp_us, kind, payload)`` entries in one durable transaction."""
        rows = [(s, k, _encode(p) if isinstance(p, str) else p) for s, k, p in entries]
        with self._transaction():
            self._db.executemany(
                "INSERT INTO entries (stamp_us, kind, payload) VALUES (?, ?, ?)", rows
            )

    def last_stamp_us(self) -> int:
        """The newest stamp (0 when empty): a restarted feed continues after it."""
        row = self._db.execute("SELECT max(stamp_us) FROM entries").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def recent_messages(self, within_us: int) -> list[tuple[int, str]]:
        """The ``MESSAGE`` entries stamped at most ``within_us`` before the newest one, as
        ``(stamp_us, text)`` in order (none if there is none): where a restarted feed's
        gap begins, and the live trades at its edge. Read from the end (stamps grow with
        positions), so it costs what it returns, not the journal's size."""
        newest: int | None = None
        out: list[tuple[int, str]] = []
        before = None
        while True:
            rows = self._db.execute(
                "SELECT pos, stamp_us, payload FROM entries WHERE kind = ? AND pos < ?"
                " ORDER BY pos DESC LIMIT 1000",
                [MESSAGE, before if before is not None else 2**62],
            ).fetchall()
            for pos, stamp, payload in rows:
                newest = stamp if newest is None else newest
                if stamp < newest - within_us:
                    return out[::-1]
                out.append((stamp, decode_text(payload)))
                before = pos
            if len(rows) < 1000:
                return out[::-1]

    def prune(self, older_than_us: int) -> int:
        """Delete entries stamped before ``older_than_us`` that every reader has passed;
        returns how many went."""
        with self._transaction():
            row = self._db.execute("SELECT min(pos) FROM readers").fetchone()
            read_to = row[0] if row and row[0] is not None else None
            if read_to is None:
                return 0  # nobody has read anything yet: keep it all
            # Subscription changes stay: a reader starting anywhere needs the one before.
            cur = self._db.execute(
                "DELETE FROM entries WHERE pos <= ? AND stamp_us < ? AND kind != ?",
                [read_to, older_than_us, SUBSCRIBED],
            )
            return cur.rowcount

    # -- readers ------------------------------------------------------------------------

    def read(self, after_pos: int, limit: int) -> list[Entry]:
        cur = self._db.execute(
            "SELECT pos, stamp_us, kind, payload FROM entries WHERE pos > ? ORDER BY pos LIMIT ?",
            [after_pos, limit],
        )
        return [Entry(*row) for row in cur.fetchall()]

    def record_position(self, reader: str, pos: int) -> None:
        """Note how far ``reader`` has read (pruning keeps what it has not)."""
        with self._transaction():
            self._db.execute(
                """INSERT INTO readers (name, pos, updated_us) VALUES (?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET pos = excluded.pos,
                       updated_us = excluded.updated_us""",
                [reader, pos, wall_clock_us()],
            )

    def position(self, reader: str) -> int | None:
        row = self._db.execute("SELECT pos FROM readers WHERE name = ?", [reader]).fetchone()
        return int(row[0]) if row else None

    def first_pos(self) -> int:
        row = self._db.execute("SELECT min(pos) FROM entries").fetchone()
        return int(row[0]) - 1 if row and row[0] is not None else 0

    def subscriptions_before(self, pos: int) -> tuple[str, ...] | None:
        """The newest ``SUBSCRIBED`` set at or before ``pos``."""
        row = self._db.execute(
            "SELECT payload FROM entries WHERE kind = ? AND pos <= ? ORDER BY pos DESC LIMIT 1",
            [SUBSCRIBED, pos],
        ).fetchone()
        return _symbols(row[0]) if row else None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _symbols(payload: bytes | None) -> tuple[str, ...]:
    return tuple(sorted(json.loads(decode_text(payload))))


# -- the dataflow's source ----------------------------------------------------------------


@dataclass(frozen=True)
class JournalPosition:
    """Recovery state: the last entry read, the clock and the subscriptions there."""

    pos: int
    clock_us: int
    subscribed: tuple[str, ...] | None


class _JournalPartition(StatefulSourcePartition[RawBatch, JournalPosition]):
    def __init__(
        self,
        journal: Journal,
        reader: str,
        start: JournalPosition,
        max_batch: int,
        poll_us: int,
        clock: Callable[[], int],
    ) -> None:
        self._journal = journal
        self._reader = reader
        self._pos = start.pos
        self._clock_us = start.clock_us
        self._subscribed = start.subscribed
        self._max_batch = max_batch
        self._poll_us = poll_us
        self._clock = clock
        self._caught_up = False

    @override
    def next_batch(self) -> list[RawBatch]:
        entries = self._journal.read(self._pos, self._max_batch)
        self._caught_up = len(entries) < self._max_batch
        if not entries:
            return []
        batches: list[RawBatch] = []
        messages: list[tuple[int, str | RowBlock]] = []
        source = SOURCE
        start_clock = self._clock_us
        for e in entries:
            if e.kind == SUBSCRIBED:
                # What came before the change is judged by the old subscriptions.
                if messages or self._clock_us > start_clock:
                    batches.append(self._batch(source if messages else SOURCE, messages))
                    messages, start_clock = [], self._clock_us
                self._subscribed = _symbols(e.payload)
                continue
            entry_source, text = SOURCE, None
            if e.kind == MESSAGE:
                text = decode_text(e.payload)
            elif e.kind == BACKFILL:
                entry_source, text = _backfilled(e.payload)
            if text is not None and entry_source != source:
                # A run of one source is a batch of its own: its ticks are marked with it.
                if messages:
                    batches.append(self._batch(source, messages))
                    messages, start_clock = [], self._clock_us
                source = entry_source
            if e.stamp_us is not None and e.stamp_us > self._clock_us:
                self._clock_us = e.stamp_us
            if text is not None and e.stamp_us is not None:
                messages.append((e.stamp_us, text))
        self._pos = entries[-1].pos
        if messages or self._clock_us > start_clock or not batches:
            batches.append(self._batch(source if messages else SOURCE, messages))
        return batches

    def _batch(self, source: str, messages: list[tuple[int, str | RowBlock]]) -> RawBatch:
        return RawBatch(source, self._clock_us, messages, self._subscribed)

    @override
    def next_awake(self) -> datetime | None:
        if not self._caught_up:
            return None
        return datetime.fromtimestamp((self._clock() + self._poll_us) / US, tz=timezone.utc)

    @override
    def snapshot(self) -> JournalPosition:
        with contextlib.suppress(sqlite3.Error):  # only a pruning hint: never fatal
            self._journal.record_position(self._reader, self._pos)
        return JournalPosition(self._pos, self._clock_us, self._subscribed)

    @override
    def close(self) -> None:
        self._journal.close()


class JournalSource(FixedPartitionedSource[RawBatch, JournalPosition]):
    """The feed journal at ``path`` as :class:`~dataflows.records.RawBatch` records
    (``source="finnhub"``; backfilled trades under their own source, one of
    :data:`~dataflows.records.BACKFILL_SOURCES`), one partition named ``"journal"``.

    Delivery guarantee: exactly-once into idempotent sinks. The position is recovery
    state, so a resumed dataflow reads again what followed its last snapshot. Without
    recovery state it starts where ``reader`` last recorded a snapshot (else at the
    journal's first entry).

    Each batch's ``clock_us`` is the arrival clock: the newest stamp read so far, so a
    backlog (after an outage or a restart) is processed at the times it arrived, never
    as late. ``subscribed`` is the feed's subscription set at those entries. A batch
    holds at most ``max_batch`` entries; when caught up the journal is polled every
    ``poll_s``.
    """

    def __init__(
        self,
        path: Path,
        *,
        reader: str = "dataflow",
        max_batch: int = 5000,
        poll_s: float = 0.02,
        clock: Callable[[], int] = wall_clock_us,
    ) -> None:
        self.path = Path(path)
        self.reader = reader
        self.max_batch = max_batch
        self.poll_s = poll_s
        self.clock = clock

    @override
    def list_parts(self) -> list[str]:
        return ["journal"]

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: JournalPosition | None
    ) -> _JournalPartition:
        journal = Journal(self.path)
        start = resume_state if resume_state is not None else self._fresh_start(journal)
        log.info("reading the feed journal %s after entry %d", self.path, start.pos)
        return _JournalPartition(
            journal, self.reader, start, self.max_batch, round(self.poll_s * US), self.clock
        )

    def _fresh_start(self, journal: Journal) -> JournalPosition:
        recorded = journal.position(self.reader)
        pos = recorded if recorded is not None else journal.first_pos()
        return JournalPosition(pos, 0, journal.subscriptions_before(pos))
