"""Real data: daily S&P 500 1999-2018 (arch.data.sp500), every online model against a
GJR-GARCH(1,1,1) refitted by ``arch``, the strongest classical reference (issue 15).

The required result: the best online volatility model's 1-day QLIKE is at or below the
refitted GJR-GARCH's, the reference computed here, independently of
``online_models.sp500``: ``arch`` fits the model every 20 days on the returns before the
fit (an expanding window) and this test runs the GJR variance recursion itself with those
parameters. Nothing is tuned on the scored days: the online models see each day once,
forecast it, then learn it. (The models were designed on this series, so the margin is
optimistic; README, "On real data".)
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from arch import arch_model

from online_models.sp500 import (
    HORIZONS,
    Evaluation,
    arch_forecasts,
    bar_dates,
    format_table,
    run_models,
    score_tables,
    sp500_bars,
    volatility_scores,
)

BURN_IN, REFIT = 250, 20


def gjr_reference(r: np.ndarray, burn_in: int = BURN_IN, refit: int = REFIT) -> np.ndarray:
    """1-day GJR-GARCH(1,1,1) volatility forecasts of ``r[t]``, ``t >= burn_in``: fitted
    by ``arch`` on ``r[:t0]`` every ``refit`` days, the recursion
    ``s2 = omega + (alpha + gamma [e < 0]) e^2 + beta s2`` run here in between."""
    y = 100.0 * r
    out = np.full(len(r), np.nan)
    s2 = 0.0
    params: dict[str, float] = {}
    for t in range(burn_in - 1, len(r) - 1):  # having seen y[t], forecast y[t + 1]
        if (t + 1 - burn_in) % refit == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = arch_model(y[: t + 1], p=1, o=1, q=1, rescale=False).fit(disp="off")
            params = {k: float(v) for k, v in res.params.items()}
            s2 = float(res.conditional_volatility[-1]) ** 2
        e = y[t] - params["mu"]
        shock = params["alpha[1]"] + (params["gamma[1]"] if e < 0 else 0.0)
        s2 = params["omega"] + shock * e * e + params["beta[1]"] * s2
        out[t + 1] = math.sqrt(s2) / 100.0
    return out


@pytest.fixture(scope="module")
def stepped() -> tuple[np.ndarray, dict, dict, dict]:
    models, r, values, widths = run_models(sp500_bars())
    targets = {name: slot.target for name, slot in models.slots.items()}
    return r, values, widths, targets


@pytest.fixture(scope="module")
def evaluation(stepped: tuple[np.ndarray, dict, dict, dict]) -> Evaluation:
    r, values, widths, targets = stepped
    gjr = {("gjr-garch(1,1,1)", 1): gjr_reference(r)}
    return score_tables(
        r,
        {**values, **gjr},
        widths,
        targets | {"gjr-garch(1,1,1)": "volatility"},
        {},
        bar_dates(sp500_bars()),
        BURN_IN,
    )


def test_the_best_online_model_beats_the_refitted_gjr_garch(evaluation: Evaluation) -> None:
    vol = evaluation.volatility
    print("\n" + format_table(evaluation))
    assert evaluation.n_scored == {1: 5030 - BURN_IN}  # every daily return after the burn-in
    gjr = vol.loc["gjr-garch(1,1,1)", "qlike"]
    assert gjr == pytest.approx(-8.3438, abs=5e-4), "the issue's figure for this reference"
    online = vol.drop(index="gjr-garch(1,1,1)")
    best = online["qlike"].idxmin()
    margin = online.loc[best, "qlike"] - gjr
    print(f"best online model: {best}; QLIKE minus GJR-GARCH's: {margin:+.4f}")
    assert best == "range_har"
    assert online.loc[best, "qlike"] <= gjr
    # The return-only HAR model does not: the bars' ranges are what it lacks.
    assert vol.loc["har", "qlike"] > gjr
    assert vol.loc["range_har", "mse_rel_ewma"] < vol.loc["har", "mse_rel_ewma"] < 1


def test_return_models_never_lose_to_zero_and_their_intervals_hold(
    evaluation: Evaluation,
) -> None:
    ret = evaluation.returns
    assert ret.loc["zero", "mae_rel_zero"] == 1.0
    # The zero forecast is famously hard to beat: the linear model must not lose in RMSE
    # (what it minimizes) and may lose at most a hair in MAE.
    assert ret.loc["linear", "rmse_rel_zero"] <= 1.0
    assert ret.loc["linear", "mae_rel_zero"] < 1.002
    for model in ("linear", "zero"):
        assert ret.loc[model, "coverage"] == pytest.approx(0.9, abs=0.01)


def test_arch_forecasts_follow_the_gjr_recursion_and_never_see_their_day() -> None:
    """The evaluation's peers (arch's own forecasts) equal this test's recursion at 1 day,
    and a return changed after a forecast's origin does not change it (no look-ahead)."""
    r = np.array([b.close for b in sp500_bars()[:701]])
    r = np.log(r[1:] / r[:-1])
    mine = gjr_reference(r, burn_in=250, refit=100)
    theirs = arch_forecasts(r, "GARCH", 1, burn_in=250, refit=100, horizons=(1, 5))
    scored = slice(250, len(r))
    # The same fits to the optimizer's tolerance: arch sees the block's later days too
    # (excluded from the fit by last_obs), which moves its starting values a hair.
    np.testing.assert_allclose(theirs[1][scored], mine[scored], rtol=1e-6)
    assert np.isnan(theirs[1][:250]).all()
    assert np.isfinite(theirs[5][254:]).all()
    shocked = r.copy()
    shocked[400] = -0.2  # a crash on day 400: forecasts of days up to 400 cannot know it
    after = arch_forecasts(shocked, "GARCH", 1, burn_in=250, refit=100, horizons=(1, 5))
    np.testing.assert_array_equal(after[1][:401], theirs[1][:401])
    np.testing.assert_array_equal(after[5][:405], theirs[5][:405])
    assert after[1][401] > theirs[1][401]
    # EGARCH's forecasts beyond a day are simulated, from a seeded generator.
    first, again = (
        arch_forecasts(r[:450], "EGARCH", 1, burn_in=250, refit=100, horizons=(1, 5))
        for _ in range(2)
    )
    np.testing.assert_array_equal(first[5], again[5])
    assert np.isfinite(first[5][254:]).all()


def test_every_volatility_model_is_scored_on_the_same_days_at_each_horizon() -> None:
    r = np.array([0.01, -0.02, 0.005, 0.03, -0.01, 0.0, 0.02, -0.015])
    a = np.full(len(r), 0.01)
    late = a.copy()
    late[:4] = np.nan  # a peer that starts forecasting later
    ev = score_tables(
        r,
        {("a", 1): a, ("b", 1): late, ("a", 5): a, ("ewma", 1): a},
        {},
        {"a": "volatility", "b": "volatility", "ewma": "volatility"},
        {},
        np.arange(len(r)).astype("datetime64[D]"),
        burn_in=2,
    )
    assert ev.n_scored == {1: 4, 5: 6}
    expected, _ = volatility_scores(r[4:], a[4:])
    assert ev.volatility.loc["a", "qlike"] == pytest.approx(expected)
    assert ev.volatility.loc["a", "qlike_h5"] == pytest.approx(volatility_scores(r[2:], a[2:])[0])
    assert np.isnan(ev.volatility.loc["b", "qlike_h5"])
    assert HORIZONS == (1, 5, 22)


def test_volatility_scores_are_plain_numpy() -> None:
    r = np.array([0.01, -0.02, 0.0])
    sigma = np.array([0.01, 0.01, 0.02])
    qlike, mse = volatility_scores(r, sigma)
    s2 = sigma**2
    assert qlike == pytest.approx(np.mean(np.log(s2) + r**2 / s2))
    assert mse == pytest.approx(np.mean((r**2 - s2) ** 2))
