"""`sentinel evaluate`: real S&P 500 data through the real dataflow."""

from __future__ import annotations

import numpy as np

from dataflows.records import RowBlock
from online_models.sp500 import run_models, sp500_bars, volatility_scores
from sentinel.evaluate import evaluate, sp500_batches


def test_best_online_volatility_model_is_at_least_as_good_as_ewma_through_the_dataflow() -> None:
    evaluation, _ = evaluate()
    vol = evaluation.volatility
    online = vol.drop(index=["garch(1,1)"])
    assert online["qlike"].min() <= vol.loc["ewma", "qlike"]
    assert np.isfinite(vol.loc["garch(1,1)", "qlike"])
    assert evaluation.n_scored == len(sp500_bars()) - 1 - 250
    # The flow's forecasts score exactly as the models stepped directly over the same bars.
    _, r, values, _ = run_models(sp500_bars())
    qlike, _ = volatility_scores(r[250:], values["har"][250:])
    assert vol.loc["har", "qlike"] == qlike
    ret = evaluation.returns
    assert abs(ret.loc["linear", "coverage"] - 0.9) < 0.02, "90% intervals cover about 90%"


def test_four_trades_a_day_rebuild_the_daily_bars() -> None:
    batches = sp500_batches()
    blocks = [payload for b in batches for _, payload in b.messages]
    rows = sum(len(p.time) for p in blocks if isinstance(p, RowBlock))
    assert rows == 4 * len(sp500_bars())
