"""Random-walk (zero) return baseline."""

from __future__ import annotations

from typing import Any

from river import base


class ZeroReturn(base.Regressor):
    """Forecasts a zero log return: the random walk, famously hard to beat.

    Examples
    --------
    >>> model = ZeroReturn()
    >>> model.learn_one({"ret_lag_1": 0.01}, 0.02)
    >>> model.predict_one({"ret_lag_1": 0.02})
    0.0
    """

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.RegTarget) -> None:
        return None

    def predict_one(self, x: dict[base.typing.FeatureName, Any]) -> base.typing.RegTarget:
        return 0.0
