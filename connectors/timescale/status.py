"""Status rows the pipeline publishes (``sink_status``), and row counts for status lines."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg

from connectors.timescale.sinks import SinkStats

__all__ = ["COUNTED_TABLES", "SinkStatusReporter", "row_counts"]

log = logging.getLogger(__name__)

COUNTED_TABLES = ("ticks", "bars", "bar_metrics", "alerts", "ticks_rejected")


class SinkStatusReporter:
    """Publishes each sink partition's counters to ``sink_status``, at most ``every_s``
    seconds behind. ``on_write`` only records the newest stats; one background thread
    writes what changed, so a slow or absent database never holds a sink up. ``final``
    (a partition closing) writes what changed at once, so that a finished run's status
    is complete when the run returns."""

    def __init__(self, dsn: str, every_s: float = 2.0):
        self.dsn = dsn
        self.every_s = every_s
        self._latest: dict[tuple[str, int], SinkStats] = {}
        self._written: dict[tuple[str, int], SinkStats] = {}
        self._lock = threading.Lock()
        # Held while taking what changed and writing it: whoever writes last writes
        # the newest counters, never a stale copy taken before another writer's.
        self._write_lock = threading.Lock()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None

    def __call__(self, stats: SinkStats) -> None:
        with self._lock:
            self._latest[(stats.table, stats.worker_index)] = stats
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sink-status", daemon=True)
                self._thread.start()
        self._changed.set()

    def final(self, stats: SinkStats) -> None:
        """Record a closing partition's last stats and write everything pending now."""
        with self._lock:
            self._latest[(stats.table, stats.worker_index)] = stats
        if not self._write_pending(connect_timeout=3):
            log.warning("final sink status of %s not recorded", stats.table)

    def _run(self) -> None:
        while True:
            self._changed.wait()
            self._changed.clear()
            if not self._write_pending(connect_timeout=5):
                self._changed.set()  # try again after the pause
            time.sleep(self.every_s)

    def _write_pending(self, connect_timeout: int) -> bool:
        with self._write_lock:
            with self._lock:
                dirty = [s for k, s in self._latest.items() if self._written.get(k) != s]
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self.dsn, autocommit=True, connect_timeout=connect_timeout
                    )
                for stats in dirty:
                    self._upsert(self._conn, stats)
                    self._written[(stats.table, stats.worker_index)] = stats
            except psycopg.Error as exc:
                log.debug("sink status not recorded: %s", exc)
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                return False
            return True

    @staticmethod
    def _upsert(conn: psycopg.Connection[Any], stats: SinkStats) -> None:
        conn.execute(
            """INSERT INTO sink_status (table_name, worker, rows_written, rows_skipped,
                   rows_failed, retries, last_error, updated_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, now())
               ON CONFLICT (table_name, worker) DO UPDATE SET
                   rows_written = EXCLUDED.rows_written, rows_skipped = EXCLUDED.rows_skipped,
                   rows_failed = EXCLUDED.rows_failed, retries = EXCLUDED.retries,
                   last_error = EXCLUDED.last_error, updated_at = now()""",
            [
                stats.table,
                stats.worker_index,
                stats.rows_written,
                stats.rows_skipped,
                stats.rows_failed,
                stats.retries,
                stats.last_error,
            ],
        )


def row_counts(dsn: str) -> dict[str, int]:
    """Exact counts; cheap enough for a status line on a development database."""
    counts = {}
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        for table in COUNTED_TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts
