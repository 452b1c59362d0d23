"""Per-bar statistics of one symbol: log return, realized and EWMA volatility, Sharpe.

All volatilities are standard deviations of one bar's log return; annualized figures
multiply by ``sqrt(bars_per_year)``, which accounts for the bar length and for the
length of the trading session: the analysis step passes that of the bar's session from
its calendar (a 1-minute bar of a 6.5-hour XNYS session makes 390 bars a day, about 252
sessions a year; an early close fewer; a 24/7 market 1,440 a day, 365 or 366 days).
Without a calendar, ``MetricsConfig``'s fixed session length and days per year do.

``from_open``: the bar is the first after a session boundary, and its return is
measured from its own open, not from the previous close, so that the overnight gap
stays out of intraday volatility (see :mod:`dataflows.trading_day`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from river import stats, utils

from dataflows.config import MetricsConfig  # re-exported: the step and its configuration
from dataflows.records import Bar, Metrics


@dataclass
class MetricsState:
    """Picklable state for one symbol, updated once per bar, in bar order."""

    config: MetricsConfig = field(default_factory=MetricsConfig)
    prev_close: float | None = None
    bars_seen: int = 0
    # river's Rolling proxies the wrapped statistic's methods, which mypy cannot see.
    returns_var: Any = field(init=False)
    returns_mean: Any = field(init=False)
    ewma_var: stats.EWMean = field(init=False)

    def __post_init__(self) -> None:
        w = self.config.window
        self.returns_var = utils.Rolling(stats.Var, window_size=w, ddof=1)
        self.returns_mean = utils.Rolling(stats.Mean, window_size=w)
        # RiskMetrics: s2 <- lambda * s2 + (1 - lambda) * r2, started at the first r2.
        self.ewma_var = stats.EWMean(fading_factor=1.0 - self.config.ewma_lambda)

    def update(self, bar: Bar, per_year: float | None = None, from_open: bool = False) -> Metrics:
        """The metrics of a bar with prices (a bar without, of odd lots only say, has
        none: the analysis step keeps it from here; ``ValueError`` if one comes)."""
        close = bar.close
        if close is None:
            raise ValueError(f"{bar.symbol}: the bar at {bar.start_us} has no prices")
        self.bars_seen += 1
        prev, self.prev_close = self.prev_close, close
        if from_open:
            prev = bar.open
        if prev is None:
            return Metrics(bar.start_us, bar.symbol, None, None, None, None, None, None, 1)
        r = math.log(close / prev)
        self.returns_var.update(r)
        self.returns_mean.update(r)
        self.ewma_var.update(r * r)
        n = len(self.returns_var.window)
        per_year = per_year or self.config.bars_per_year(bar.bar_seconds)
        ann = math.sqrt(per_year)
        realized = math.sqrt(max(self.returns_var.get(), 0.0)) if n >= 2 else None
        ewma = math.sqrt(self.ewma_var.get())
        sharpe = None
        if realized:
            rf_per_bar = self.config.risk_free_rate / per_year
            sharpe = (self.returns_mean.get() - rf_per_bar) / realized * ann
        return Metrics(
            bar.start_us,
            bar.symbol,
            r,
            realized,
            ewma,
            realized * ann if realized is not None else None,
            ewma * ann,
            sharpe,
            self.bars_seen,
        )
