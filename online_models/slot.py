"""One named model of a symbol at every horizon: its estimators, its scores, its time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from online_models.config import ModelConfig
from online_models.registry import VOLATILITY
from online_models.scoring import ReturnScore, VolatilityScore

Prediction = tuple[float, float | None, float | None]
"""A forecast as a model keeps it until its bar comes: ``(value, lower, upper)``."""


@dataclass
class ModelSlot:
    """One named model: an estimator and its scores per horizon (one checkpoint row)."""

    name: str
    target: str
    models: dict[int, Any]  # base.Regressor, by horizon
    scores: dict[int, Any]  # VolatilityScore | ReturnScore, by horizon
    seconds: float = 0.0  # time spent scoring, learning and predicting (for the benchmarks)

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

    def score_and_learn(
        self, horizon: int, x: dict[str, float], r: float, forecast: Prediction | None
    ) -> None:
        """Score the forecast made from ``x`` (if any) against the return ``r`` it
        forecast, then learn ``(x, target)``: ``r^2`` for volatility, ``r`` for returns."""
        start = time.perf_counter()
        if forecast is not None:
            if self.target == VOLATILITY:
                self.scores[horizon].update(r, forecast[0])
            else:
                self.scores[horizon].update(r, *forecast)
        self.models[horizon].learn_one(x, r * r if self.target == VOLATILITY else r)
        self.seconds += time.perf_counter() - start

    def predict(self, horizon: int, x: dict[str, float]) -> float:
        """The estimator's raw prediction at ``horizon`` (a variance for volatility)."""
        start = time.perf_counter()
        value = float(self.models[horizon].predict_one(x))
        self.seconds += time.perf_counter() - start
        return value
