"""Rolling-window (historical) volatility baseline."""

from __future__ import annotations

from typing import Any

from river import base, stats, utils


class RollingVolatility(base.Regressor):
    """Forecasts the next bar's variance as the mean squared return of the last bars.

    Parameters
    ----------
    window_size
        Bars in the window (22 trading days is a month of daily bars).

    Examples
    --------
    >>> model = RollingVolatility(window_size=2)
    >>> for r in (0.05, 0.01, 0.03):
    ...     model.learn_one({}, r * r)
    >>> round(model.predict_one({}), 8)
    0.0005
    """

    def __init__(self, window_size: int = 22) -> None:
        self.window_size = window_size
        # river's Rolling proxies the wrapped statistic's methods, which mypy cannot see.
        self._mean: Any = utils.Rolling(stats.Mean, window_size=window_size)

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.RegTarget) -> None:
        self._mean.update(y)

    def predict_one(self, x: dict[base.typing.FeatureName, Any]) -> base.typing.RegTarget:
        return float(self._mean.get())
