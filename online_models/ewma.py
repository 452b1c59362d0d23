"""RiskMetrics EWMA volatility baseline."""

from __future__ import annotations

from typing import Any

from river import base, stats


class EWMAVolatility(base.Regressor):
    """Exponentially weighted variance of the returns (RiskMetrics), ignoring ``x``.

    ``y`` is a bar's squared log return; ``predict_one`` is the next bar's variance,
    ``s2 <- decay * s2 + (1 - decay) * y``, started at the first ``y``. It is flat in the
    horizon, as RiskMetrics' random walk in variance implies.

    Parameters
    ----------
    decay
        RiskMetrics' lambda: 0.94 for daily data.

    Examples
    --------
    >>> model = EWMAVolatility(decay=0.5)
    >>> for r in (0.02, -0.01, 0.03):
    ...     model.learn_one({}, r * r)
    >>> round(model.predict_one({}), 8)
    0.000575
    """

    def __init__(self, decay: float = 0.94) -> None:
        self.decay = decay
        self._var = stats.EWMean(fading_factor=1.0 - decay)

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.RegTarget) -> None:
        self._var.update(y)

    def predict_one(self, x: dict[base.typing.FeatureName, Any]) -> base.typing.RegTarget:
        return self._var.get()
