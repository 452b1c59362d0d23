"""Every dataflow the product runs, built from settings: the one place that wires
sources, sinks and configuration together.

- :func:`live_flow`: the feed journal into TimescaleDB (``sentinel dataflow``; also
  ``python -m bytewax.run "sentinel.flows:live_flow()"``);
- :func:`replay_flow`: a CSV or Parquet file into TimescaleDB (``sentinel replay``);
- :func:`bench_flow`: prepared batches into TimescaleDB (``sentinel bench``);
- :func:`prepared_flow`: the same from a file :func:`write_prepared` wrote, for a
  Bytewax cluster of processes (``python -m bytewax.run
  "sentinel.flows:prepared_flow('FILE')" -i I -a ...``);
- :func:`memory_flow`: batches into lists in memory (``sentinel evaluate``).

Connectors take plain arguments; this module reads :class:`Settings` to build them.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from connectors.memory import ListSink, ListSource
from connectors.timescale import SPECS, TimescaleBackgroundSink, TimescaleSink
from connectors.timescale.checkpoints import checkpoint_loader
from connectors.timescale.status import SinkStatusReporter
from connectors.timescale.tickers import calendar_lookup
from dataflows.alerts import AlertConfig
from dataflows.analysis import CheckpointConfig
from dataflows.bars import BarConfig
from dataflows.config import SessionConfig
from dataflows.metrics import MetricsConfig
from dataflows.parse import ParseConfig
from dataflows.records import RawBatch
from dataflows.ticks import FlowConfig, Sinks, build_flow
from online_models import ModelConfig
from sentinel.runtime import tune_gc
from sentinel.settings import Settings, database_url, get_settings, parse_interval

__all__ = [
    "bench_flow",
    "flow_config",
    "live_flow",
    "memory_flow",
    "prepared_flow",
    "replay_flow",
    "timescale_sinks",
    "tune_gc",
    "write_prepared",
]

log = logging.getLogger(__name__)

SINK_TABLES = {
    "ticks": "ticks",
    "rejects": "ticks_rejected",
    "bars": "bars",
    "metrics": "bar_metrics",
    "alerts": "alerts",
    "forecasts": "forecasts",
    "scores": "model_scores",
    "checkpoints": "model_checkpoints",
    "session_events": "session_events",
    "summaries": "daily_summary",
}
"""The table each of the flow's outputs goes to."""

# A file's own clock is its batches' median time, and history may span decades.
_REPLAY_WINDOW_S = 10 * 365.25 * 86_400


def flow_config(
    settings: Settings,
    *,
    live: bool = True,
    bar_seconds: int | None = None,
    dsn: str | None = None,
) -> FlowConfig:
    """The flow's configuration from ``settings``; with ``dsn``, symbols' calendars are
    read from its ``tickers`` table."""
    s = settings
    return FlowConfig(
        parse=ParseConfig(max_future_s=s.max_future_s, max_past_s=s.max_past_s),
        bars=BarConfig(
            bar_seconds or parse_interval(s.bar),
            s.late_allowance_s,
            s.price_band,
            conditions=s.conditions,
            revision_window_s=s.revision_window_s,
        ),
        metrics=MetricsConfig(
            window=s.metrics_window,
            ewma_lambda=s.ewma_lambda,
            risk_free_rate=s.risk_free_rate,
        ),
        alerts=AlertConfig(
            spike_ratio=s.spike_ratio,
            rearm_ratio=s.spike_rearm_ratio,
            baseline_bars=s.spike_baseline_bars,
            min_history=s.spike_min_history,
            jump_sigmas=s.jump_sigmas,
            stale_after_s=s.stale_after_s,
        ),
        models=replace(ModelConfig(), horizons=s.model_horizons),
        checkpoints=CheckpointConfig(s.checkpoint_every_s, s.checkpoint_clock),
        sessions=SessionConfig(
            default=s.calendar,
            override=s.calendar_override,
            extended_in_bars=s.extended_hours_in_bars,
            lookup=calendar_lookup(dsn) if dsn else None,
        ),
        live=live,
    )


def timescale_sinks(
    dsn: str,
    batch_rows: int = 50_000,
    report_status: bool = True,
    *,
    partitions: int = 1,
    background: bool = True,
    backoff_max_s: float = 5.0,
) -> Sinks:
    """A sink per table. ``background``: each partition writes on its own thread while
    the flow goes on (:class:`TimescaleBackgroundSink`; ``partitions`` of them per table,
    say one per worker, routed by symbol); otherwise each batch is written before the
    flow goes on (:class:`TimescaleSink`)."""
    reporter = SinkStatusReporter(dsn) if report_status else None

    def sink(table: str) -> TimescaleSink | TimescaleBackgroundSink:
        # Retries at least every backoff_max_s: back within seconds of the database.
        rows = TimescaleSink(
            dsn,
            SPECS[table],
            batch_rows=batch_rows,
            backoff_max_s=backoff_max_s,
            on_write=reporter,
            on_close=reporter.final if reporter is not None else None,
        )
        return TimescaleBackgroundSink(rows, partitions=partitions) if background else rows

    return Sinks(**{name: sink(table) for name, table in SINK_TABLES.items()})


