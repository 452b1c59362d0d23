"""Prequential scores of one model at one horizon: cumulative and rolling.

Metric names (``model_scores.metric``); ``*_rolling`` over the last ``window`` scored bars:

- volatility: ``qlike``, ``mse`` (of ``sigma^2`` against ``r^2``);
- return: ``mae``, ``rmse``, ``direction`` (share of bars where the forecast and the
  realized return have the same sign, over bars where neither is zero; undefined for a
  model that always forecasts zero), ``coverage`` (share of realized returns inside the
  forecast interval).

Relative scores, added by :func:`relative_scores`: ``qlike_rel_ewma`` is the model's QLIKE
*minus* the EWMA baseline's (QLIKE is a log-likelihood up to a constant, so differences
mean something and ratios do not; negative is better); ``mse_rel_ewma``, ``mae_rel_zero``
and ``rmse_rel_zero`` are *ratios* to the baseline's (below 1 is better).
"""

from __future__ import annotations

import math
from typing import Any

from river import metrics, stats, utils


def qlike(sigma: float, r: float) -> float:
    """QLIKE loss of volatility forecast ``sigma`` for the realized return ``r``.

    ``log(sigma^2) + r^2 / sigma^2``: robust to the noise of ``r^2`` as a proxy of the
    true variance (Patton, 2011), and the loss a variance forecast should minimize. River
    has no QLIKE metric, hence this function and a plain mean of it.
    """
    s2 = sigma * sigma
    return math.log(s2) + r * r / s2


class VolatilityScore:
    """QLIKE and MSE of one volatility model's forecasts at one horizon."""

    def __init__(self, window: int) -> None:
        self.qlike = stats.Mean()
        self.qlike_rolling: Any = utils.Rolling(stats.Mean, window_size=window)
        self.mse = metrics.MSE()
        self.mse_rolling: Any = utils.Rolling(metrics.MSE, window_size=window)

    def update(self, r: float, sigma: float) -> None:
        loss = qlike(sigma, r)
        self.qlike.update(loss)
        self.qlike_rolling.update(loss)
        self.mse.update(r * r, sigma * sigma)
        self.mse_rolling.update(r * r, sigma * sigma)

    def values(self) -> dict[str, float]:
        if not self.qlike.n:
            return {}
        return {
            "qlike": self.qlike.get(),
            "qlike_rolling": self.qlike_rolling.get(),
            "mse": self.mse.get(),
            "mse_rolling": max(self.mse_rolling.get(), 0.0),
        }


class ReturnScore:
    """MAE, RMSE, directional accuracy and interval coverage of one return model."""

    def __init__(self, window: int) -> None:
        self.n = 0
        self.mae = metrics.MAE()
        self.mae_rolling: Any = utils.Rolling(metrics.MAE, window_size=window)
        self.rmse = metrics.RMSE()
        self.rmse_rolling: Any = utils.Rolling(metrics.RMSE, window_size=window)
        self.direction = stats.Mean()
        self.direction_rolling: Any = utils.Rolling(stats.Mean, window_size=window)
        self.coverage = stats.Mean()
        self.coverage_rolling: Any = utils.Rolling(stats.Mean, window_size=window)

    def update(self, r: float, value: float, lower: float | None, upper: float | None) -> None:
        self.n += 1
        for m in (self.mae, self.mae_rolling, self.rmse, self.rmse_rolling):
            m.update(r, value)
        if r != 0 and value != 0:
            hit = float((r > 0) == (value > 0))
            self.direction.update(hit)
            self.direction_rolling.update(hit)
        if lower is not None and upper is not None:
            inside = float(lower <= r <= upper)
            self.coverage.update(inside)
            self.coverage_rolling.update(inside)

    def values(self) -> dict[str, float]:
        if not self.n:
            return {}
        out = {
            "mae": self.mae.get(),
            "mae_rolling": max(self.mae_rolling.get(), 0.0),
            "rmse": self.rmse.get(),
            "rmse_rolling": _rolling_rmse(self.rmse_rolling),
        }
        if self.direction.n:
            out["direction"] = self.direction.get()
            out["direction_rolling"] = self.direction_rolling.get()
        if self.coverage.n:
            out["coverage"] = self.coverage.get()
            out["coverage_rolling"] = self.coverage_rolling.get()
        return out


def _rolling_rmse(rolling: Any) -> float:
    """A rolling RMSE, from its mean squared error. River's rolling mean subtracts what
    leaves the window, so a window of exact forecasts (zero returns, zero forecasts) can
    read -1e-30, and River's ``RMSE.get`` (``mse ** 0.5``) then returns a complex number."""
    return math.sqrt(max(metrics.MSE.get(rolling.obj), 0.0))


def relative_scores(
    own: dict[str, float], baseline: dict[str, float], baseline_name: str
) -> dict[str, float]:
    """The ``*_rel_<baseline>`` scores of a model, from its and the baseline's values."""
    out: dict[str, float] = {}
    for suffix in ("", "_rolling"):
        if f"qlike{suffix}" in own and f"qlike{suffix}" in baseline:
            out[f"qlike_rel_{baseline_name}{suffix}"] = (
                own[f"qlike{suffix}"] - baseline[f"qlike{suffix}"]
            )
        for ratio in ("mse", "mae", "rmse"):
            key = f"{ratio}{suffix}"
            if key in own and baseline.get(key):
                out[f"{ratio}_rel_{baseline_name}{suffix}"] = own[key] / baseline[key]
    return out
