"""Every forecast is made, and scored, before its model sees the bar it forecasts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from river import base

from dataflows.records import US, Metrics
from online_models import RETURN_MODELS, VOLATILITY_MODELS, ModelConfig, SymbolModels
from tests.online_models.helpers import forecast_table, metrics_for, regime_sigma, run, simulate


class Spy(base.Regressor):
    """Records what it learns; forecasts how many targets it has learned so far."""

    def __init__(self) -> None:
        self.learned: list[tuple[float | None, float]] = []

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.RegTarget) -> None:
        self.learned.append((x.get("ret_lag_1"), y))

    def predict_one(self, x: dict[base.typing.FeatureName, Any]) -> base.typing.RegTarget:
        return float(len(self.learned))


@pytest.mark.parametrize("horizons", [(1,), (1, 3)])
def test_models_learn_only_the_past_and_are_scored_before_learning(
    horizons: tuple[int, ...],
) -> None:
    bars, metrics, r = simulate(regime_sigma(300), seed=1)
    cfg = ModelConfig(horizons=horizons)
    models = SymbolModels("X", cfg, return_models={"spy": Spy()})
    table = forecast_table(run(models, bars, metrics))
    ret = np.concatenate([[np.nan], r])  # ret[t] is bar t's return
    n = len(bars)
    for h in horizons:
        spy = models.slots["spy"].models[h]
        # The model for horizon h learned bar t's return from the features of bar t - h
        # (bar 0 has none), in bar order, and nothing else.
        expected = [(None if t == h else float(ret[t - h]), float(ret[t])) for t in range(h, n)]
        assert spy.learned == expected
        # At bar k it had learned exactly the returns of bars h..k: never bar k + h's.
        made = {k: table[("spy", h, bars[k].start_us)] for k in range(1, n)}
        for k, row in made.items():
            assert row[5] == max(0, k - h + 1)
            assert row[0] == bars[k].start_us + h * 60 * US
        # Its score is the MAE of those forecasts against the returns h bars later.
        errors = [abs(ret[k + h] - made[k][5]) for k in range(1, n - h)]
        suffix = "" if h == 1 else f"_h{h}"
        assert models.scores()["spy"]["mae" + suffix] == pytest.approx(np.mean(errors), rel=1e-12)


def test_forecasts_for_a_bar_do_not_depend_on_that_bar() -> None:
    bars, metrics, _ = simulate(regime_sigma(400), seed=2)
    shocked_at = 250
    shocked_bars = list(bars)
    hit = bars[shocked_at]
    assert hit.close is not None
    assert hit.high is not None
    shocked_bars[shocked_at] = hit._replace(close=hit.close * 1.2, high=hit.high * 1.2)
    shocked_metrics = metrics_for(shocked_bars)
    assert shocked_metrics[:shocked_at] == metrics[:shocked_at]
    cfg = ModelConfig(horizons=(1, 2))
    plain = forecast_table(run(SymbolModels("X", cfg), bars, metrics))
    shocked = forecast_table(run(SymbolModels("X", cfg), shocked_bars, shocked_metrics))
    t0 = bars[shocked_at].start_us
    before = {k: v for k, v in plain.items() if k[2] < t0}
    assert before  # every model and horizon, made before the shock ...
    assert {k: shocked[k] for k in before} == before  # ... is untouched by it,
    # including every forecast *for* the shocked bar, and models do react afterwards:
    assert any(shocked[k] != v for k, v in plain.items() if k[2] >= t0)


def test_first_bar_only_initializes_and_replayed_bars_are_ignored() -> None:
    bars, metrics, _ = simulate(regime_sigma(50), seed=3)
    models = SymbolModels("X")
    first = models.step(bars[0], metrics[0])
    assert first == ([], [], None)
    second = models.step(bars[1], metrics[1])
    assert {(f[2], f[3]) for f in second.forecasts} == {
        *((m, "volatility") for m in VOLATILITY_MODELS),
        *((m, "return") for m in RETURN_MODELS),
    }
    assert second.scores == []  # nothing forecast yet for bar 1
    assert models.step(bars[1], metrics[1]) == ([], [], None)  # replay after recovery
    third = models.step(bars[2], metrics[2])
    assert {s[4] for s in third.scores} >= {"qlike", "mse", "mae", "rmse", "coverage"}
    assert models.bars_seen == 2


def test_bar_and_metrics_must_match() -> None:
    bars, metrics, _ = simulate(regime_sigma(5), seed=4)
    models = SymbolModels("X")
    with pytest.raises(ValueError, match="do not match"):
        models.step(bars[1], metrics[2])
    other = Metrics(bars[0].start_us, "Y", None, None, None, None, None, None, 1)
    with pytest.raises(ValueError, match="do not match"):
        models.step(bars[0], other)


def test_a_bar_without_return_drops_the_pending_forecasts() -> None:
    bars, metrics, _ = simulate(regime_sigma(40), seed=5)
    models = SymbolModels("X")
    run(models, bars[:20], metrics[:20])
    restarted = metrics[20]._replace(log_return=None)  # e.g. the metrics state was rebuilt
    assert models.step(bars[20], restarted) == ([], [], None)
    after = models.step(bars[21], metrics[21])
    assert after.forecasts
    assert models.slots["har"].scores[1].qlike.n == 18  # bars 2..19, nothing since
    assert models.bars_seen == 20
