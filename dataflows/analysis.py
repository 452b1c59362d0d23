"""Per symbol, per bar: metrics, online models (forecast, score, learn), alerts, checkpoints.

Everything a symbol needs after its bars lives in one picklable :class:`SymbolState`, so
Bytewax recovery covers it. Independently of Bytewax, every ``checkpoint_every_s`` (of
event time or of the wall clock) the state is written to ``model_checkpoints``: the
models one row each (see :mod:`online_models.checkpoint`), plus a ``_pipeline`` row with
the metrics and alert state. On a fresh start, the first bar of a symbol restores the
newest checkpoint, so forecasts continue where they stopped; a checkpoint that cannot be
read is reported and skipped, never fatal.

With calendars, the step also receives each session's open and close marks, in order
with the bars: it writes ``session_events`` rows, keeps the day's figures, annualizes
with the session's length and the calendar's sessions per year, and writes the
``daily_summary`` row at the close (:mod:`dataflows.trading_day`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from bytewax.operators import StatefulLogic
from typing_extensions import override

from dataflows.alerts import AlertConfig, VolatilityAlerts
from dataflows.config import CheckpointConfig  # re-exported: the step and its configuration
from dataflows.metrics import MetricsConfig, MetricsState
from dataflows.records import (
    US,
    Alert,
    Bar,
    Clock,
    DailySummary,
    Forecast,
    Metrics,
    ModelCheckpoint,
    ModelScore,
    SessionEvent,
)
from dataflows.sessions import Session, SessionMark, market_calendar
from dataflows.snapshots import freeze, thaw
from dataflows.trading_day import DAILY_BAR_SECONDS, TradingDay
from online_models import RETURN_MODELS, VOLATILITY_MODELS, ModelConfig, StepResult, SymbolModels
from online_models.checkpoint import PIPELINE_MODEL as PIPELINE_ROW
from online_models.checkpoint import CheckpointError, decode, encode

log = logging.getLogger(__name__)

CheckpointLoader = Callable[[str], list[tuple[Any, ...]]]
"""Returns a symbol's newest checkpoint rows (all models at the newest time), each with
the fields of :class:`~dataflows.records.ModelCheckpoint` in their order."""


class AnalysisConfig(Protocol):
    """What the analysis step reads of the flow's configuration
    (:class:`~dataflows.ticks.FlowConfig` holds it, with the defaults)."""

    @property
    def metrics(self) -> MetricsConfig: ...
    @property
    def alerts(self) -> AlertConfig: ...
    @property
    def models(self) -> ModelConfig: ...
    @property
    def checkpoints(self) -> CheckpointConfig: ...


@dataclass
class SymbolState:
    metrics: MetricsState
    alerts: VolatilityAlerts
    models: SymbolModels
    last_checkpoint_us: int | None = None
    session: Session | None = None  # the latest session opened (it annualizes)
    day: TradingDay | None = None  # the session open now
    from_open: bool = False  # the next bar is the first after a session boundary
    session_close: float | None = None  # the last regular close of the previous session


class Analysed(NamedTuple):
    """What one bar (or session mark) yields; a mark has no bar nor metrics."""

    bar: Bar | None
    metrics: Metrics | None
    alerts: list[Alert]
    forecasts: list[Forecast]
    scores: list[ModelScore]
    checkpoints: list[ModelCheckpoint]
    session_events: list[SessionEvent]
    summaries: list[DailySummary]


class Analysis:
    """The analysis step's function: a symbol's state and its next bar or session mark
    to the new state and what the step emits (:class:`AnalysisLogic` runs it)."""

    def __init__(self, config: AnalysisConfig, clock: Clock, loader: CheckpointLoader | None):
        self.config = config
        self.clock = clock
        self.loader = loader

    def __call__(
        self, state: SymbolState | None, item: Bar | SessionMark
    ) -> tuple[SymbolState, Analysed]:
        if state is None:
            state = self.restore(item.symbol) or self.fresh(item.symbol)
        if isinstance(item, SessionMark):
            return state, self.on_mark(state, item)
        bar = item
        if bar.close is None:
            return state, self.on_priceless(state, bar)
        from_open = state.from_open and bar.bar_seconds < DAILY_BAR_SECONDS
        state.from_open = False
        metrics = state.metrics.update(bar, self.per_year(state, bar), from_open)
        step = self.step_models(state, bar, metrics)
        alerts = state.alerts.update(metrics, anomaly=step.anomaly)
        if state.day is not None:
            state.day.add(bar, metrics, alerts, step.forecasts, state.session_close)
        return state, Analysed(
            bar,
            metrics,
            alerts,
            step.forecasts,
            step.scores,
            self.checkpoint(state, bar),
            [],
            [],
        )

    @staticmethod
    def on_priceless(state: SymbolState, bar: Bar) -> Analysed:
        """A bar without prices (no print of it could set them: odd lots only, say): no
        metrics, no model step, no alert; the day counts its volume, VWAP and trades. The
        next bar's return is measured from the last bar with prices."""
        if state.day is not None:
            state.day.add_priceless(bar)
        return Analysed(bar, None, [], [], [], [], [], [])

    @staticmethod
    def step_models(state: SymbolState, bar: Bar, metrics: Metrics) -> StepResult:
        """The models' step; one that fails on a bar (a numerical corner no test found)
        costs that bar's forecasts and scores, logged, and never the dataflow: a crash
        would come back on every restart, since a resumed flow replays the same bar. The
        bar, its metrics and alerts are written as always."""
        try:
            return state.models.step(bar, metrics)
        except (ArithmeticError, ValueError, TypeError):
            log.exception(
                "%s: the models failed on the bar at %d; no forecasts for it",
                bar.symbol,
                bar.start_us,
            )
            return StepResult([], [], None)

    @staticmethod
    def per_year(state: SymbolState, bar: Bar) -> float | None:
        """Bars per year of the bar's session: its length, its calendar's sessions."""
        if state.session is None:
            return None
        cal = market_calendar(state.session.calendar)
        return cal.bars_per_year(state.session, bar.bar_seconds)

    def on_mark(self, state: SymbolState, mark: SessionMark) -> Analysed:
        s = mark.session
        at = s.open_us if mark.event == "open" else s.close_us
        event = SessionEvent(at, mark.symbol, mark.event, s.date, s.calendar)
        summaries = []
        state.from_open = True
        if mark.event == "open":
            state.session = s
            state.day = TradingDay(s, mark.symbol)
        elif state.day is not None:
            day, state.day = state.day, None
            summaries.append(day.summary(self.config.metrics.risk_free_rate))
            if day.close is not None:
                state.session_close = day.close
        return Analysed(None, None, [], [], [], [], [event], summaries)

    def fresh(self, symbol: str) -> SymbolState:
        cfg = self.config
        return SymbolState(
            MetricsState(cfg.metrics),
            VolatilityAlerts(cfg.alerts),
            SymbolModels(symbol, cfg.models),
        )

    def checkpoint(self, state: SymbolState, bar: Bar) -> list[ModelCheckpoint]:
        cfg = self.config.checkpoints
        now = bar.start_us if cfg.clock == "event" else self.clock()
        last = state.last_checkpoint_us
        if last is None:
            state.last_checkpoint_us = now
            return []
        if now - last < cfg.every_s * US:
            return []
        state.last_checkpoint_us = now
        rows = state.models.checkpoint(bar.start_us)
        pipeline = (state.metrics, state.alerts)
        rows.append(
            encode(bar.start_us, bar.symbol, PIPELINE_ROW, state.models.bars_seen, pipeline)
        )
        return rows

    def restore(self, symbol: str) -> SymbolState | None:
        if self.loader is None:
            return None
        try:
            rows = [ModelCheckpoint._make(row) for row in self.loader(symbol)]
        except Exception as exc:  # the database may be down, or a row malformed: start fresh
            log.warning("could not load the checkpoint of %s (%s); starting fresh", symbol, exc)
            return None
        if not rows:
            return None
        pipeline_rows = [r for r in rows if r.model == PIPELINE_ROW]
        models, errors = SymbolModels.restore(
            [r for r in rows if r.model != PIPELINE_ROW], self.config.models
        )
        if models is None:
            log.warning("checkpoint of %s not usable (%s); starting fresh", symbol, errors[-1:])
            return None
        state = self.fresh(symbol)
        state.models = models
        if pipeline_rows:
            try:
                state.metrics, state.alerts = decode(pipeline_rows[0], tuple)
            except CheckpointError as exc:
                log.warning("%s; metrics and alerts start fresh", exc)
        state.last_checkpoint_us = max(r.time_us for r in rows)
        log.info("%s: restored %d models at %d bars", symbol, len(models.slots), models.bars_seen)
        return state


