"""Per symbol, per bar: metrics, online models (forecast, score, learn), alerts, checkpoints.

Everything a symbol needs after its bars lives in one picklable :class:`SymbolState`, so
Bytewax recovery covers it. Independently of Bytewax, every ``checkpoint_every_s`` (of
event time or of the wall clock) the state is written to ``model_checkpoints``: the
models one row each (see :mod:`online_models.checkpoint`), plus a ``_pipeline`` row with
the metrics and alert state. On a fresh start, the first bar of a symbol restores the
newest checkpoint, so forecasts continue where they stopped; a checkpoint that cannot be
read is reported and skipped, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from dataflows.alerts import AlertConfig, VolatilityAlerts
from dataflows.config import CheckpointConfig  # re-exported: the step and its configuration
from dataflows.metrics import MetricsConfig, MetricsState
from dataflows.records import (
    US,
    Alert,
    Bar,
    Clock,
    Forecast,
    Metrics,
    ModelCheckpoint,
    ModelScore,
)
from online_models import ModelConfig, SymbolModels
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


class Analysed(NamedTuple):
    bar: Bar
    metrics: Metrics
    alerts: list[Alert]
    forecasts: list[Forecast]
    scores: list[ModelScore]
    checkpoints: list[ModelCheckpoint]


class Analysis:
    """The ``stateful_map`` mapper of the analysis step."""

    def __init__(self, config: AnalysisConfig, clock: Clock, loader: CheckpointLoader | None):
        self.config = config
        self.clock = clock
        self.loader = loader

    def __call__(self, state: SymbolState | None, bar: Bar) -> tuple[SymbolState, Analysed]:
        if state is None:
            state = self.restore(bar.symbol) or self.fresh(bar.symbol)
        metrics = state.metrics.update(bar)
        step = state.models.step(bar, metrics)
        alerts = state.alerts.update(metrics, anomaly=step.anomaly)
        return state, Analysed(
            bar, metrics, alerts, step.forecasts, step.scores, self.checkpoint(state, bar)
        )

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
