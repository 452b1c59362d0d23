"""The trading day of one symbol: what a session accumulates, and its summary at the close.

The bars step emits a :class:`~dataflows.sessions.SessionMark` when a session of the
symbol's calendar opens or closes (by the watermark: event time in replays, the arrival
clock live), in order with the bars. The analysis step then keeps one
:class:`TradingDay` per open session and turns it into a
:class:`~dataflows.records.DailySummary` at the close.

What resets at the open, and what carries over (chosen so that the morning is not blind):

- Reset: the day's OHLCV, VWAP, trade and bar counts, its intraday returns (realized
  volatility and Sharpe of the day), its alert counts and model losses.
- Carried over: the metrics' rolling windows (realized volatility, Sharpe), the EWMA, the
  spike baselines and every model's state. A reset would leave each morning without
  volatility figures or alerts for ``window`` / ``min_history`` bars, just when the open's
  volatility matters most.
- Kept apart: the overnight return, from the previous session's last regular trade to
  this session's first. The first bar after a session boundary measures its return from
  its own open, so the gap feeds no intraday volatility, no model and no spike or jump
  alert; it is reported as ``overnight_return``. Bars a day long or longer keep
  close-to-close returns: a daily bar's return is the overnight gap plus the day.

A day's model losses are those of the 1-bar-ahead forecasts made within the session,
scored against the next bar's intraday return: QLIKE for volatility models, squared
error for return models, each beside its target's baseline (EWMA, zero).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dataflows.parse import TickChunk
from dataflows.records import Alert, Bar, DailySummary, Forecast, Metrics, Tick, Ticks
from dataflows.sessions import CalendarBook, MarketCalendar, Session, market_calendar
from online_models.registry import BASELINES, VOLATILITY
from online_models.scoring import qlike

DAILY_BAR_SECONDS = 86_400  # bars this long keep close-to-close returns


class ExtendedHours:
    """The ``session_flags`` mapper: marks a chunk's trades ``extended`` when they fall
    outside their symbol's regular session or carry an extended-hours condition.

    The common case (every trade of the chunk inside one session, none with an
    extended-hours code) costs one calendar lookup per chunk; Finnhub sends conditions
    on most trades (``1``, ``1,12``), so merely having conditions must not cost more."""

    def __init__(self, sessions: CalendarBook):
        self.sessions = sessions
        self.codes = sessions.config.extended_conditions

    def __call__(self, kv: tuple[str, TickChunk]) -> tuple[str, TickChunk]:
        symbol, chunk = kv
        ticks = chunk.ticks
        if not ticks:
            return kv
        cal = self.sessions.calendar_of(symbol)
        times = [t.time_us for t in ticks]
        lo, hi = min(times), max(times)
        session = _session_at(cal, lo)
        if session is not None and hi >= session.close_us:
            session = None  # the chunk spans a boundary: each trade is looked up
        if session is not None and not any(self._coded(t) for t in ticks):
            return kv
        flagged = Ticks(
            t if t.extended or self._regular(cal, session, t) else t._replace(extended=True)
            for t in ticks
        )
        return symbol, chunk._replace(ticks=flagged)

    def _coded(self, t: Tick) -> bool:
        """Does the trade carry an extended-hours condition code?"""
        c = t.conditions
        return c is not None and not self.codes.isdisjoint(c.split(","))

    def _regular(self, cal: MarketCalendar, session: Session | None, t: Tick) -> bool:
        """``session``: the one holding every trade of the chunk, if there is one."""
        if self._coded(t):
            return False
        return session is not None or _session_at(cal, t.time_us) is not None


def _session_at(cal: MarketCalendar, t_us: int) -> Session | None:
    try:
        return cal.session_at(t_us)
    except ValueError:  # beyond the calendar's span: no session
        return None


@dataclass
class TradingDay:
    """One symbol's session so far (picklable: part of the analysis step's state)."""

    session: Session
    symbol: str
    open: float | None = None
    high: float = -math.inf
    low: float = math.inf
    close: float | None = None
    volume: float = 0.0
    notional: float = 0.0
    vwap_volume: float = 0.0  # the volume of the bars with a VWAP
    trades: int = 0
    bars: int = 0
    returns: list[float] = field(default_factory=list)
    overnight: float | None = None
    alerts: Counter[str] = field(default_factory=Counter)
    losses: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # [sum, n]
    pending: list[Forecast] = field(default_factory=list)  # last bar's 1-step forecasts
    bar_seconds: int = 0

    def add(
        self,
        bar: Bar,
        metrics: Metrics,
        alerts: list[Alert],
        forecasts: list[Forecast],
        prev_close: float | None,
    ) -> None:
        """Take a bar of the session, with what the analysis step made of it;
        ``prev_close`` is the previous session's last regular close, for the overnight
        return."""
        if bar.open is None or bar.high is None or bar.low is None or bar.close is None:
            raise ValueError(f"{bar.symbol}: the bar at {bar.start_us} has no prices")
        if self.open is None:
            self.open = bar.open
            if prev_close:
                self.overnight = math.log(bar.open / prev_close)
        self.high = max(self.high, bar.high)
        self.low = min(self.low, bar.low)
        self.close = bar.close
        self.add_priceless(bar)
        r = metrics.log_return
        if r is not None:
            self.returns.append(r)
            self._score(r)
        self.alerts.update(a.kind for a in alerts)
        self.pending = [f for f in forecasts if f.horizon == 1]

    def add_priceless(self, bar: Bar) -> None:
        """Count a bar's volume, VWAP and trades (all a bar without prices brings).

        The day's VWAP weights each bar's VWAP by the bar's volume: exact while every
        print in a bar's volume is in its VWAP too (the condition rules keep a few out:
        average-price, cash, contingent prints, ...)."""
        self.bar_seconds = bar.bar_seconds
        self.volume += bar.volume
        if bar.vwap is not None:
            self.notional += bar.vwap * bar.volume
            self.vwap_volume += bar.volume
        self.trades += bar.trades
        self.bars += 1

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A snapshot from before the condition rules: every bar had a VWAP.
        self.__dict__.update({"vwap_volume": state.get("volume", 0.0), **state})

    def _score(self, r: float) -> None:
        for f in self.pending:
            if f.target == VOLATILITY:
                if f.value <= 0:
                    continue
                loss = qlike(f.value, r)
            else:
                loss = (r - f.value) ** 2
            acc = self.losses.setdefault((f.model, f.target), [0.0, 0])
            acc[0] += loss
            acc[1] += 1

    def summary(self, risk_free_rate: float) -> DailySummary:
        s, cal = self.session, market_calendar(self.session.calendar)
        rv = math.sqrt(sum(r * r for r in self.returns)) if self.returns else None
        per_day = cal.sessions_per_year(s.date)
        sharpe = None
        n = len(self.returns)
        if n >= 2:
            per_year = cal.bars_per_year(s, self.bar_seconds)
            mean = sum(self.returns) / n
            sd = math.sqrt(sum((r - mean) ** 2 for r in self.returns) / (n - 1))
            if sd > 0:
                sharpe = (mean - risk_free_rate / per_year) / sd * math.sqrt(per_year)
        return DailySummary(
            session_date=s.date,
            symbol=self.symbol,
            calendar=s.calendar,
            open_us=s.open_us,
            close_us=s.close_us,
            open=self.open,
            high=self.high if self.open is not None else None,
            low=self.low if self.open is not None else None,
            close=self.close,
            volume=self.volume,
            vwap=self.notional / self.vwap_volume if self.vwap_volume > 0 else None,
            trades=self.trades,
            bars=self.bars,
            realized_vol=rv,
            realized_vol_ann=rv * math.sqrt(per_day) if rv is not None else None,
            sharpe=sharpe,
            overnight_return=self.overnight,
            alerts=dict(sorted(self.alerts.items())),
            model_scores=self.model_scores(),
        )

    def model_scores(self) -> dict[str, Any]:
        """``{model: {"target", "metric", "mean", "bars", "baseline", "vs_baseline"}}``:
        ``vs_baseline`` is the model's mean loss minus its baseline's (below 0: better)."""
        means = {key: acc[0] / acc[1] for key, acc in self.losses.items() if acc[1]}
        out: dict[str, Any] = {}
        for (model, target), mean in sorted(means.items()):
            baseline = BASELINES.get(target)
            base = means.get((baseline, target)) if baseline else None
            out[model] = {
                "target": target,
                "metric": "qlike" if target == VOLATILITY else "mse",
                "mean": mean,
                "bars": int(self.losses[(model, target)][1]),
                "baseline": baseline,
                "vs_baseline": mean - base if base is not None else None,
            }
        return out
