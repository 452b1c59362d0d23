"""The anomaly detectors against synthetic volatility regimes: which one finds them best.

:func:`regime_bars` injects high-volatility regimes into synthetic 1-minute bars;
:func:`compare_detectors` scores every detector of :mod:`online_models.detectors` on them
by ROC AUC and precision at k.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dataflows.records import US, Bar
from online_models.detectors import DETECTORS, make_detector, score_then_learn
from online_models.features import FeatureState


def regime_bars(
    n_bars: int = 4000,
    seed: int = 0,
    regimes: int = 12,
    regime_bars: int = 30,
    multiplier: float = 3.0,
    volume_multiplier: float = 1.5,
    bar_seconds: int = 60,
) -> tuple[list[Bar], np.ndarray]:
    """Synthetic 1-minute bars with ``regimes`` injected, non-overlapping stretches (after
    the first 300 bars) of ``multiplier`` times the volatility and ``volume_multiplier``
    times the volume. Returns the bars and a boolean label per bar, True inside a regime.
    The base volatility drifts slowly, so a detector has to adapt without forgetting what
    a regime looks like."""
    rng = np.random.default_rng(seed)
    label = np.zeros(n_bars, dtype=bool)
    slot = (n_bars - 300) // regimes  # one regime per slot, so that none overlap
    if slot <= regime_bars:
        raise ValueError("too many or too long regimes for n_bars")
    for k in range(regimes):
        start = 300 + k * slot + int(rng.integers(0, slot - regime_bars))
        label[start : start + regime_bars] = True
    drift = np.exp(0.3 * np.sin(np.arange(n_bars) / 400))
    sigma = 1e-3 * drift * np.where(label, multiplier, 1.0)
    steps = rng.standard_normal((n_bars, 8)) * (sigma / math.sqrt(8))[:, None]
    log_price = math.log(100.0) + np.cumsum(steps.ravel()).reshape(n_bars, 8)
    opens = np.concatenate([[math.log(100.0)], log_price[:-1, -1]])
    highs = np.maximum(log_price.max(axis=1), opens)
    lows = np.minimum(log_price.min(axis=1), opens)
    volume = rng.lognormal(8.0, 0.3, n_bars) * np.where(label, volume_multiplier, 1.0)
    closes = log_price[:, -1]
    ohlc = [[math.exp(p) for p in bar] for bar in zip(opens, highs, lows, closes, strict=True)]
    bars = [
        Bar(i * bar_seconds * US, "SYN", o, h, lo, c, float(v), None, 8, bar_seconds)
        for i, ((o, h, lo, c), v) in enumerate(zip(ohlc, volume, strict=True))
    ]
    return bars, label


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties at average rank)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = int(labels.sum())
    neg = len(labels) - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int | None = None) -> float:
    """Share of true regime bars among the ``k`` highest scores (``k`` = number of them)."""
    k = int(labels.sum()) if k is None else k
    top = np.argsort(-scores, kind="mergesort")[:k]
    return float(labels[top].mean())


def detector_scores(name: str, bars: Sequence[Bar], seed: int = 42) -> np.ndarray:
    """Anomaly score of every bar by detector ``name``, as the pipeline computes it."""
    features, detector = FeatureState(), make_detector(name, seed=seed)
    out = np.zeros(len(bars))
    prev = _close(bars[0])
    for i, bar in enumerate(bars[1:], start=1):
        r = math.log(_close(bar) / prev)
        prev = _close(bar)
        _, anomaly_x = features.update(bar, r)
        if anomaly_x is not None:
            out[i] = score_then_learn(detector, anomaly_x)
    return out


def compare_detectors(
    detectors: Sequence[str] = DETECTORS, n_series: int = 3, warmup: int = 300, **regimes: int
) -> pd.DataFrame:
    """AUC and precision@k of each detector at flagging regime bars, averaged over
    ``n_series`` synthetic series (:func:`regime_bars`, seeds 0..n-1), best first; the
    winner's name is in ``.attrs['winner']``."""
    rows: dict[str, dict[str, float]] = {d: {"auc": 0.0, "precision_at_k": 0.0} for d in detectors}
    for d in detectors:
        rows[d]["seconds"] = 0.0
    for seed in range(n_series):
        bars, label = regime_bars(seed=seed, **regimes)
        for d in detectors:
            start = time.perf_counter()
            scores = detector_scores(d, bars, seed=seed)
            rows[d]["seconds"] += time.perf_counter() - start
            rows[d]["auc"] += auc(scores[warmup:], label[warmup:]) / n_series
            rows[d]["precision_at_k"] += precision_at_k(scores[warmup:], label[warmup:]) / n_series
    table = pd.DataFrame.from_dict(rows, orient="index").sort_values("auc", ascending=False)
    table.index.name = "detector"
    table.attrs["winner"] = str(table.index[0])
    return table


def _close(bar: Bar) -> float:
    if bar.close is None:
        raise ValueError(f"the bar at {bar.start_us} has no prices")
    return bar.close
