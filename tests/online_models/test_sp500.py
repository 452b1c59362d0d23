"""Real data: daily S&P 500 1999-2018 (arch.data.sp500), every model and a GARCH(1,1) peer.

The required result: the best online volatility model's QLIKE is at least as good as
EWMA's on the full series after the 250-day burn-in. Nothing is tuned on the scored
days: the models see each day once, forecast it, then learn it.
"""

from __future__ import annotations

import numpy as np
import pytest

from online_models.sp500 import Evaluation, evaluate_sp500, format_table, volatility_scores


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    return evaluate_sp500(burn_in=250, garch_refit=20)


def test_best_online_volatility_model_beats_ewma(evaluation: Evaluation) -> None:
    vol = evaluation.volatility
    assert evaluation.n_scored == 5030 - 250  # every daily return after the burn-in
    online = vol.drop(index="garch")
    best = online["qlike"].idxmin()
    print("\n" + format_table(evaluation))
    gap = vol.loc[best, "qlike"] - vol.loc["garch", "qlike"]
    print(f"best online model: {best}; QLIKE vs GARCH(1,1): {gap:+.4f}")
    assert online.loc[best, "qlike"] <= vol.loc["ewma", "qlike"]
    assert best == "har"
    assert vol.loc["har", "qlike_rel_ewma"] < 0
    assert vol.loc["har", "mse_rel_ewma"] < 1
    # The known ordering of the classic peers (DESIGN.md): GARCH(1,1) beats EWMA, which
    # beats a 22-day rolling window.
    assert vol.loc["garch", "qlike"] < vol.loc["ewma", "qlike"] < vol.loc["rolling", "qlike"]


def test_return_models_and_intervals(evaluation: Evaluation) -> None:
    ret = evaluation.returns
    assert ret.loc["zero", "mae_rel_zero"] == 1.0
    # The zero forecast is famously hard to beat: the linear model must not lose in RMSE
    # (what it minimizes) and may lose at most a hair in MAE.
    assert ret.loc["linear", "rmse_rel_zero"] <= 1.0
    assert ret.loc["linear", "mae_rel_zero"] < 1.002
    for model in ("linear", "zero"):
        assert ret.loc[model, "coverage"] == pytest.approx(0.9, abs=0.01)


def test_volatility_scores_are_plain_numpy() -> None:
    r = np.array([0.01, -0.02, 0.0])
    sigma = np.array([0.01, 0.01, 0.02])
    qlike, mse = volatility_scores(r, sigma)
    s2 = sigma**2
    assert qlike == pytest.approx(np.mean(np.log(s2) + r**2 / s2))
    assert mse == pytest.approx(np.mean((r**2 - s2) ** 2))
