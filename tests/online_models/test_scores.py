"""Baselines, features and prequential scores equal an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest

from online_models import ModelConfig, SymbolModels
from online_models.features import FeatureState
from online_models.prequential import score_rows
from tests.online_models.helpers import forecast_table, regime_sigma, run, simulate

WINDOW = 40


@pytest.fixture(scope="module")
def session() -> tuple[SymbolModels, list, np.ndarray, dict]:
    bars, metrics, r = simulate(regime_sigma(700, period=100), seed=11)
    models = SymbolModels("X", ModelConfig(score_window=WINDOW))
    results = run(models, bars, metrics)
    return models, bars, r, forecast_table(results)


def series(table: dict, bars: list, model: str, column: int) -> np.ndarray:
    """Column of the model's 1-bar forecasts for bars 2..n-1 (made at bars 1..n-2)."""
    return np.array([table[(model, 1, b.start_us)][column] for b in bars[1:-1]], dtype=float)


def riskmetrics(r: np.ndarray, lam: float) -> np.ndarray:
    s2 = np.empty_like(r)
    s2[0] = r[0] ** 2
    for t in range(1, len(r)):
        s2[t] = lam * s2[t - 1] + (1 - lam) * r[t] ** 2
    return np.sqrt(s2)


@pytest.mark.parametrize("lam", [0.94, 0.97])
def test_ewma_baseline_is_riskmetrics(lam: float) -> None:
    bars, metrics, r = simulate(regime_sigma(800, period=200), seed=12)
    table = forecast_table(run(SymbolModels("X", ModelConfig(ewma_lambda=lam)), bars, metrics))
    got = np.array([table[("ewma", 1, b.start_us)][5] for b in bars[1:]])
    np.testing.assert_allclose(got, riskmetrics(r, lam), rtol=1e-9, atol=0)


def test_other_baselines(session: tuple) -> None:
    _, bars, r, table = session
    np.testing.assert_allclose(series(table, bars, "last", 5), np.abs(r[:-1]), rtol=1e-12)
    rolling = [np.sqrt(np.mean(r[max(0, i - 21) : i + 1] ** 2)) for i in range(len(r) - 1)]
    np.testing.assert_allclose(series(table, bars, "rolling", 5), rolling, rtol=1e-9)
    assert np.all(series(table, bars, "zero", 5) == 0)


def test_features_match_numpy() -> None:
    bars, _, r = simulate(regime_sigma(120, period=30), seed=13)
    state = FeatureState((1, 5, 22), 0.94, 3)
    for i, ri in enumerate(r):
        x, _ = state.update(bars[i + 1], float(ri))
        past = r[: i + 1]
        for name, w in (("short", 1), ("medium", 5), ("long", 22)):
            assert x[f"rv_{name}"] == pytest.approx(np.mean(past[-w:] ** 2), rel=1e-9)
            assert x[f"ret_{name}"] == pytest.approx(np.mean(past[-w:]), rel=1e-9, abs=1e-15)
        assert x["ewma_var"] == pytest.approx(riskmetrics(past, 0.94)[-1] ** 2, rel=1e-9)
        assert [x.get(f"ret_lag_{k}") for k in (1, 2, 3)] == [
            float(past[-k]) if k <= len(past) else None for k in (1, 2, 3)
        ]


def test_volatility_scores_match_numpy(session: tuple) -> None:
    models, bars, r, table = session
    y = r[1:]  # bar 2 onwards: the returns that were forecast
    scores = models.scores()
    reference = {}
    for model in ("har", "ewma", "last", "rolling"):
        s2 = series(table, bars, model, 5) ** 2
        qlike = np.log(s2) + y**2 / s2
        se = (y**2 - s2) ** 2
        reference[model] = {
            "qlike": qlike.mean(),
            "qlike_rolling": qlike[-WINDOW:].mean(),
            "mse": se.mean(),
            "mse_rolling": se[-WINDOW:].mean(),
        }
        got = scores[model]
        for metric, value in reference[model].items():
            assert got[metric] == pytest.approx(value, rel=1e-9), (model, metric)
    for model in ("har", "last", "rolling"):
        got, own, base = scores[model], reference[model], reference["ewma"]
        for sfx in ("", "_rolling"):
            rel = own["qlike" + sfx] - base["qlike" + sfx]
            assert got["qlike_rel_ewma" + sfx] == pytest.approx(rel, rel=1e-9, abs=1e-12)
            ratio = own["mse" + sfx] / base["mse" + sfx]
            assert got["mse_rel_ewma" + sfx] == pytest.approx(ratio, rel=1e-9)
    assert not any("rel_ewma" in k for k in scores["ewma"])


def test_return_scores_match_numpy(session: tuple) -> None:
    models, bars, r, table = session
    y = r[1:]
    scores = models.scores()
    reference = {}
    for model in ("linear", "zero"):
        f = series(table, bars, model, 5)
        lower, upper = series(table, bars, model, 6), series(table, bars, model, 7)
        e = y - f
        inside = (lower <= y) & (y <= upper)
        reference[model] = ref = {
            "mae": np.abs(e).mean(),
            "mae_rolling": np.abs(e[-WINDOW:]).mean(),
            "rmse": np.sqrt((e**2).mean()),
            "rmse_rolling": np.sqrt((e[-WINDOW:] ** 2).mean()),
            "coverage": inside.mean(),
            "coverage_rolling": inside[-WINDOW:].mean(),
        }
        signed = (y != 0) & (f != 0)
        if signed.any():
            hits = (y > 0) == (f > 0)
            ref["direction"] = hits[signed].mean()
            ref["direction_rolling"] = hits[signed][-WINDOW:].mean()
        for metric, value in ref.items():
            assert scores[model][metric] == pytest.approx(value, rel=1e-9), (model, metric)
    assert "direction" not in scores["zero"]  # undefined for a forecast that is always 0
    for sfx in ("", "_rolling"):
        for m in ("mae", "rmse"):
            ratio = reference["linear"][m + sfx] / reference["zero"][m + sfx]
            assert scores["linear"][f"{m}_rel_zero{sfx}"] == pytest.approx(ratio, rel=1e-9)


def test_score_rows_are_the_scores(session: tuple) -> None:
    models, bars, _, _ = session
    rows = score_rows(models.slots, models.config.horizons, models.symbol, bars[-1].start_us)
    flat = {(m, metric): v for _, _, m, _, metric, v in rows}
    assert flat == {(m, k): v for m, d in models.scores().items() for k, v in d.items()}
    targets = {m: t for _, _, m, t, _, _ in rows}
    assert targets == {
        "har": "volatility",
        "range_har": "volatility",
        "ewma": "volatility",
        "last": "volatility",
        "rolling": "volatility",
        "linear": "return",
        "zero": "return",
    }


def test_score_every() -> None:
    bars, metrics, _ = simulate(regime_sigma(30), seed=14)
    results = run(SymbolModels("X", ModelConfig(score_every=5)), bars, metrics)
    assert [i for i, res in enumerate(results) if res.scores] == [5, 10, 15, 20, 25, 30]
