"""Linear next-bar return model."""

from __future__ import annotations

import math
from typing import Any

from river import base, linear_model


class LinearReturn(base.Regressor):
    """Online linear regression of the next log return on lagged returns.

    ``x`` holds the features of :mod:`online_models.features`; ``y`` is the log return of
    the bar being forecast. Returns enter in units of ``sqrt(rv_long)``, the long-window
    volatility: that makes the regression homoskedastic (weighted least squares, in
    effect), so a calm stretch weighs as much as a crash, and ``clip`` winsorizes the
    standardized target. The forecast is the fitted standardized return times
    ``sqrt(rv_long)``. With ``vol_features``, the log ratios of the medium and EWMA
    variances to the long one join the lags (volatility in the mean).

    Parameters
    ----------
    regressor
        Linear regressor on the standardized features; defaults to
        ``linear_model.BayesianLinearRegression()``, exact recursive least squares with a
        ridge prior, which needs no learning rate.
    lags
        Lagged returns used, ``ret_lag_1 .. ret_lag_<lags>``.
    vol_features
        Add the volatility ratio features.
    clip
        Winsorize the standardized target at this many long-window sigmas.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> model, prev = LinearReturn(lags=1), 0.0
    >>> for _ in range(2000):  # an AR(1) with coefficient -0.3
    ...     r = -0.3 * prev + rng.gauss(0.0, 0.01)
    ...     model.learn_one({"ret_lag_1": prev, "rv_long": 1e-4}, r)
    ...     prev = r
    >>> round(model.predict_one({"ret_lag_1": 0.01, "rv_long": 1e-4}), 3)
    -0.003
    """

    def __init__(
        self,
        regressor: base.Regressor | None = None,
        lags: int = 2,
        vol_features: bool = False,
        clip: float = 5.0,
    ) -> None:
        self.regressor = regressor
        self.lags = lags
        self.vol_features = vol_features
        self.clip = clip
        self._regressor: base.Regressor = (
            regressor.clone() if regressor is not None else linear_model.BayesianLinearRegression()
        )

    def _design(
        self, x: dict[base.typing.FeatureName, Any]
    ) -> tuple[dict[base.typing.FeatureName, float], float]:
        ref = x.get("rv_long", 0.0)
        scale = math.sqrt(ref) if ref > 0 else 0.0
        if not scale:
            return {}, 0.0
        phi: dict[base.typing.FeatureName, float] = {
            f"lag_{i}": x[f"ret_lag_{i}"] / scale
            for i in range(1, self.lags + 1)
            if f"ret_lag_{i}" in x
        }
        if self.vol_features:
            # A variance a hair below zero (rounding) counts as 0.
            phi["log_rv_medium"] = math.log(max(x.get("rv_medium", ref) / ref, 0.0) + 1e-2)
            phi["log_ewma"] = math.log(max(x.get("ewma_var", ref) / ref, 0.0) + 1e-2)
        phi["const"] = 1.0
        return phi, scale

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.RegTarget) -> None:
        phi, scale = self._design(x)
        if scale:
            self._regressor.learn_one(phi, max(-self.clip, min(self.clip, y / scale)))

    def predict_one(self, x: dict[base.typing.FeatureName, Any]) -> base.typing.RegTarget:
        phi, scale = self._design(x)
        return float(self._regressor.predict_one(phi)) * scale if scale else 0.0
