"""A cheap stock on 1 s bars: most bars do not move a cent, most returns are exactly 0.

River's rolling means then read a hair off zero (-2e-23 where the window is all zeros),
which once made the models take the log of a negative number and stopped the dataflow.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
from river import metrics

from dataflows.records import US, Bar
from online_models import SymbolModels
from online_models.features import FeatureState
from online_models.har import HARVolatility
from online_models.linear_return import LinearReturn
from online_models.scoring import ReturnScore
from tests.online_models.helpers import metrics_for, run

# What the features of such a run once held (rv_medium below zero, rv_long a residue).
ROUNDED: dict[Hashable, Any] = {
    "rv_short": 0.0,
    "rv_medium": -1.69e-22,
    "rv_long": 6.78e-22,
    "ewma_var": 1e-9,
    "ret_short": 0.0,
    "ret_medium": 0.0,
    "ret_long": 0.0,
    "ret_lag_1": 0.0,
    "ret_lag_2": 0.0,
}


def flat_bars(n: int, seed: int = 3) -> list[Bar]:
    """1 s bars of a $13.75 stock that moves a cent on one bar in twenty."""
    rng = np.random.default_rng(seed)
    moves = np.where(rng.random(n) < 0.05, rng.choice([-0.01, 0.01], n), 0.0)
    closes = np.round(13.75 + np.cumsum(moves), 2)
    return [
        Bar(i * US, "CHEAP", float(c), float(c), float(c), float(c), 100.0, float(c), 3, 1)
        for i, c in enumerate(closes)
    ]


def test_models_take_variances_rounded_below_zero_as_zero() -> None:
    for model in (HARVolatility(), LinearReturn()):
        model.learn_one(ROUNDED, 0.0)
        value = model.predict_one(ROUNDED)
        assert math.isfinite(value), type(model).__name__
    assert HARVolatility().predict_one(ROUNDED) >= 0.0


def test_a_flat_cheap_stock_runs_through_every_model() -> None:
    bars = flat_bars(3_000)
    features = FeatureState()
    for bar, m in zip(bars[1:], metrics_for(bars)[1:], strict=True):
        x, _ = features.update(bar, m.log_return or 0.0)
        assert min(v for k, v in x.items() if k.startswith("rv_") or k == "ewma_var") >= 0.0
    results = run(SymbolModels("CHEAP"), bars, metrics_for(bars))
    values = [f.value for res in results for f in res.forecasts]
    assert len(values) > 10_000
    assert all(math.isfinite(v) for v in values)


def test_rolling_scores_of_a_window_of_exact_forecasts_are_real_and_not_negative() -> None:
    score = ReturnScore(window=3)
    # Errors that leave the window's sum a hair off zero once they are all gone.
    for r, value in ((0.1, 0.0), (0.0, 0.3), (0.7, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)):
        score.update(r, value, None, None)
    mse = metrics.MSE.get(score.rmse_rolling.obj)
    values = score.values()
    assert isinstance(values["rmse_rolling"], float)
    assert values["rmse_rolling"] == math.sqrt(max(mse, 0.0))
    assert values["mae_rolling"] >= 0.0
