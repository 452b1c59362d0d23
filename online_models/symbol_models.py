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
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from river import base

from dataflows.records import US, Bar, Metrics
from online_models.checkpoint import (
    ANOMALY_MODEL,
    RESERVED_NAMES,
    SHARED_MODEL,
    CheckpointError,
    CheckpointRow,
    decode,
    encode,
)
from online_models.config import ModelConfig
from online_models.detectors import make_detector, score_then_learn
from online_models.ewma import EWMAVolatility
from online_models.features import FeatureState
from online_models.har import HARVolatility
from online_models.last import LastVolatility
from online_models.linear_return import LinearReturn
from online_models.rolling import RollingVolatility
from online_models.scoring import ReturnScore, VolatilityScore, relative_scores
from online_models.zero import ZeroReturn

log = logging.getLogger(__name__)

VOLATILITY = "volatility"
RETURN = "return"
# The baselines the relative scores compare with, per target.
BASELINES = {VOLATILITY: "ewma", RETURN: "zero"}

ForecastRow = tuple[int, str, str, str, int, float, float | None, float | None, int]
"""``(time_us, symbol, model, target, horizon, value, lower, upper, made_at_us)``."""
ScoreRow = tuple[int, str, str, str, str, float]
"""``(time_us, symbol, model, target, metric, value)``."""


class StepResult(NamedTuple):
    forecasts: list[ForecastRow]
    scores: list[ScoreRow]
    anomaly: float | None  # in [0, 1], high is anomalous; None while the detector warms up


def default_volatility_models(config: ModelConfig) -> dict[str, base.Regressor]:
    return {
        "har": HARVolatility(),
        "ewma": EWMAVolatility(decay=config.ewma_lambda),
        "last": LastVolatility(),
        "rolling": RollingVolatility(window_size=config.har_windows[-1]),
    }


def default_return_models(config: ModelConfig) -> dict[str, base.Regressor]:
    return {"linear": LinearReturn(lags=config.return_lags), "zero": ZeroReturn()}


def _suffix(horizon: int) -> str:
    return "" if horizon == 1 else f"_h{horizon}"


@dataclass
class ModelSlot:
    """One named model: an estimator and its scores per horizon (one checkpoint row)."""

    name: str
    target: str
    models: dict[int, Any]  # base.Regressor, by horizon
    scores: dict[int, Any]  # VolatilityScore | ReturnScore, by horizon
    seconds: float = 0.0  # time spent learning and predicting

    @classmethod
    def fresh(cls, name: str, target: str, proto: Any, config: ModelConfig) -> ModelSlot:
        score = VolatilityScore if target == VOLATILITY else ReturnScore
        return cls(
            name,
            target,
            {h: proto.clone() for h in config.horizons},
            {h: score(config.score_window) for h in config.horizons},
        )

    def values(self, horizon: int) -> dict[str, float]:
        return dict(self.scores[horizon].values())


class _Snapshot(NamedTuple):
    """What was known at one bar: its features and the forecasts made from them."""

    made_at_us: int
    x: dict[str, float]
    forecasts: dict[tuple[str, int], tuple[float, float | None, float | None]]


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


