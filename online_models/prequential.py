"""The per-bar passes over a symbol's model slots: forecast, and the scores so far.

:meth:`~online_models.symbol_models.SymbolModels.step` runs them after each slot has
scored and learned the bar (:meth:`~online_models.slot.ModelSlot.score_and_learn`); here
they are plain functions of the slots, the config and the bar's features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from dataflows.records import US, Bar, Forecast, ModelScore
from online_models.config import ModelConfig
from online_models.registry import BASELINES, VOLATILITY, metric_suffix
from online_models.scoring import relative_scores
from online_models.slot import ModelSlot, Prediction


def forecast(
    slots: Mapping[str, ModelSlot], config: ModelConfig, bar: Bar, x: dict[str, float]
) -> tuple[list[Forecast], dict[tuple[str, int], Prediction]]:
    """Every model's forecast of the bars ``bar + h`` from features ``x``: as rows, and by
    ``(model, horizon)`` to be scored when their bars come.

    Volatility forecasts are ``sqrt`` of the predicted variance, floored at ``min_vol``;
    a return forecast's interval is ``value +- z * sigma`` of the interval model."""
    rows: list[Forecast] = []
    kept: dict[tuple[str, int], Prediction] = {}
    z = config.interval_z
    for h in config.horizons:
        time_us = bar.start_us + h * bar.bar_seconds * US
        sigmas: dict[str, float] = {}
        for slot in slots.values():
            value = slot.predict(h, x)
            lower = upper = None
            if slot.target == VOLATILITY:
                value = math.sqrt(value) if value > 0 and math.isfinite(value) else 0.0
                value = sigmas[slot.name] = max(value, config.min_vol)
            else:
                value = value if math.isfinite(value) else 0.0
                lower, upper = _interval(value, z, sigmas.get(config.interval_model))
            kept[(slot.name, h)] = (value, lower, upper)
            rows.append(
                Forecast(
                    time_us=time_us,
                    symbol=bar.symbol,
                    model=slot.name,
                    target=slot.target,
                    horizon=h,
                    value=value,
                    lower=lower,
                    upper=upper,
                    made_at_us=bar.start_us,
                )
            )
    return rows, kept


def _interval(value: float, z: float, sigma: float | None) -> tuple[float | None, float | None]:
    if sigma is None:  # volatility models come first in slots; this is a misconfiguration
        return None, None
    return value - z * sigma, value + z * sigma


def current_scores(
    slots: Mapping[str, ModelSlot], horizons: tuple[int, ...]
) -> dict[str, dict[str, float]]:
    """Current scores by model, metric names suffixed ``_h<h>`` for horizons above 1,
    with the scores relative to the target's baseline."""
    out: dict[str, dict[str, float]] = {}
    for h in horizons:
        values = {name: slot.values(h) for name, slot in slots.items()}
        for name, slot in slots.items():
            own = dict(values[name])
            baseline = BASELINES[slot.target]
            if name != baseline and baseline in values:
                own.update(relative_scores(own, values[baseline], baseline))
            out.setdefault(name, {}).update({k + metric_suffix(h): v for k, v in own.items()})
    return out


def score_rows(
    slots: Mapping[str, ModelSlot], horizons: tuple[int, ...], symbol: str, time_us: int
) -> list[ModelScore]:
    """The finite current scores as ``model_scores`` rows at ``time_us``."""
    return [
        ModelScore(time_us, symbol, name, slots[name].target, metric, value)
        for name, values in current_scores(slots, horizons).items()
        for metric, value in values.items()
        if math.isfinite(value)
    ]
