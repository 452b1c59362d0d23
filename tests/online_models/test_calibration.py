"""Intervals cover what they claim; the HAR forecast is positive and calibrated."""

from __future__ import annotations

import numpy as np
import pytest

from dataflows.records import Metrics
from online_models import ModelConfig, SymbolModels
from tests.online_models.helpers import forecast_table, regime_sigma, run, simulate

BURN = 500


def garch_like_sigma(n: int, seed: int) -> np.ndarray:
    """A known, slowly wandering volatility (log AR(1)), per bar."""
    rng = np.random.default_rng(seed)
    log_s = np.empty(n)
    log_s[0] = np.log(1e-3)
    for t in range(1, n):
        log_s[t] = np.log(1e-3) + 0.99 * (log_s[t - 1] - np.log(1e-3)) + 0.1 * rng.normal()
    return np.exp(log_s)


@pytest.mark.parametrize(("level", "seed"), [(0.9, 21), (0.8, 22), (0.95, 23)])
def test_intervals_cover_their_nominal_level(level: float, seed: int) -> None:
    sigma = garch_like_sigma(4000, seed)
    bars, metrics, r = simulate(sigma, seed=seed)
    table = forecast_table(run(SymbolModels("X", ModelConfig(interval_level=level)), bars, metrics))
    y = r[BURN + 1 :]
    for model in ("linear", "zero"):
        rows = [table[(model, 1, b.start_us)] for b in bars[BURN + 1 : -1]]
        lower = np.array([row[6] for row in rows])
        upper = np.array([row[7] for row in rows])
        coverage = np.mean((lower <= y) & (y <= upper))
        # binomial standard error is about 0.004 here; allow for sigma's estimation error
        assert coverage == pytest.approx(level, abs=0.02), (model, coverage)


def test_har_is_calibrated_and_tracks_the_true_volatility() -> None:
    sigma = regime_sigma(4000, calm=1e-3, wild=3e-3, period=800)
    bars, metrics, r = simulate(sigma, seed=24)
    table = forecast_table(run(SymbolModels("X"), bars, metrics))
    har = np.array([table[("har", 1, b.start_us)][5] for b in bars[BURN + 1 : -1]])
    truth = sigma[BURN + 1 :]
    y = r[BURN + 1 :]
    assert np.mean(y**2 / har**2) == pytest.approx(1.0, abs=0.08)  # unbiased for r^2
    assert np.median(np.abs(np.log(har / truth))) < 0.2
    qlike = {
        m: np.mean(np.log(s**2) + y**2 / s**2)
        for m, s in (
            ("har", har),
            ("ewma", np.array([table[("ewma", 1, b.start_us)][5] for b in bars[BURN + 1 : -1]])),
            ("truth", truth),
        )
    }
    # Abrupt regime shifts are EWMA's best case (and the truth is out of reach):
    assert qlike["har"] - qlike["truth"] < 0.1
    assert abs(qlike["har"] - qlike["ewma"]) < 0.02


def test_har_beats_ewma_on_wandering_volatility() -> None:
    sigma = garch_like_sigma(4000, 26)
    bars, metrics, r = simulate(sigma, seed=26)
    table = forecast_table(run(SymbolModels("X"), bars, metrics))
    y = r[BURN + 1 :]
    qlike = {}
    for model in ("har", "ewma"):
        s = np.array([table[(model, 1, b.start_us)][5] for b in bars[BURN + 1 : -1]])
        qlike[model] = np.mean(np.log(s**2) + y**2 / s**2)
    truth = np.mean(np.log(sigma[BURN + 1 :] ** 2) + y**2 / sigma[BURN + 1 :] ** 2)
    assert truth < qlike["har"] < qlike["ewma"]


def test_har_forecast_is_positive_through_zero_returns_and_jumps() -> None:
    sigma = regime_sigma(1500, calm=1e-4, wild=1e-3, period=300)
    bars, metrics, r = simulate(sigma, seed=25)
    rng = np.random.default_rng(25)
    zeros = rng.random(len(r)) < 0.4  # an illiquid tape: 40% of bars do not move
    jumps = rng.random(len(r)) < 0.003
    r = np.where(zeros, 0.0, r) + jumps * 0.05 * rng.choice([-1.0, 1.0], len(r))
    metrics = [metrics[0]] + [
        Metrics(b.start_us, "X", float(ri), None, None, None, None, None, i + 2)
        for i, (b, ri) in enumerate(zip(bars[1:], r, strict=True))
    ]
    results = run(SymbolModels("X", ModelConfig(horizons=(1, 5))), bars, metrics)
    har = np.array([f[5] for res in results for f in res.forecasts if f[2] == "har"])
    assert len(har) == 2 * (len(bars) - 1)
    assert np.all(np.isfinite(har))
    assert np.all(har > 0)
    assert np.all(har >= ModelConfig().min_vol)
