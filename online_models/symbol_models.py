"""One symbol's online models: forecast, score, learn, checkpoint, one bar at a time.

For each bar with a log return ``r_t``, :meth:`SymbolModels.step`, in this order:

1. scores every forecast made ``h`` bars ago for horizon ``h`` against ``r_t``;
2. lets each model learn ``(x_{t-h}, target_t)``: ``r_t^2`` for volatility models,
   ``r_t`` for return models;
3. updates the features with bar ``t`` and scores the bar's anomaly (score, then learn);
4. forecasts bars ``t + h`` from ``x_t``.

So a forecast is scored before its model has seen the bar it forecast (prequential
evaluation), and a forecast for bar ``t`` depends on bars before ``t`` only.

A bar without a log return (the first one, or the first after the metrics state was
rebuilt) drops the forecasts still waiting for their bar: the next return does not follow
the bar they were made at. A bar not after the last one seen is ignored (a replay).

The state of a :class:`SymbolModels` is its private classes below and the
:class:`~online_models.slot.ModelSlot` s; only this module builds one from checkpoint
rows. Checkpoints and Bytewax snapshots pickle these classes by their path in this
module: ``ModelSlot`` is imported here so that older pickles still find it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from river import base

from dataflows.records import Bar, Forecast, Metrics, ModelCheckpoint, ModelScore
from online_models.checkpoint import (
    ANOMALY_MODEL,
    RESERVED_NAMES,
    SHARED_MODEL,
    CheckpointError,
    decode,
    encode,
    newest_rows,
    take,
)
from online_models.config import ModelConfig
from online_models.detectors import make_detector, score_then_learn
from online_models.features import FeatureState
from online_models.prequential import current_scores, forecast, score_rows
from online_models.registry import (
    RETURN,
    VOLATILITY,
    default_return_models,
    default_volatility_models,
)
from online_models.slot import ModelSlot, Prediction

log = logging.getLogger(__name__)


class StepResult(NamedTuple):
    forecasts: list[Forecast]
    scores: list[ModelScore]
    anomaly: float | None  # in [0, 1], high is anomalous; None while the detector warms up


class _Snapshot(NamedTuple):
    """What was known at one bar: its features and the forecasts made from them."""

    made_at_us: int
    x: dict[str, float]
    forecasts: dict[tuple[str, int], Prediction]


@dataclass
class _Shared:
    """The part of a checkpoint that every model of the symbol depends on."""

    symbol: str
    config: ModelConfig
    features: FeatureState
    pending: deque[_Snapshot]
    bars_seen: int
    prototypes: dict[str, tuple[str, Any]]  # name -> (target, unfitted estimator)
    anomaly_seen: int = 0


@dataclass
class _Detector:
    name: str
    detector: Any
    seconds: float = 0.0  # time spent scoring and learning

    @classmethod
    def fresh(cls, config: ModelConfig) -> _Detector:
        name = config.anomaly_detector
        return cls(
            name, make_detector(name, config.anomaly_window, config.anomaly_grace, config.seed)
        )

    def score(self, x: dict[str, float]) -> float:
        """Score the bar's anomaly features ``x``, then learn them."""
        start = time.perf_counter()
        score = score_then_learn(self.detector, x)
        self.seconds += time.perf_counter() - start
        return score


