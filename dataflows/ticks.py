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
from bytewax.outputs import Sink

from dataflows.alerts import AlertConfig, MarketOpen, StaleFeed, always_open
from dataflows.analysis import (
    Analysed,
    Analysis,
    CheckpointConfig,
    CheckpointLoader,
)
from dataflows.bars import BarConfig, BarEvent, BarLogic, BarState
from dataflows.config import SessionConfig
from dataflows.metrics import MetricsConfig
from dataflows.parse import ParseConfig, Parsed, TickChunk, arrival_us, parse_batch
from dataflows.records import (
    Alert,
    Bar,
    Clock,
    RawBatch,
    Reject,
    frozen_clock,
    wall_clock_us,
)
from dataflows.sessions import CalendarBook, SessionMark
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
    config: BarConfig, live: bool, sessions: CalendarBook | None, state: BarState | None
) -> BarLogic:
    return BarLogic(config, live, state, sessions)


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
    tick_rows = op.filter_map("tick_rows", chunks, lambda kv: _nonempty(kv[1].ticks))
    op.output("ticks_out", tick_rows, sinks.ticks)

    bar_logic = partial(_bar_logic, config.bars, config.live, calendars)
    events = op.stateful("bars", chunks, bar_logic)
    bars: Stream[tuple[str, Bar | SessionMark]] = op.filter_map_value(
        "closed_bars", events, _bar_or_mark
    )
    late = op.filter_map("late_ticks", events, lambda kv: _late(kv[1]))
    parse_rejects = op.filter_map("parse_rejects", parsed, lambda p: _nonempty(p.rejects))
    op.output("rejects_out", op.merge("all_rejects", parse_rejects, late), sinks.rejects)

    analysis = Analysis(config, config.clock, config.checkpoint_loader)
    analysed = op.map("analysed", op.stateful_map("analysis", bars, analysis), _value)
    bar_rows = op.filter_map("bar_rows", analysed, lambda a: _one(a.bar))
    op.output("bars_out", bar_rows, sinks.bars)
    metric_rows = op.filter_map("metric_rows", analysed, lambda a: _one(a.metrics))
    op.output("metrics_out", metric_rows, sinks.metrics)
    for name, sink in (
        ("forecasts", sinks.forecasts),
        ("scores", sinks.scores),
        ("checkpoints", sinks.checkpoints),
        ("session_events", sinks.session_events),
        ("summaries", sinks.summaries),
    ):
        if sink is not None:
            rows = op.filter_map(f"{name}_rows", analysed, partial(_rows_of, name))
            op.output(f"{name}_out", rows, sink)
    bar_alerts = op.filter_map("bar_alerts", analysed, lambda a: _nonempty(a.alerts))

    feeds = op.key_on("by_source", op.filter("live_batches", parsed, _is_live), _source_of)
    market_open = calendars.market_open if calendars is not None else always_open
    stale_check = StaleCheck(config.alerts, market_open)
    stale = op.stateful_map("stale_feed", feeds, stale_check)
    stale_alerts = op.filter_map("stale_alerts", stale, lambda kv: _nonempty(kv[1]))
    op.output("alerts_out", op.merge("all_alerts", bar_alerts, stale_alerts), sinks.alerts)
    return flow


def _value(kv: tuple[str, Analysed]) -> Analysed:
    return kv[1]


def _rows_of(name: str, analysed: Analysed) -> list[Any] | None:
    return _nonempty(getattr(analysed, name))


def _is_live(parsed: Parsed) -> bool:
    return parsed.subscribed is not None


def _source_of(parsed: Parsed) -> str:
    return parsed.source
