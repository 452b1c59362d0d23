"""The per-bar features of one symbol, from which every model learns and forecasts.

After the bar with log return ``r_t``, :meth:`FeatureState.update` returns ``x_t``:

- ``rv_short``, ``rv_medium``, ``rv_long``: mean of ``r^2`` over the last 1, 5, 22 bars
  (the HAR windows; fewer while the window fills);
- ``ret_short``, ``ret_medium``, ``ret_long``: mean of ``r`` over the same windows;
- ``rg_short``, ``rg_medium``, ``rg_long``: mean over the same windows of each bar's range
  variance, its squared opening gap ``ln(open_t / close_{t-1})^2`` plus its Garman-Klass
  variance ``0.5 ln(high/low)^2 - (2 ln 2 - 1) ln(close/open)^2`` (the gap is what a
  bar's range cannot see: the night, or the jump to a bar's first trade). For a bar that
  trades once it is ``r^2``; for a bar with a range, a far less noisy measure of its
  variance than ``r^2`` (Garman and Klass 1980: about 7 times as efficient);
- ``ewma_var``: RiskMetrics variance, ``lambda * s2 + (1 - lambda) * r^2`` started at the
  first ``r^2`` (the same recursion as ``dataflows.metrics``);
- ``ret_lag_1 .. ret_lag_k``: ``r_t, r_{t-1}, ...``.

and the anomaly features of bar ``t``, or ``None`` before the first return. They are
raw logs: the detector's own rolling window is their yardstick, and a yardstick as short as
``rv_long`` would absorb a volatility regime within a few bars (``eps`` is a millionth of
the EWMA variance before bar ``t``, so that a bar without movement is merely very low):

- ``ret``: ``r_t``; ``surprise``: ``log(r_t^2 + 1e3 * eps)``;
- ``range``: ``log(ln(high/low)^2 / (4 ln 2) + eps)``, the bar's Parkinson variance (a
  bar's range measures its volatility far better than its return does);
- ``volume``: ``log1p(volume)`` minus its exponentially weighted mean before bar ``t``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from river import stats, utils

from dataflows.records import Bar

WINDOW_NAMES = ("short", "medium", "long")
_PARKINSON = 1.0 / (4.0 * math.log(2.0))
_GK_CLOSE = 2.0 * math.log(2.0) - 1.0
_VOLUME_FADING = 0.05  # about a 20-bar memory for the volume baseline


@dataclass
class FeatureState:
    """Picklable rolling state of one symbol, updated once per bar that has a return."""

    har_windows: tuple[int, int, int] = (1, 5, 22)
    ewma_lambda: float = 0.94
    return_lags: int = 2
    # river's Rolling proxies the wrapped statistic's methods, which mypy cannot see.
    sq_means: list[Any] = field(init=False)
    ret_means: list[Any] = field(init=False)
    range_means: list[Any] = field(init=False)
    ewma_var: stats.EWMean = field(init=False)
    log_volume: stats.EWMean = field(init=False)
    lags: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.sq_means = [utils.Rolling(stats.Mean, window_size=w) for w in self.har_windows]
        self.ret_means = [utils.Rolling(stats.Mean, window_size=w) for w in self.har_windows]
        self.range_means = [utils.Rolling(stats.Mean, window_size=w) for w in self.har_windows]
        self.ewma_var = stats.EWMean(fading_factor=1.0 - self.ewma_lambda)
        self.log_volume = stats.EWMean(fading_factor=_VOLUME_FADING)
        self.lags = deque(maxlen=self.return_lags)

    def update(self, bar: Bar, r: float) -> tuple[dict[str, float], dict[str, float] | None]:
        """Learn bar ``t`` (whose log return is ``r``); return ``(x_t, anomaly features)``."""
        anomaly = self._anomaly_features(bar, r)
        r2 = r * r
        rg = range_variance(bar, r)
        for sq, ret, rng in zip(self.sq_means, self.ret_means, self.range_means, strict=True):
            sq.update(r2)
            ret.update(r)
            rng.update(rg)
        self.ewma_var.update(r2)
        self.log_volume.update(math.log1p(max(bar.volume, 0.0)))
        self.lags.appendleft(r)
        # River's rolling mean subtracts what leaves the window: a window of zero returns
        # (a cheap stock whose 1 s bars rarely move a cent) can read -2e-23 instead of 0.
        x = {
            f"rv_{name}": max(s.get(), 0.0)
            for name, s in zip(WINDOW_NAMES, self.sq_means, strict=True)
        }
        x.update(
            {f"ret_{name}": m.get() for name, m in zip(WINDOW_NAMES, self.ret_means, strict=True)}
        )
        x.update(
            {
                f"rg_{name}": max(m.get(), 0.0)
                for name, m in zip(WINDOW_NAMES, self.range_means, strict=True)
            }
        )
        x["ewma_var"] = self.ewma_var.get()
        x.update({f"ret_lag_{i}": lag for i, lag in enumerate(self.lags, start=1)})
        return x, anomaly

    def _anomaly_features(self, bar: Bar, r: float) -> dict[str, float] | None:
        if not self.sq_means[-1].window:
            return None
        eps = 1e-6 * self.ewma_var.get() + 1e-300
        high, low = bar.high, bar.low
        hl = math.log(high / low) if high and low and low > 0 and high >= low else 0.0
        return {
            "ret": r,
            "surprise": math.log(r * r + 1e3 * eps),
            "range": math.log(hl * hl * _PARKINSON + eps),
            "volume": math.log1p(max(bar.volume, 0.0)) - self.log_volume.get(),
        }


def range_variance(bar: Bar, r: float) -> float:
    """The bar's squared opening gap plus its Garman-Klass variance (module doc); ``r^2``
    when its prices cannot be logged (or it has none). Never negative:
    ``|ln(close/open)| <= ln(high/low)``."""
    o, h, lo, c = bar.open, bar.high, bar.low, bar.close
    if (
        o is None
        or h is None
        or lo is None
        or c is None
        or not 0 < lo <= min(o, c) <= max(o, c) <= h
    ):
        return r * r
    hl = math.log(h / lo)
    co = math.log(c / o)
    gap = r - co  # ln(open / previous close)
    return gap * gap + 0.5 * hl * hl - _GK_CLOSE * co * co