class AnalysisLogic(StatefulLogic[Bar | SessionMark, Analysed, bytes]):
    """The analysis step for :func:`bytewax.operators.stateful`: :class:`Analysis` per
    item, the state pickled for snapshots (:mod:`dataflows.snapshots`: ``stateful_map``
    would deep-copy the models instead, several times slower)."""

    def __init__(self, analysis: Analysis, snapshot: bytes | None):
        self.analysis = analysis
        self.state = thaw(snapshot, SymbolState)
        if self.state is not None:
            self._same_models(self.state)

    def _same_models(self, state: SymbolState) -> None:
        """Models resumed from a snapshot of another configuration (other
        ``SENTINEL_MODEL_HORIZONS``) or another model set (a version that added a model)
        start afresh, as such a checkpoint would; the metrics, alerts and trading day
        resume."""
        models, wanted = state.models, self.analysis.config.models
        names = {*VOLATILITY_MODELS, *RETURN_MODELS}
        if models.config != wanted or set(models.slots) != names:
            log.warning("%s: the models are not those configured; they start afresh", models.symbol)
            state.models = SymbolModels(models.symbol, wanted)

    @override
    def on_item(self, value: Bar | SessionMark) -> tuple[Iterable[Analysed], bool]:
        self.state, analysed = self.analysis(self.state, value)
        return [analysed], StatefulLogic.RETAIN

    @override
    def snapshot(self) -> bytes:
        return freeze(self.state)
