"""Naive "last realized" volatility baseline."""

from __future__ import annotations

from typing import Any

from river import base


class LastVolatility(base.Regressor):
    """Forecasts the next bar's variance as the last squared return: ``sigma = |r_t|``.

    The random walk of realized variance, the crudest forecast there is: any model that
    loses to it has no business in production. After a bar that did not move it
    forecasts zero (floored at ``ModelConfig.min_vol`` by the pipeline), and its QLIKE
    explodes on the next bar that does: that is what QLIKE thinks of such a forecast.

    Examples
    --------
    >>> model = LastVolatility()
    >>> model.learn_one({}, 0.02**2)
    >>> round(model.predict_one({}) ** 0.5, 6)
    0.02
    """

    def __init__(self) -> None:
        self._last = 0.0

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.RegTarget) -> None:
        self._last = y

    def predict_one(self, x: dict[base.typing.FeatureName, Any]) -> base.typing.RegTarget:
        return self._last
