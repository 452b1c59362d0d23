"""Production wiring: settings -> the dataflow's configuration, source and sinks.

Connectors take plain arguments; this is the one place that reads :class:`Settings`
to build them, for ``python -m bytewax.run "dataflows.ticks:build_flow()"`` and for the
CLI.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg

from connectors.timescale import (
    ALERTS,
    BAR_METRICS,
    BARS,
    FORECASTS,
    MODEL_CHECKPOINTS,
    MODEL_SCORES,
    TICKS,
    TICKS_REJECTED,
    SinkStats,
    TableSpec,
    TimescaleSink,
)
from dataflows.alerts import AlertConfig
from dataflows.analysis import CheckpointConfig
from dataflows.bars import BarConfig
from dataflows.metrics import MetricsConfig
from dataflows.parse import ParseConfig
from dataflows.ticks import FlowConfig, Sinks
from sentinel.settings import Settings, database_url, get_settings, parse_interval

log = logging.getLogger(__name__)


def flow_config(
    settings: Settings, *, live: bool = True, bar_seconds: int | None = None
) -> FlowConfig:
    s = settings
    return FlowConfig(
        parse=ParseConfig(max_future_s=s.max_future_s, max_past_s=s.max_past_s),
        bars=BarConfig(bar_seconds or parse_interval(s.bar), s.late_allowance_s, s.price_band),
        metrics=MetricsConfig(
            window=s.metrics_window,
            ewma_lambda=s.ewma_lambda,
            session_seconds=s.session_hours * 3600,
            trading_days=s.trading_days,
            risk_free_rate=s.risk_free_rate,
        ),
        alerts=AlertConfig(
            spike_ratio=s.spike_ratio,
            rearm_ratio=s.spike_rearm_ratio,
            baseline_bars=s.spike_baseline_bars,
            min_history=s.spike_min_history,
            jump_sigmas=s.jump_sigmas,
            stale_after_s=s.stale_after_s,
            stale_calendar=s.stale_calendar,
        ),
        checkpoints=CheckpointConfig(s.checkpoint_every_s, s.checkpoint_clock),
        live=live,
    )


class SinkStatusReporter:
    """Publishes each sink partition's counters to ``sink_status``, at most ``every_s``
    seconds behind. ``on_write`` only records the newest stats; one background thread
    writes what changed, so a slow or absent database never holds a sink up."""

    def __init__(self, dsn: str, every_s: float = 2.0):
        self.dsn = dsn
        self.every_s = every_s
        self._latest: dict[tuple[str, int], SinkStats] = {}
        self._written: dict[tuple[str, int], SinkStats] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, stats: SinkStats) -> None:
        with self._lock:
            self._latest[(stats.table, stats.worker_index)] = stats
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sink-status", daemon=True)
                self._thread.start()
        self._changed.set()

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while True:
            self._changed.wait()
            self._changed.clear()
            with self._lock:
                dirty = [s for k, s in self._latest.items() if self._written.get(k) != s]
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                for stats in dirty:
                    self._upsert(conn, stats)
                    self._written[(stats.table, stats.worker_index)] = stats
            except psycopg.Error as exc:
                log.debug("sink status not recorded: %s", exc)
                conn = None
                self._changed.set()  # try again after the pause
            time.sleep(self.every_s)

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
            [stats.table, stats.worker_index, stats.rows_written, stats.rows_skipped,
             stats.rows_failed, stats.retries, stats.last_error],
        )  # fmt: skip


def timescale_sinks(dsn: str, batch_rows: int = 50_000, report_status: bool = True) -> Sinks:
    reporter = SinkStatusReporter(dsn) if report_status else None

    def sink(spec: TableSpec) -> TimescaleSink:
        # Retries at least every 5 s: back within seconds of the database.
        return TimescaleSink(dsn, spec, batch_rows=batch_rows, backoff_max_s=5.0, on_write=reporter)

    return Sinks(
        ticks=sink(TICKS),
        rejects=sink(TICKS_REJECTED),
        bars=sink(BARS),
        metrics=sink(BAR_METRICS),
        alerts=sink(ALERTS),
        forecasts=sink(FORECASTS),
        scores=sink(MODEL_SCORES),
        checkpoints=sink(MODEL_CHECKPOINTS),
    )


def checkpoint_loader(dsn: str) -> Callable[[str], list[tuple[Any, ...]]]:
    """Reads a symbol's newest `model_checkpoints` rows (one per model, same time)."""

    def load(symbol: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            rows = conn.execute(
                """SELECT (extract(epoch FROM time) * 1e6)::bigint, symbol, model, version,
                          bars_seen, state, metrics
                   FROM model_checkpoints
                   WHERE symbol = %s
                     AND time = (SELECT max(time) FROM model_checkpoints WHERE symbol = %s)""",
                [symbol, symbol],
            ).fetchall()
        return [tuple(r) for r in rows]

    return load


def default_wiring() -> tuple[Any, Sinks, FlowConfig]:
    """The live pipeline: the feed journal (written by ``sentinel feed``) into TimescaleDB."""
    from connectors.journal import JournalSource

    settings = get_settings()
    if not logging.getLogger().handlers:  # `python -m bytewax.run` configures none
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    dsn = database_url(settings)
    source = JournalSource(settings.journal_file)
    config = replace(flow_config(settings), checkpoint_loader=checkpoint_loader(dsn))
    return source, timescale_sinks(dsn, settings.sink_batch_rows), config


def seed_tickers(dsn: str, symbols: list[str]) -> int:
    """Put ``symbols`` in an empty `tickers` table; returns how many were added."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM tickers").fetchone()
        if row and row[0]:
            return 0
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO tickers (symbol) VALUES (%s) ON CONFLICT DO NOTHING",
                [(s,) for s in symbols],
            )
        return len(symbols)
