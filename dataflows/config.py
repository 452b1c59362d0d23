"""The dataflow's configuration: one frozen dataclass per step, holding its defaults.

These are the defaults; ``sentinel.settings`` derives its own from them (and reads the
environment), so a default is stated once. Kept free of heavy imports: the settings, and
so the API, import this module.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from dataflows.records import US

__all__ = [
    "AlertConfig",
    "BarConfig",
    "CheckpointConfig",
    "MetricsConfig",
    "ParseConfig",
    "SessionConfig",
]

_BIG = sys.float_info.max

Conditions = Literal["tape", "all"]
"""How trade conditions act on bars (see :mod:`dataflows.conditions`)."""


@dataclass(frozen=True)
class ParseConfig:
    """What the parser accepts: a tick's time at most ``max_future_s`` ahead of and
    ``max_past_s`` behind the stream's clock; a price in (0, ``max_price``] and a size in
    [0, ``max_size``] (what a bar can hold); messages of at most ``max_message_chars``."""

    max_future_s: float = 60.0
    max_past_s: float = 86_400.0
    max_price: float = 1e9
    max_size: float = 1e12
    max_message_chars: int = 1_000_000

    def __post_init__(self) -> None:
        # Finite limits: an integer too large for a float is clamped to the largest one,
        # which must then still be refused.
        for name in ("max_price", "max_size"):
            if not 0 < getattr(self, name) < _BIG:
                raise ValueError(f"{name} must be positive and finite")


@dataclass(frozen=True)
class BarConfig:
    """``price_band``: refuse trades more than this factor away from the recent median
    price (``0`` turns the check off). ``conditions``: ``"tape"`` applies the trade
    condition rules of :mod:`dataflows.conditions`, ``"all"`` lets every print update
    every field. ``revision_window_s``: a trade arriving up to this long after its bar
    closed revises it (``0``: it is a ``late`` reject)."""

    bar_seconds: int = 5
    allowance_s: float = 1.0
    price_band: float = 4.0
    conditions: Conditions = "tape"
    revision_window_s: float = 300.0

    def __post_init__(self) -> None:
        if not 1 <= self.bar_seconds <= 86_400:
            raise ValueError("bar length must be between 1 s and 1 day")
        if self.allowance_s < 0:
            raise ValueError("the late-tick allowance cannot be negative")
        if self.price_band != 0 and self.price_band <= 1:
            raise ValueError("the price band must be above 1 (or 0: off)")
        if self.conditions not in ("tape", "all"):
            raise ValueError(f"conditions must be 'tape' or 'all', not {self.conditions!r}")
        if self.revision_window_s < 0:
            raise ValueError("the revision window cannot be negative")

    @property
    def bar_us(self) -> int:
        return self.bar_seconds * US

    @property
    def allowance_us(self) -> int:
        return int(self.allowance_s * US)

    @property
    def revision_window_us(self) -> int:
        return int(self.revision_window_s * US)


@dataclass(frozen=True)
class SessionConfig:
    """Which market calendar each symbol trades on (``dataflows.sessions``).

    A symbol's calendar is ``override`` if set, else ``calendars[symbol]``, else what
    ``lookup(symbol)`` says (the ``tickers`` table, re-read every ``lookup_every_s``),
    else ``default``. ``extended_in_bars``: trades outside the regular session (and
    trades carrying one of ``extended_conditions``, Finnhub's extended-hours codes) enter
    bars; by default they are stored, flagged, and kept out of bars and summaries.
    """

    default: str = "XNYS"
    calendars: dict[str, str] = field(default_factory=dict)
    override: str = ""
    extended_in_bars: bool = False
    extended_conditions: frozenset[str] = frozenset({"24"})  # Finnhub: Form T (extended hours)
    lookup: Callable[[str], str | None] | None = None
    lookup_every_s: float = 60.0


@dataclass(frozen=True)
class MetricsConfig:
    """``session_seconds`` and ``trading_days`` annualize only in a flow without
    calendars (``FlowConfig.sessions`` None); otherwise each bar's session does."""

    window: int = 30  # bars in the realized volatility and Sharpe windows
    ewma_lambda: float = 0.94  # RiskMetrics decay
    session_seconds: float = 23_400.0  # 6.5 hours
    trading_days: float = 252.0
    risk_free_rate: float = 0.0  # annual, simple

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("the metrics window needs at least 2 bars")
        if not 0 < self.ewma_lambda < 1:
            raise ValueError("ewma_lambda must be in (0, 1)")

    def bars_per_year(self, bar_seconds: float) -> float:
        per_day = max(1.0, self.session_seconds / bar_seconds)
        return self.trading_days * per_day


@dataclass(frozen=True)
class AlertConfig:
    spike_ratio: float = 2.0  # current vol / baseline vol that raises an alert
    rearm_ratio: float = 1.3  # below this, the next spike may alert again
    baseline_bars: int = 120  # rolling baseline length
    min_history: int = 30  # bars of baseline needed before any volatility alert
    jump_sigmas: float = 6.0  # a bar return beyond this many sigmas is a price jump
    stale_after_s: float = 60.0  # an active symbol silent this long is stale (while open)
    anomaly_agree: float = 0.99  # an anomaly score this high makes a spike critical

    def __post_init__(self) -> None:
        if not 1.0 < self.rearm_ratio < self.spike_ratio:
            raise ValueError("need 1 < rearm_ratio < spike_ratio")


@dataclass(frozen=True)
class CheckpointConfig:
    every_s: float = 1200.0  # 20 minutes
    clock: str = "event"  # "event": bar time; "system": the wall clock

    def __post_init__(self) -> None:
        if self.clock not in {"event", "system"}:
            raise ValueError("checkpoint clock must be 'event' or 'system'")
        if self.every_s <= 0:
            raise ValueError("checkpoint interval must be positive")
