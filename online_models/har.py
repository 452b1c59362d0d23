"""HAR-style volatility model, fitted online by QLIKE."""

from __future__ import annotations

import math
from typing import Any

from river import base, linear_model

from online_models.features import WINDOW_NAMES

_FLOOR = 1e-2  # short-window variance floor, as a fraction of the long one (zero returns)


def log_ratio(value: float, ref: float) -> float:
    """``log(value / ref + floor)``; a variance a hair below zero (rounding) counts as 0."""
    return math.log(max(value / ref, 0.0) + _FLOOR)


class HARVolatility(base.Regressor):
    """Heterogeneous autoregressive (HAR) volatility forecast with a leverage effect.

    ``x`` holds the features of :mod:`online_models.features`; ``y`` is the squared log
    return of the bar being forecast, and ``predict_one`` its conditional mean: the
    variance (take the square root for the volatility).

    The model is log-linear, so the forecast is positive by construction:
    ``log E[y | x] = log rv_long + w . phi(x)`` with ``phi`` the log ratios of the short
    and medium realized variances and of the EWMA variance to the long one, plus (with
    ``leverage``) the negative parts of the short, medium and long mean returns and the
    last absolute return, in units of ``sqrt(rv_long)`` (Corsi and Reno's HAR with
    leverage), and a constant. Working in ratios to ``rv_long`` makes every input
    dimensionless and of order one, whatever the bar length or the price level, so they
    need no scaling.

    ``w`` minimizes QLIKE, ``log s2 + y / s2``, the Gaussian quasi-likelihood, which is
    the loss of a Gamma GLM with a log link. Each ``learn_one`` is one Fisher scoring
    (online Newton) step: ``regressor`` learns the working response ``eta + y / mu - 1``,
    where ``eta`` is the current log-ratio forecast and ``mu`` its exponential. At QLIKE's
    optimum ``E[y / mu] = 1``, so the forecast is unbiased for ``r^2`` without the
    ``exp(residual)`` correction that regressing ``log r^2`` needs, and zero returns are
    fine since ``y`` is never logged. ``clip`` caps ``y / mu`` so that one crash day does
    not swing the weights.

    The default regressor is recursive least squares with exponential forgetting
    (``BayesianLinearRegression(alpha=10, smoothing=0.999)``, a memory of about 1000
    bars). Forgetting matters here: QLIKE's gradient ``1 - y / mu`` is bounded when the
    model over-forecasts and unbounded when it under-forecasts, so with the ``1/t`` steps
    of plain least squares an early over-shoot takes thousands of bars to unwind (we
    measured forecasts twice too high after 5000 simulated bars); with forgetting, the
    steps stay of order ``1/1000`` and the prior keeps the first ones small.

    Parameters
    ----------
    regressor
        Linear regressor that learns the working response; defaults to
        ``linear_model.BayesianLinearRegression(alpha=10, smoothing=0.999)``.
    leverage
        Add the negative-return and absolute-return features.
    clip
        Cap of ``y / mu`` in a learning step.
    max_log_ratio
        Cap of ``|w . phi|``: the forecast stays within ``exp(+-max_log_ratio)`` of
        ``rv_long``.

    Examples
    --------
    >>> import random
    >>> from online_models.features import FeatureState
    >>> from dataflows.records import Bar
    >>> rng = random.Random(7)
    >>> state, model, x = FeatureState(), HARVolatility(), {}
    >>> for i in range(500):  # sigma alternates between 0.02 and 0.01 every 100 bars
    ...     r = rng.gauss(0.0, 0.01 if (i // 100) % 2 else 0.02)
    ...     model.learn_one(x, r * r)
    ...     x, _ = state.update(Bar(i, "X", 1, 1, 1, 1, 1, None, 1, 60), r)
    >>> round(model.predict_one(x) ** 0.5, 4)
    0.0187
    """

    reference = "rv_long"  # the feature the forecast is a multiple of

    def __init__(
        self,
        regressor: base.Regressor | None = None,
        leverage: bool = True,
        clip: float = 30.0,
        max_log_ratio: float = 7.0,
    ) -> None:
        self.regressor = regressor
        self.leverage = leverage
        self.clip = clip
        self.max_log_ratio = max_log_ratio
        self._regressor: base.Regressor = (
            regressor.clone()
            if regressor is not None
            else linear_model.BayesianLinearRegression(alpha=10.0, smoothing=0.999)
        )

    def _design(
        self, x: dict[base.typing.FeatureName, Any]
    ) -> dict[base.typing.FeatureName, float] | None:
        ref = x.get(self.reference, 0.0)
        if not ref > 0:
            return None
        phi = self._ratios(x, ref)
        phi["log_ewma"] = log_ratio(x.get("ewma_var", ref), ref)
        if self.leverage:
            self._leverage(phi, x, math.sqrt(ref))
        phi["const"] = 1.0
        return phi

    def _ratios(
        self, x: dict[base.typing.FeatureName, Any], ref: float
    ) -> dict[base.typing.FeatureName, float]:
        """The log ratios of the variance features to ``ref``: here the short and medium
        realized variances."""
        return {
            f"log_rv_{name}": log_ratio(x.get(f"rv_{name}", ref), ref) for name in WINDOW_NAMES[:-1]
        }

    @staticmethod
    def _leverage(
        phi: dict[base.typing.FeatureName, float],
        x: dict[base.typing.FeatureName, Any],
        scale: float,
    ) -> None:
        """The negative parts of the mean returns and the last absolute return, in
        units of ``scale``."""
        for name in WINDOW_NAMES:
            phi[f"neg_{name}"] = min(x.get(f"ret_{name}", 0.0), 0.0) / scale
        phi["abs_short"] = abs(x.get("ret_short", 0.0)) / scale

    def _eta(self, phi: dict[base.typing.FeatureName, float]) -> float:
        eta = float(self._regressor.predict_one(phi))
        return max(-self.max_log_ratio, min(self.max_log_ratio, eta))

    def learn_one(self, x: dict[base.typing.FeatureName, Any], y: base.typing.RegTarget) -> None:
        phi = self._design(x)
        if phi is None:
            return
        eta = self._eta(phi)
        u = min(y / (x[self.reference] * math.exp(eta)), self.clip)
        self._regressor.learn_one(phi, eta + u - 1.0)

    def predict_one(self, x: dict[base.typing.FeatureName, Any]) -> base.typing.RegTarget:
        phi = self._design(x)
        if phi is None:
            return max(float(x.get("ewma_var", 0.0)), 0.0)
        return float(x[self.reference] * math.exp(self._eta(phi)))
