"""One-sided Gaussian tail score of one feature: how unusually *large* it is."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

from river import base, stats, utils

_NORMAL = NormalDist()


class TailScorer(base.AnomalyDetector):
    """Scores ``x[feature]`` by the normal CDF of its z-score over a rolling window.

    River's ``GaussianScorer`` is two-sided and reads ``y``; a volatility spike is one-sided
    (an unusually quiet bar is no alarm) and lives in a feature dict, hence this scorer.
    The score is in ``[0, 1]``; it is 0 until ``grace_period`` values have been learned,
    and for a missing feature.

    Parameters
    ----------
    feature
        The feature to score, e.g. ``'range'`` (log Parkinson variance of the bar relative
        to the long-window variance) from :mod:`online_models.features`.
    window_size
        Values in the rolling mean and variance.
    grace_period
        Values to learn before scoring.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(3)
    >>> scorer = TailScorer(feature="v", window_size=100, grace_period=10)
    >>> for _ in range(200):
    ...     scorer.learn_one({"v": rng.gauss(0.0, 1.0)})
    >>> round(scorer.score_one({"v": 2.0}), 3), round(scorer.score_one({"v": -2.0}), 3)
    (0.991, 0.017)
    """

    def __init__(self, feature: str = "range", window_size: int = 250, grace_period: int = 30):
        self.feature = feature
        self.window_size = window_size
        self.grace_period = grace_period
        # river's Rolling proxies the wrapped statistic's methods, which mypy cannot see.
        self._var: Any = utils.Rolling(stats.Var, window_size=window_size)

    def learn_one(self, x: dict[base.typing.FeatureName, Any]) -> None:
        if self.feature in x:
            self._var.update(x[self.feature])

    def score_one(self, x: dict[base.typing.FeatureName, Any]) -> float:
        n = len(self._var.window)
        if self.feature not in x or n < max(self.grace_period, 2):
            return 0.0
        sd = math.sqrt(max(self._var.get(), 0.0))
        if sd == 0:
            return 0.0
        return _NORMAL.cdf((x[self.feature] - self._var.mean.get()) / sd)
