"""Event-time OHLCV bars per symbol, with a late-tick allowance.

The semantics are Bytewax's ``EventClock`` + ``TumblingWindower``: the watermark is the
newest tick time seen minus the allowance, and it also advances with the injected clock
while no ticks arrive, so a bar closes at most one allowance after its end even when
its symbol goes quiet. A tick older than the watermark is late: it is refused (reason
``late``), never silently dropped. Bars are aligned to the epoch (a 1-minute bar starts
on the minute, a 1-day bar at midnight UTC).

Why not ``bytewax.operators.windowing.fold_window``: it handles one item per tick, which
costs about 3.6 us per tick on this machine (280k items/s), more than a third of the
whole 100k ticks/s budget. This logic takes a symbol's ticks a chunk at a time and
keeps the same watermark rules, at a fraction of the cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from bytewax.operators import StatefulLogic
from typing_extensions import override

from dataflows.parse import TickChunk
from dataflows.records import US, Bar, Reject, Tick

UTC_MIN_US = -(2**62)
Clock = Callable[[], int]  # microseconds since the epoch


def frozen_clock() -> int:
    """A clock that never moves: replays advance the watermark by event time only."""
    return 0


@dataclass(frozen=True)
class BarConfig:
    bar_seconds: int = 60
    allowance_s: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.bar_seconds <= 86_400:
            raise ValueError("bar length must be between 1 s and 1 day")
        if self.allowance_s < 0:
            raise ValueError("the late-tick allowance cannot be negative")

    @property
    def bar_us(self) -> int:
        return self.bar_seconds * US

    @property
    def allowance_us(self) -> int:
        return int(self.allowance_s * US)


@dataclass
class _Acc:
    """A bar being built. Open and close are the first and last trade by (time, seq),
    so the result does not depend on the order ticks arrive in."""

    open_key: tuple[int, int]
    open: float
    high: float
    low: float
    close_key: tuple[int, int]
    close: float
    volume: float = 0.0
    notional: float = 0.0
    trades: int = 0

    @classmethod
    def first(cls, t: Tick) -> _Acc:
        key = (t.time_us, t.seq)
        return cls(key, t.price, t.price, t.price, key, t.price, t.size, t.price * t.size, 1)

    def add(self, t: Tick) -> None:
        key = (t.time_us, t.seq)
        if key < self.open_key:
            self.open_key, self.open = key, t.price
        if key > self.close_key:
            self.close_key, self.close = key, t.price
        if t.price > self.high:
            self.high = t.price
        elif t.price < self.low:
            self.low = t.price
        self.volume += t.size
        self.notional += t.price * t.size
        self.trades += 1

    def bar(self, start_us: int, symbol: str, bar_seconds: int) -> Bar:
        vwap = self.notional / self.volume if self.volume > 0 else None
        return Bar(
            start_us, symbol, self.open, self.high, self.low, self.close,
            self.volume, vwap, self.trades, bar_seconds,
        )  # fmt: skip


@dataclass
class BarState:
    """Picklable per-symbol state: the watermark and the bars still open."""

    symbol: str = ""
    watermark_base_us: int = UTC_MIN_US
    clock_at_base_us: int = 0
    open: dict[int, _Acc] = field(default_factory=dict)
    late: int = 0


class BarEvent(NamedTuple):
    """What the bars step emits: a closed bar, or a late tick refused."""

    bar: Bar | None
    late: Reject | None


class BarLogic(StatefulLogic[TickChunk, BarEvent, BarState]):
    def __init__(self, config: BarConfig, clock: Clock, state: BarState | None = None):
        self.config = config
        self.clock = clock
        self.state = state or BarState()

    def watermark(self, now_us: int) -> int:
        st = self.state
        return st.watermark_base_us + max(0, now_us - st.clock_at_base_us)

    @override
    def on_item(self, value: TickChunk) -> tuple[Iterable[BarEvent], bool]:
        st, cfg = self.state, self.config
        bar_us, allowance = cfg.bar_us, cfg.allowance_us
        now = self.clock()
        watermark = self.watermark(now)
        out: list[BarEvent] = []
        opened = st.open
        if value.ticks:
            st.symbol = value.ticks[0].symbol
        for tick in value.ticks:
            if tick.time_us < watermark:
                st.late += 1
                out.append(BarEvent(None, _late(value, tick, watermark)))
                continue
            start = tick.time_us - tick.time_us % bar_us
            acc = opened.get(start)
            if acc is None:
                opened[start] = _Acc.first(tick)
            else:
                acc.add(tick)
            base = tick.time_us - allowance
            if base > st.watermark_base_us:
                # The clock has not moved past the new base: the watermark is the base.
                st.watermark_base_us, st.clock_at_base_us = base, now
                watermark = base
        out.extend(self._close(watermark))
        return out, StatefulLogic.RETAIN

    @override
    def on_notify(self) -> tuple[Iterable[BarEvent], bool]:
        return self._close(self.watermark(self.clock())), StatefulLogic.RETAIN

    @override
    def on_eof(self) -> tuple[Iterable[BarEvent], bool]:
        return self._close(2**62), StatefulLogic.RETAIN

    @override
    def notify_at(self) -> datetime | None:
        """When the watermark, moving with the clock, will pass the oldest open bar's end."""
        st = self.state
        if not st.open or self.clock is frozen_clock:
            return None
        end = min(st.open) + self.config.bar_us
        at_us = st.clock_at_base_us + (end - st.watermark_base_us)
        return datetime.fromtimestamp(at_us / US, tz=timezone.utc)

    @override
    def snapshot(self) -> BarState:
        return self.state

    def _close(self, watermark: int) -> list[BarEvent]:
        opened, bar_us = self.state.open, self.config.bar_us
        due = sorted(s for s in opened if s + bar_us <= watermark)
        secs, symbol = self.config.bar_seconds, self.state.symbol
        return [BarEvent(opened.pop(s).bar(s, symbol, secs), None) for s in due]


def _late(chunk: TickChunk, tick: Tick, watermark: int) -> Reject:
    behind = (watermark - tick.time_us) / US
    payload = json.dumps({"s": tick.symbol, "p": tick.price, "t_us": tick.time_us, "v": tick.size})
    detail = f"{behind:.3f} s behind the watermark"
    return Reject(chunk.clock_us, chunk.source, tick.seq, tick.symbol, "late", detail, payload)