# Python's default (collect the young generation every 700 allocations) made the
# collector half of the parse step's time: a flow allocates a tuple per tick, and
# every older collection walks the hundreds of thousands of objects that numpy, pandas,
# scipy and River leave at import. The flow's own objects hold no cycles worth hunting
# often. Measured on `sentinel bench` ticks: parse 4.9 us/tick with the default, 2.5
# with the collector off.
def live_flow(settings: Settings | None = None, partitions: int | None = None) -> Dataflow:
    """The live pipeline: the feed journal (written by ``sentinel feed``) into TimescaleDB.
    ``partitions``: of each table's sink, one per worker of the whole cluster (default:
    the workers of one process)."""
    from connectors.journal import JournalSource

    settings = settings or get_settings()
    if not logging.getLogger().handlers:  # `python -m bytewax.run` configures none
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    dsn = database_url(settings)
    config = replace(flow_config(settings, dsn=dsn), checkpoint_loader=checkpoint_loader(dsn))
    sinks = timescale_sinks(
        dsn,
        settings.sink_batch_rows,
        partitions=partitions or settings.workers,
        backoff_max_s=settings.sink_backoff_max_s,
    )
    tune_gc()
    return build_flow(JournalSource(settings.journal_file), sinks, config)


def replay_flow(
    settings: Settings,
    dsn: str,
    file: Path,
    *,
    bar_seconds: int,
    speed: float | None = None,
    symbols: Sequence[str] = (),
    store_ticks: bool = True,
    on_progress: Callable[[int, int | None], None] | None = None,
    partitions: int = 1,
) -> Dataflow:
    """A file into TimescaleDB, as fast as it reads (``speed`` None) or paced;
    ``partitions`` of each table's sink (one per worker)."""
    from connectors.discard import DiscardSink
    from connectors.replay import ReplaySource

    config = flow_config(settings, live=False, bar_seconds=bar_seconds, dsn=dsn)
    window = ParseConfig(max_future_s=_REPLAY_WINDOW_S, max_past_s=_REPLAY_WINDOW_S)
    config = replace(config, parse=window)
    source = ReplaySource(
        file, speed=speed, symbols=[s.upper() for s in symbols] or None, on_progress=on_progress
    )
    sinks = timescale_sinks(dsn, settings.sink_batch_rows, partitions=partitions)
    if not store_ticks:
        sinks = replace(sinks, ticks=DiscardSink())
    return build_flow(source, sinks, config)


def bench_flow(
    batches: Sequence[RawBatch], dsn: str, config: FlowConfig, partitions: int = 1
) -> Dataflow:
    """Prepared batches into TimescaleDB, every table, no status reporting;
    ``partitions`` (one per worker) of the source (see :class:`ListSource`) and of each
    table's sink."""
    sinks = timescale_sinks(dsn, report_status=False, partitions=partitions)
    return build_flow(ListSource(batches, partitions), sinks, config)


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepared_flow` runs: batches, a flow configuration, a database."""

    batches: Sequence[RawBatch]
    dsn: str
    config: FlowConfig
    partitions: int = 1


def write_prepared(
    path: Path, batches: Sequence[RawBatch], dsn: str, config: FlowConfig, partitions: int = 1
) -> Path:
    """Pickle a :func:`bench_flow` run to ``path``, for every process of a cluster to
    load the same one; ``partitions``: the cluster's workers."""
    prepared = Prepared(batches, dsn, config, partitions)
    path.write_bytes(pickle.dumps(prepared, pickle.HIGHEST_PROTOCOL))
    return path


def prepared_flow(path: str) -> Dataflow:
    """:func:`bench_flow` over the run :func:`write_prepared` stored at ``path``, for
    each process of a cluster: each reads its partitions of the source, and the flow's
    exchange by symbol spreads the work over every worker of every process."""
    prepared: Prepared = pickle.loads(Path(path).read_bytes())
    tune_gc()  # a process of its own, started to run this flow
    return bench_flow(prepared.batches, prepared.dsn, prepared.config, prepared.partitions)


def memory_flow(batches: Sequence[RawBatch], config: FlowConfig) -> tuple[Dataflow, Sinks]:
    """Prepared batches into lists in memory: each sink's ``rows`` once the flow has run."""
    sinks = Sinks(**{name: ListSink() for name in Sinks.__dataclass_fields__})
    return build_flow(ListSource(batches), sinks, config), sinks


def rows_of(sinks: Sinks) -> dict[str, list[Any]]:
    """What a :func:`memory_flow` wrote, by sink name."""
    return {name: list(getattr(sinks, name).rows) for name in Sinks.__dataclass_fields__}
