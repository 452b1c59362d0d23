"""The bar anomaly detectors, by name, and the one way to run them (score, then learn).

Each reads the anomaly features of :mod:`online_models.features` and scores in
``[0, 1]``, high for an anomalous bar:

- ``range_tail``: :class:`TailScorer` on ``range``, the bar's log Parkinson variance (the
  default: it wins the comparison in :func:`online_models.regimes.compare_detectors`);
- ``surprise_tail``: :class:`TailScorer` on ``surprise``, the log squared return;
- ``hst``: River's ``HalfSpaceTrees`` on min-max scaled ``surprise``, ``range``, ``volume``;
- ``gaussian``: River's (two-sided) ``GaussianScorer`` on the return ``ret``.
"""

from __future__ import annotations

from typing import Any

from river import anomaly, base, compose, preprocessing

from online_models.tail_scorer import TailScorer

DETECTORS = ("range_tail", "surprise_tail", "hst", "gaussian")


def make_detector(name: str, window: int = 250, grace: int = 30, seed: int = 42) -> Any:
    """A fresh detector called ``name`` (one of :data:`DETECTORS`)."""
    if name == "range_tail":
        return TailScorer("range", window_size=window, grace_period=grace)
    if name == "surprise_tail":
        return TailScorer("surprise", window_size=window, grace_period=grace)
    if name == "hst":
        return (
            compose.Select("surprise", "range", "volume")
            | preprocessing.MinMaxScaler()
            | anomaly.HalfSpaceTrees(window_size=window, seed=seed)
        )
    if name == "gaussian":
        return anomaly.GaussianScorer(window_size=window, grace_period=grace)
    raise ValueError(f"unknown anomaly detector {name!r}; choose one of {DETECTORS}")


def score_then_learn(detector: Any, x: dict[str, float]) -> float:
    """Score bar features ``x``, then learn them (never the other way round)."""
    if isinstance(detector, base.SupervisedAnomalyDetector):
        score = float(detector.score_one(None, x["ret"]))  # type: ignore[arg-type]
        detector.learn_one(None, x["ret"])  # type: ignore[arg-type]
        return score
    score = float(detector.score_one(x))
    detector.learn_one(x)
    return score
