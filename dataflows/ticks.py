"""The tick dataflow: feed -> parse -> ticks, bars, metrics, alerts -> TimescaleDB.

This module only wires steps together; the arithmetic lives beside it in ``parse``,
``bars``, ``metrics``, ``alerts`` and ``analysis``. :func:`build_flow` takes its source,
sinks and configuration; :mod:`sentinel.flows` builds every flow the product runs, e.g.
the live one with ``python -m bytewax.run "sentinel.flows:live_flow()"``. Tests pass
``TestingSource``/``TestingSink``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import FixedPartitionedSink, Sink

from dataflows.alerts import AlertConfig, MarketOpen, StaleFeed, always_open
from dataflows.analysis import (
    Analysed,
    Analysis,
    AnalysisLogic,
    CheckpointConfig,
    CheckpointLoader,
)
from dataflows.bars import BarConfig, BarEvent, BarLogic, BarState
from dataflows.config import SessionConfig
from dataflows.metrics import MetricsConfig
from dataflows.parse import ParseConfig, Parsed, TickChunk, arrival_us, parse_batch
from dataflows.records import (
    BACKFILL_SOURCES,
    Alert,
    Bar,
    Clock,
    RawBatch,
    Reject,
    frozen_clock,
    wall_clock_us,
)
from dataflows.sessions import CalendarBook, SessionMark
from dataflows.snapshots import thaw
from dataflows.trading_day import ExtendedHours
from online_models import ModelConfig


@dataclass(frozen=True)
class FlowConfig:
    parse: ParseConfig = field(default_factory=ParseConfig)
    bars: BarConfig = field(default_factory=BarConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    models: ModelConfig = field(default_factory=ModelConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    sessions: SessionConfig | None = None  # market calendars; None: no sessions at all
    live: bool = True  # watermarks follow the arrival clock; replays follow event time only
    checkpoint_loader: CheckpointLoader | None = None  # restores models on a fresh start

    @property
    def clock(self) -> Clock:
        return wall_clock_us if self.live else frozen_clock


@dataclass(frozen=True)
class Sinks:
    """Where each output goes. Every sink receives lists of rows."""

    ticks: Sink[Any]
    rejects: Sink[Any]
    bars: Sink[Any]
    metrics: Sink[Any]
    alerts: Sink[Any]
    forecasts: Sink[Any]
    scores: Sink[Any]
    checkpoints: Sink[Any]
    session_events: Sink[Any] | None = None  # None: not written
    summaries: Sink[Any] | None = None


class StaleCheck:
    def __init__(self, config: AlertConfig, market_open: MarketOpen):
        self.config = config
        self.market_open = market_open

    def __call__(self, state: StaleFeed | None, parsed: Parsed) -> tuple[StaleFeed, list[Alert]]:
        state = state or StaleFeed(self.config)
        seen = {s: arrival_us(ticks[0].seq) for s, ticks in parsed.by_symbol.items()}
        return state, state.update(parsed.clock_us, parsed.subscribed, seen, self.market_open)


def _bar_logic(
    config: BarConfig, live: bool, sessions: CalendarBook | None, snapshot: bytes | None
) -> BarLogic:
    return BarLogic(config, live, thaw(snapshot, BarState), sessions)


def _bar_or_mark(event: BarEvent) -> Bar | SessionMark | None:
    return event.bar or event.mark


def _chunks(parsed: Parsed) -> list[tuple[str, TickChunk]]:
    """The batch's ticks by symbol; a live batch also reaches every subscribed symbol
    without ticks, with an empty chunk, so its bars close on the arrival clock."""
    chunks = parsed.chunks()
    if parsed.subscribed is not None:
        quiet = TickChunk(parsed.source, parsed.clock_us, [])
        chunks += [(s, quiet) for s in parsed.subscribed if s not in parsed.by_symbol]
    return chunks


def _late(event: BarEvent) -> list[Reject] | None:
    return [event.late] if event.late is not None else None


def _one(row: Any) -> list[Any] | None:
    return [row] if row is not None else None


def _nonempty(rows: list[Any]) -> list[Any] | None:
    return rows or None


def build_flow(source: Source[RawBatch], sinks: Sinks, config: FlowConfig) -> Dataflow:
    """The whole tick pipeline; :mod:`sentinel.flows` builds it for each use."""
    flow = Dataflow("sentinel_ticks")
    raw = op.input("feed", flow, source)
    parsed = op.map("parse", raw, partial(parse_batch, config=config.parse))

    calendars = CalendarBook(config.sessions) if config.sessions is not None else None
    chunks: Stream[tuple[str, TickChunk]] = op.flat_map("by_symbol", parsed, _chunks)
    if calendars is not None:
        chunks = op.map("session_flags", chunks, ExtendedHours(calendars))
    _output("ticks", op.filter_map_value("tick_rows", chunks, _tick_rows), sinks.ticks)

    bar_logic = partial(_bar_logic, config.bars, config.live, calendars)
    events = op.stateful("bars", chunks, bar_logic)
    bars: Stream[tuple[str, Bar | SessionMark]] = op.filter_map_value(
        "closed_bars", events, _bar_or_mark
    )
    late = op.filter_map_value("late_ticks", events, _late)
    parse_rejects = op.filter_map("parse_rejects", parsed, _source_rejects)
    _output("rejects", op.merge("all_rejects", parse_rejects, late), sinks.rejects)

    analysis = Analysis(config, config.clock, config.checkpoint_loader)
    analysed = op.stateful("analysis", bars, partial(AnalysisLogic, analysis))
    # Straight from the bars step: a bar row does not wait for the models of every
    # symbol whose bar closed at the same time.
    _output("bars", op.filter_map_value("bar_rows", events, _closed_bar), sinks.bars)
    _output("metrics", op.filter_map_value("metric_rows", analysed, _metric_row), sinks.metrics)
    for name, sink in (
        ("forecasts", sinks.forecasts),
        ("scores", sinks.scores),
        ("checkpoints", sinks.checkpoints),
        ("session_events", sinks.session_events),
        ("summaries", sinks.summaries),
    ):
        if sink is not None:
            rows = op.filter_map_value(f"{name}_rows", analysed, partial(_rows_of, name))
            _output(name, rows, sink)
    bar_alerts = op.filter_map_value("bar_alerts", analysed, _alerts_of)

    feeds = op.key_on("by_source", op.filter("live_batches", parsed, _is_live), _source_of)
    market_open = calendars.market_open if calendars is not None else always_open
    stale_check = StaleCheck(config.alerts, market_open)
    stale = op.stateful_map("stale_feed", feeds, stale_check)
    stale_alerts = op.filter_map_value("stale_alerts", stale, _nonempty)
    _output("alerts", op.merge("all_alerts", bar_alerts, stale_alerts), sinks.alerts)
    return flow


def _value(kv: tuple[str, Any]) -> Any:
    return kv[1]


def _tick_rows(chunk: TickChunk) -> list[Any] | None:
    return _nonempty(chunk.ticks)


def _source_rejects(parsed: Parsed) -> tuple[str, list[Reject]] | None:
    return (parsed.source, parsed.rejects) if parsed.rejects else None


def _closed_bar(event: BarEvent) -> list[Any] | None:
    return _one(event.bar or event.revised)


def _metric_row(analysed: Analysed) -> list[Any] | None:
    return _one(analysed.metrics)


def _alerts_of(analysed: Analysed) -> list[Alert] | None:
    return _nonempty(analysed.alerts)


def _output(name: str, rows: Stream[tuple[str, list[Any]]], sink: Sink[Any]) -> None:
    """Rows keyed by symbol (or source) into ``sink``: a partitioned sink gets them keyed,
    and so routed to the partition of their key; any other sink gets the rows alone."""
    if isinstance(sink, FixedPartitionedSink):
        op.output(f"{name}_out", rows, sink)
    else:
        op.output(f"{name}_out", op.map(f"{name}_unkeyed", rows, _value), sink)


def _rows_of(name: str, analysed: Analysed) -> list[Any] | None:
    return _nonempty(getattr(analysed, name))


def _is_live(parsed: Parsed) -> bool:
    """A live feed's batch. A backfill's (its own source, now and then, with trades of
    long ago) says nothing of the feed's health: the stale check would take its gaps for
    silences."""
    return parsed.subscribed is not None and parsed.source not in BACKFILL_SOURCES


def _source_of(parsed: Parsed) -> str:
    return parsed.source
