"""The bars' range variance (a feature of every model) and the range HAR model."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from dataflows.records import Bar
from online_models.features import FeatureState, range_variance
from online_models.range_har import RangeHARVolatility


def bar(o: float, h: float, lo: float, c: float, i: int = 0) -> Bar:
    return Bar(i, "X", o, h, lo, c, 100.0, None, 4, 60)


def test_range_variance_is_the_squared_gap_plus_garman_klass() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        prev = 100.0
        path = prev * np.exp(np.cumsum(rng.normal(0, 0.01, 5)))
        o, h, lo, c = path[0], path.max(), path.min(), path[-1]
        r = math.log(c / prev)
        gk = 0.5 * np.log(h / lo) ** 2 - (2 * np.log(2) - 1) * np.log(c / o) ** 2
        expected = np.log(o / prev) ** 2 + gk
        assert range_variance(bar(o, h, lo, c), r) == pytest.approx(expected, rel=1e-12)
        assert range_variance(bar(o, h, lo, c), r) >= 0


def test_a_bar_that_trades_once_or_has_unusable_prices_falls_back_to_r_squared() -> None:
    assert range_variance(bar(101.0, 101.0, 101.0, 101.0), math.log(1.01)) == pytest.approx(
        math.log(1.01) ** 2
    )
    assert range_variance(bar(100.0, 99.0, 101.0, 100.0), 0.02) == 0.02**2  # high < low
    assert range_variance(bar(100.0, 101.0, 0.0, 100.0), 0.02) == 0.02**2
    assert range_variance(bar(100.0, 101.0, 99.0, 102.0), 0.02) == 0.02**2  # close > high


def test_range_har_forecasts_from_ranges_and_needs_a_yardstick() -> None:
    rng = random.Random(11)
    state, model, close = FeatureState(), RangeHARVolatility(), 100.0
    x: dict[Any, Any] = {}
    for i in range(300):
        path = [close * math.exp(rng.gauss(0.0, 0.005)) for _ in range(4)]
        b = Bar(i, "X", path[0], max(path), min(path), path[-1], 1, None, 4, 60)
        r = math.log(path[-1] / close)
        model.learn_one(x, r * r)
        x, _ = state.update(b, r)
        close = path[-1]
    sigma = math.sqrt(model.predict_one(x))
    assert 0.005 < sigma < 0.02  # per bar: 4 steps of 0.5% (and the gap between bars)
    # Before any range is known, the forecast is the EWMA variance, as HAR's.
    assert model.predict_one({"ewma_var": 4e-4}) == 4e-4
