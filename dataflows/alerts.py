"""Alerts from bar metrics (volatility spike, price jump) and from the feed (stale).

Each check is a small picklable state machine. A volatility spike fires once when the
current EWMA volatility reaches ``spike_ratio`` times its own rolling baseline, and is
re-armed only when the ratio falls back below ``rearm_ratio`` (hysteresis): one spike,
one alert.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from river import stats, utils

from dataflows.config import AlertConfig  # re-exported: the step and its configuration
from dataflows.records import US, Alert, Metrics


@dataclass
class VolatilityAlerts:
    """Volatility spike and price jump checks for one symbol."""

    config: AlertConfig = field(default_factory=AlertConfig)
    in_spike: bool = False
    spike_bars: int = 0
    prev_ewma: float | None = None
    baseline: Any = field(init=False)  # a river Rolling mean

    def __post_init__(self) -> None:
        self.baseline = utils.Rolling(stats.Mean, window_size=self.config.baseline_bars)

    def update(self, m: Metrics, anomaly: float | None = None) -> list[Alert]:
        """``anomaly`` is the models' anomaly score of this bar (0 to 1), a second opinion:
        a spike it agrees with (>= ``anomaly_agree``) is critical."""
        cfg, out = self.config, []
        history = len(self.baseline.window)
        if m.log_return is not None and self.prev_ewma and history >= cfg.min_history:
            sigmas = abs(m.log_return) / self.prev_ewma
            if sigmas > cfg.jump_sigmas:
                message = (
                    f"{m.symbol} moved {m.log_return:+.4%} in one bar: "
                    f"{sigmas:.1f} sigma (threshold {cfg.jump_sigmas:g})"
                )
                out.append(
                    Alert(
                        m.start_us,
                        m.symbol,
                        "price_jump",
                        "warning",
                        sigmas,
                        cfg.jump_sigmas,
                        message,
                    )
                )
        if m.ewma_vol is not None:
            if history >= cfg.min_history:
                out.extend(self._spike(m, m.ewma_vol, self.baseline.get(), anomaly))
            # A spike stays out of its own baseline (else the baseline catches up with it
            # and one long spike alerts twice), for at most one baseline length: a
            # regime that lasts longer becomes the new normal.
            self.spike_bars = self.spike_bars + 1 if self.in_spike else 0
            if not self.in_spike or self.spike_bars > cfg.baseline_bars:
                self.baseline.update(m.ewma_vol)
            self.prev_ewma = m.ewma_vol
        return out

    def _spike(self, m: Metrics, vol: float, base: float, anomaly: float | None) -> list[Alert]:
        cfg = self.config
        if base <= 0:
            return []
        ratio = vol / base
        if self.in_spike:
            self.in_spike = ratio >= cfg.rearm_ratio
            return []
        if ratio < cfg.spike_ratio:
            return []
        self.in_spike = True
        agrees = anomaly is not None and anomaly >= cfg.anomaly_agree
        severity = "critical" if ratio >= 2 * cfg.spike_ratio or agrees else "warning"
        opinion = "" if anomaly is None else f"; anomaly score {anomaly:.3f}"
        message = (
            f"{m.symbol} volatility {vol:.3g} per bar is {ratio:.1f}x its baseline "
            f"{base:.3g}{opinion}"
        )
        threshold = cfg.spike_ratio * base
        return [Alert(m.start_us, m.symbol, "volatility_spike", severity, vol, threshold, message)]


MarketOpen = Callable[[str, int], bool]
"""Is ``symbol``'s market open at ``time_us``? (``CalendarBook.market_open``.)"""


def always_open(symbol: str, time_us: int) -> bool:
    """The market check of a flow without calendars: always open."""
    return True


@dataclass
class StaleFeed:
    """For one live source: which subscribed symbols have gone silent while open."""

    config: AlertConfig = field(default_factory=AlertConfig)
    last_seen_us: dict[str, int] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)

    def update(
        self,
        clock_us: int,
        subscribed: tuple[str, ...] | None,
        seen: dict[str, int],
        market_open: MarketOpen,
    ) -> list[Alert]:
        """``seen`` maps symbols ticking in this batch to when their first trade in it
        arrived. A silence is alerted once, timed when it reached ``stale_after_s``:
        while it lasts, or, when the feed was down and time jumped over it (a feed
        process restart), with the first trade after it."""
        limit = int(self.config.stale_after_s * US)
        out = []
        for symbol, first_us in seen.items():
            last = self.last_seen_us.get(symbol)
            if last is not None and first_us - last >= limit and symbol not in self.stale:
                out += self._alert(symbol, last, first_us - last, market_open)
            self.last_seen_us[symbol] = clock_us
            self.stale.discard(symbol)
        if subscribed is None:
            return out
        wanted = set(subscribed)
        for symbol in list(self.last_seen_us):
            if symbol not in wanted:
                del self.last_seen_us[symbol]
                self.stale.discard(symbol)
        for symbol in sorted(wanted - seen.keys()):
            if not market_open(symbol, clock_us):
                # Closed: a silence starts counting at the open, not at the last trade
                # of the previous session.
                self.last_seen_us[symbol] = clock_us
                continue
            # A symbol that never ticked is timed from when we first saw it subscribed.
            last = self.last_seen_us.setdefault(symbol, clock_us)
            if clock_us - last >= limit and symbol not in self.stale:
                out += self._alert(symbol, last, clock_us - last, market_open)
        return out

    def _alert(
        self, symbol: str, last_us: int, silent_us: int, market_open: MarketOpen
    ) -> list[Alert]:
        at = last_us + int(self.config.stale_after_s * US)
        if not market_open(symbol, at):
            return []
        self.stale.add(symbol)
        secs = silent_us / US
        message = f"no trade for {symbol} in {secs:.0f} s while its market is open"
        return [
            Alert(at, symbol, "stale_feed", "warning", secs, self.config.stale_after_s, message)
        ]


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