class SymbolModels:
    """Every model of one symbol, picklable as a whole (Bytewax snapshots it).

    ``volatility_models`` and ``return_models`` map stable names (database keys) to
    unfitted River regressors, cloned once per horizon; they default to
    :func:`~online_models.registry.default_volatility_models` and
    :func:`~online_models.registry.default_return_models`.
    """

    def __init__(
        self,
        symbol: str,
        config: ModelConfig | None = None,
        *,
        volatility_models: Mapping[str, base.Regressor] | None = None,
        return_models: Mapping[str, base.Regressor] | None = None,
    ) -> None:
        cfg = config or ModelConfig()
        vol = default_volatility_models(cfg) if volatility_models is None else volatility_models
        ret = default_return_models(cfg) if return_models is None else return_models
        protos = {n: (VOLATILITY, m.clone()) for n, m in vol.items()}
        protos.update({n: (RETURN, m.clone()) for n, m in ret.items()})
        if len(protos) != len(vol) + len(ret) or RESERVED_NAMES & protos.keys():
            raise ValueError(f"model names must be unique and not in {sorted(RESERVED_NAMES)}")
        if ret and cfg.interval_model not in vol:
            raise ValueError(f"interval_model {cfg.interval_model!r} is not a volatility model")
        features = FeatureState(cfg.har_windows, cfg.ewma_lambda, cfg.return_lags)
        self.shared = _Shared(symbol, cfg, features, deque(maxlen=max(cfg.horizons)), 0, protos)
        self.slots = {n: ModelSlot.fresh(n, t, p, cfg) for n, (t, p) in protos.items()}
        self.detector = _Detector.fresh(cfg)

    @classmethod
    def _from_parts(
        cls, shared: _Shared, slots: dict[str, ModelSlot], detector: _Detector
    ) -> SymbolModels:
        models = cls.__new__(cls)
        models.shared, models.slots, models.detector = shared, slots, detector
        return models

    @property
    def symbol(self) -> str:
        return self.shared.symbol

    @property
    def config(self) -> ModelConfig:
        return self.shared.config

    @property
    def bars_seen(self) -> int:
        """Bars with a log return learned so far."""
        return self.shared.bars_seen

    def step(self, bar: Bar, metrics: Metrics) -> StepResult:
        """Score the pending forecasts, learn, and forecast the next bars (module doc).

        Of ``metrics`` only the log return is read."""
        sh = self.shared
        if (bar.symbol, metrics.symbol, metrics.start_us) != (sh.symbol, sh.symbol, bar.start_us):
            raise ValueError(f"bar {bar.symbol}@{bar.start_us} and metrics do not match")
        if sh.pending and bar.start_us <= sh.pending[-1].made_at_us:
            return StepResult([], [], None)  # a bar seen already (replayed after recovery)
        r = metrics.log_return
        if r is None:  # the first bar, or the metrics state restarted: nothing to score
            sh.pending.clear()
            sh.pending.append(_Snapshot(bar.start_us, {}, {}))
            return StepResult([], [], None)
        self._score_and_learn(r)
        x, anomaly_x = sh.features.update(bar, r)
        sh.bars_seen += 1
        anomaly = self._anomaly(anomaly_x)
        forecasts, predictions = forecast(self.slots, sh.config, bar, x)
        sh.pending.append(_Snapshot(bar.start_us, x, predictions))
        scores = []
        if sh.bars_seen % sh.config.score_every == 0:
            scores = score_rows(self.slots, sh.config.horizons, sh.symbol, bar.start_us)
        return StepResult(forecasts, scores, anomaly)

    def _score_and_learn(self, r: float) -> None:
        pending = self.shared.pending
        for h in self.shared.config.horizons:
            if len(pending) < h:
                continue
            snap = pending[-h]
            for slot in self.slots.values():
                slot.score_and_learn(h, snap.x, r, snap.forecasts.get((slot.name, h)))

    def _anomaly(self, anomaly_x: dict[str, float] | None) -> float | None:
        if anomaly_x is None:
            return None
        score = self.detector.score(anomaly_x)
        self.shared.anomaly_seen += 1
        return score if self.shared.anomaly_seen > self.shared.config.anomaly_grace else None

    def scores(self) -> dict[str, dict[str, float]]:
        """Current scores by model, metric names suffixed ``_h<h>`` for horizons above 1."""
        return current_scores(self.slots, self.shared.config.horizons)

    def timings(self) -> dict[str, float]:
        """Seconds spent in each model's learn and predict calls (and the detector's)."""
        out = {name: slot.seconds for name, slot in self.slots.items()}
        out[ANOMALY_MODEL] = self.detector.seconds
        return out

    # --- checkpoints ---------------------------------------------------------------

    def checkpoint(self, time_us: int) -> list[ModelCheckpoint]:
        """The symbol's ``model_checkpoints`` rows at ``time_us`` (see checkpoint module)."""
        sh, n = self.shared, self.shared.bars_seen
        scores = self.scores()
        rows = [encode(time_us, sh.symbol, SHARED_MODEL, n, sh)]
        rows += [
            encode(time_us, sh.symbol, name, n, slot, scores.get(name))
            for name, slot in self.slots.items()
        ]
        rows.append(encode(time_us, sh.symbol, ANOMALY_MODEL, n, self.detector))
        return rows

    @classmethod
    def restore(
        cls, rows: Iterable[object], config: ModelConfig | None = None
    ) -> tuple[SymbolModels | None, list[str]]:
        """Rebuild a symbol's models from its latest checkpoint rows.

        Returns the models (``None`` if nothing usable: start fresh) and the problems
        found, also logged as warnings. A model whose row is missing, corrupt, of another
        version or class starts afresh; the set is refused only when the shared row is
        unusable, the rows mix symbols, or ``config`` differs from the checkpoint's.
        """
        models, errors = cls._restore(rows, config)
        for error in errors:
            log.warning("model checkpoint: %s", error)
        return models, errors

    @classmethod
    def _restore(
        cls, rows: Iterable[object], config: ModelConfig | None
    ) -> tuple[SymbolModels | None, list[str]]:
        by_name, errors = newest_rows(rows)
        if not by_name:
            return None, errors
        newest = next(iter(by_name.values()))
        if SHARED_MODEL not in by_name:
            return None, [*errors, f"{newest.symbol}: no {SHARED_MODEL} row at {newest.time_us}"]
        try:
            shared: _Shared = decode(by_name.pop(SHARED_MODEL), _Shared)
        except CheckpointError as exc:
            return None, [*errors, f"cannot restore {newest.symbol}: {exc}"]
        cfg = shared.config
        if config is not None and config != cfg:
            return None, [*errors, f"{shared.symbol}: config changed since the checkpoint"]
        sym = shared.symbol
        detector = take(by_name, sym, ANOMALY_MODEL, _Detector, errors)
        if detector is None or detector.name != cfg.anomaly_detector:
            detector = _Detector.fresh(cfg)
        slots = {}
        for name, (target, proto) in shared.prototypes.items():
            slot = take(by_name, sym, name, ModelSlot, errors)
            if slot is None or slot.name != name or set(slot.models) != set(cfg.horizons):
                if slot is not None:
                    errors.append(f"{sym}/{name}: checkpoint of another model; starting afresh")
                slot = ModelSlot.fresh(name, target, proto, cfg)
            slots[name] = slot
        errors += [f"{sym}/{name}: unknown model, ignored" for name in by_name]
        return cls._from_parts(shared, slots, detector), errors


def restore(
    rows: Iterable[object], config: ModelConfig | None = None
) -> tuple[SymbolModels | None, list[str]]:
    """Alias of :meth:`SymbolModels.restore`."""
    return SymbolModels.restore(rows, config)