class SymbolModels:
    """Every model of one symbol, picklable as a whole (Bytewax snapshots it).

    ``volatility_models`` and ``return_models`` map stable names (database keys) to
    unfitted River regressors, cloned once per horizon; they default to
    :func:`default_volatility_models` and :func:`default_return_models`.
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
        self.detector = self._fresh_detector(cfg)

    @classmethod
    def _from_parts(
        cls, shared: _Shared, slots: dict[str, ModelSlot], detector: _Detector
    ) -> SymbolModels:
        models = cls.__new__(cls)
        models.shared, models.slots, models.detector = shared, slots, detector
        return models

    @staticmethod
    def _fresh_detector(cfg: ModelConfig) -> _Detector:
        detector = make_detector(
            cfg.anomaly_detector, cfg.anomaly_window, cfg.anomaly_grace, cfg.seed
        )
        return _Detector(cfg.anomaly_detector, detector)

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
        """Score the pending forecasts, learn, and forecast the next bars (module doc)."""
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
        forecasts = self._forecast(bar, x)
        scores = self._score_rows(bar.start_us) if sh.bars_seen % sh.config.score_every == 0 else []
        return StepResult(forecasts, scores, anomaly)

    def _score_and_learn(self, r: float) -> None:
        pending = self.shared.pending
        for h in self.shared.config.horizons:
            if len(pending) < h:
                continue
            snap = pending[-h]
            for slot in self.slots.values():
                start = time.perf_counter()
                forecast = snap.forecasts.get((slot.name, h))
                if forecast is not None:
                    if slot.target == VOLATILITY:
                        slot.scores[h].update(r, forecast[0])
                    else:
                        slot.scores[h].update(r, *forecast)
                slot.models[h].learn_one(snap.x, r * r if slot.target == VOLATILITY else r)
                slot.seconds += time.perf_counter() - start

    def _anomaly(self, anomaly_x: dict[str, float] | None) -> float | None:
        if anomaly_x is None:
            return None
        start = time.perf_counter()
        score = score_then_learn(self.detector.detector, anomaly_x)
        self.detector.seconds += time.perf_counter() - start
        self.shared.anomaly_seen += 1
        return score if self.shared.anomaly_seen > self.shared.config.anomaly_grace else None

    def _forecast(self, bar: Bar, x: dict[str, float]) -> list[ForecastRow]:
        sh, cfg = self.shared, self.shared.config
        snap = _Snapshot(bar.start_us, x, {})
        rows: list[ForecastRow] = []
        z = cfg.interval_z
        for h in cfg.horizons:
            time_us = bar.start_us + h * bar.bar_seconds * US
            sigmas: dict[str, float] = {}
            for slot in self.slots.values():
                start = time.perf_counter()
                value = float(slot.models[h].predict_one(x))
                slot.seconds += time.perf_counter() - start
                lower = upper = None
                if slot.target == VOLATILITY:
                    value = math.sqrt(value) if value > 0 and math.isfinite(value) else 0.0
                    value = sigmas[slot.name] = max(value, cfg.min_vol)
                else:
                    value = value if math.isfinite(value) else 0.0
                    lower, upper = self._interval(value, z, sigmas)
                snap.forecasts[(slot.name, h)] = (value, lower, upper)
                rows.append(
                    (time_us, sh.symbol, slot.name, slot.target, h, value, lower, upper,
                     bar.start_us)
                )  # fmt: skip
        sh.pending.append(snap)
        return rows

    def _interval(
        self, value: float, z: float, sigmas: dict[str, float]
    ) -> tuple[float | None, float | None]:
        sigma = sigmas.get(self.shared.config.interval_model)
        if sigma is None:  # volatility models come first in slots; this is a misconfiguration
            return None, None
        return value - z * sigma, value + z * sigma

    def scores(self) -> dict[str, dict[str, float]]:
        """Current scores by model, metric names suffixed ``_h<h>`` for horizons above 1."""
        out: dict[str, dict[str, float]] = {}
        for h in self.shared.config.horizons:
            values = {name: slot.values(h) for name, slot in self.slots.items()}
            for name, slot in self.slots.items():
                own = dict(values[name])
                baseline = BASELINES[slot.target]
                if name != baseline and baseline in values:
                    own.update(relative_scores(own, values[baseline], baseline))
                out.setdefault(name, {}).update({k + _suffix(h): v for k, v in own.items()})
        return out

    def _score_rows(self, time_us: int) -> list[ScoreRow]:
        sym = self.shared.symbol
        return [
            (time_us, sym, name, self.slots[name].target, metric, value)
            for name, values in self.scores().items()
            for metric, value in values.items()
            if math.isfinite(value)
        ]

    def timings(self) -> dict[str, float]:
        """Seconds spent in each model's learn and predict calls (and the detector's)."""
        out = {name: slot.seconds for name, slot in self.slots.items()}
        out[ANOMALY_MODEL] = self.detector.seconds
        return out

    # --- checkpoints ---------------------------------------------------------------

    def checkpoint(self, time_us: int) -> list[CheckpointRow]:
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
        cls, rows: Iterable[Any], config: ModelConfig | None = None
    ) -> tuple[SymbolModels | None, list[str]]:
        """Rebuild a symbol's models from its latest checkpoint rows.

        Returns the models (``None`` if nothing usable: start fresh) and the problems
        found, also logged as warnings. A model whose row is missing, corrupt, of another
        version or class starts afresh; the set is refused only when the shared row is
        unusable, the rows mix symbols, or ``config`` differs from the checkpoint's.
        """
        models, errors = cls._restore(list(rows), config)
        for error in errors:
            log.warning("model checkpoint: %s", error)
        return models, errors

    @classmethod
    def _restore(
        cls, rows: list[Any], config: ModelConfig | None
    ) -> tuple[SymbolModels | None, list[str]]:
        valid, errors = [], []
        for row in rows:
            if isinstance(row, tuple | list) and len(row) == 7:
                valid.append(tuple(row))
            else:
                errors.append(f"malformed checkpoint row: {row!r:.80}")
        if not valid:
            return None, [*errors, "no checkpoint rows"]
        if len({r[1] for r in valid}) > 1:
            return None, [*errors, f"rows of several symbols: {sorted({r[1] for r in valid})}"]
        latest = max(r[0] for r in valid)
        by_name = {r[2]: r for r in valid if r[0] == latest}
        if SHARED_MODEL not in by_name:
            return None, [*errors, f"{valid[0][1]}: no {SHARED_MODEL} row at {latest}"]
        try:
            shared: _Shared = decode(by_name.pop(SHARED_MODEL), _Shared)
        except CheckpointError as exc:
            return None, [*errors, f"cannot restore {valid[0][1]}: {exc}"]
        if config is not None and config != shared.config:
            return None, [*errors, f"{shared.symbol}: config changed since the checkpoint"]
        sym = shared.symbol
        detector = cls._restore_part(sym, ANOMALY_MODEL, by_name, _Detector, errors)
        if detector is None or detector.name != shared.config.anomaly_detector:
            detector = cls._fresh_detector(shared.config)
        slots = {}
        for name, (target, proto) in shared.prototypes.items():
            slot = cls._restore_part(sym, name, by_name, ModelSlot, errors)
            if slot is None or slot.name != name or set(slot.models) != set(shared.config.horizons):
                if slot is not None:
                    errors.append(f"{sym}/{name}: checkpoint of another model; starting afresh")
                slot = ModelSlot.fresh(name, target, proto, shared.config)
            slots[name] = slot
        errors += [f"{sym}/{name}: unknown model, ignored" for name in by_name]
        return cls._from_parts(shared, slots, detector), errors

    @staticmethod
    def _restore_part(
        symbol: str, name: str, rows: dict[str, Any], expected: type, errors: list[str]
    ) -> Any:
        row = rows.pop(name, None)
        if row is None:
            errors.append(f"{symbol}/{name}: no checkpoint row; starting it afresh")
            return None
        try:
            return decode(row, expected)
        except CheckpointError as exc:
            errors.append(f"{exc}; starting it afresh")
            return None


def restore(
    rows: Iterable[Any], config: ModelConfig | None = None
) -> tuple[SymbolModels | None, list[str]]:
    """Alias of :meth:`SymbolModels.restore`."""
    return SymbolModels.restore(rows, config)
