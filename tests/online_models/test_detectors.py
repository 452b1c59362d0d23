"""The anomaly detectors on synthetic volatility regimes: the comparison runs, names a
winner, and the pipeline's default detector is that winner."""

from __future__ import annotations

import numpy as np
import pytest

from online_models import ModelConfig, SymbolModels
from online_models.detectors import DETECTORS, make_detector
from online_models.regimes import auc, compare_detectors, precision_at_k, regime_bars
from tests.online_models.helpers import regime_sigma, run, simulate


def test_compare_detectors_reports_a_winner() -> None:
    table = compare_detectors()
    print("\n" + table.to_string())
    assert set(table.index) == set(DETECTORS)
    winner = table.attrs["winner"]
    assert winner == table["auc"].idxmax()
    assert winner == ModelConfig().anomaly_detector
    assert table.loc[winner, "auc"] > 0.9
    assert (table["auc"] > 0.6).all()  # every detector sees the regimes, some better


def test_regime_bars_have_the_regimes_they_claim() -> None:
    bars, label = regime_bars(n_bars=2000, seed=3, regimes=5, regime_bars=40, multiplier=4.0)
    assert label.sum() == 5 * 40
    r = np.diff(np.log(np.array([b.close for b in bars], dtype=float)))
    inside = label[1:]
    assert np.std(r[inside]) / np.std(r[~inside]) == pytest.approx(4.0, rel=0.25)
    prices = [(b.open, b.high, b.low, b.close) for b in bars]
    assert all(
        lo is not None
        and o is not None
        and c is not None
        and h is not None
        and lo <= min(o, c) <= max(o, c) <= h
        for o, h, lo, c in prices
    )


def test_auc_and_precision_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 1)  # with ties
    labels = rng.random(300) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(scores, labels) == pytest.approx(pairs, rel=1e-12)
    top = np.argsort(-scores, kind="mergesort")[: labels.sum()]
    assert precision_at_k(scores, labels) == labels[top].mean()


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_runs_in_the_pipeline(name: str) -> None:
    bars, metrics, _ = simulate(regime_sigma(120, period=40), seed=31)
    cfg = ModelConfig(anomaly_detector=name, anomaly_grace=10)
    scores = [res.anomaly for res in run(SymbolModels("X", cfg), bars, metrics)]
    assert scores[:12] == [None] * 12  # the first bar, then the grace period
    assert all(0.0 <= s <= 1.0 for s in scores[12:] if s is not None)
    assert all(s is not None for s in scores[12:])


def test_unknown_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown anomaly detector"):
        make_detector("nope")
