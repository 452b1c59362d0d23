"""Bars equal pandas' over the same ticks; late ticks are refused, never lost."""

from __future__ import annotations

import pandas as pd
import pytest

from dataflows.bars import BarConfig, BarLogic
from dataflows.parse import TRADE_INDEX_BITS, TickChunk
from dataflows.records import US, Bar, Tick
from tests.dataflows.helpers import START_US, pandas_bars, random_ticks

COLUMNS = ["symbol", "start_us", "open", "high", "low", "close", "volume", "vwap", "trades"]


def run_bars(ticks: list[Tick], config: BarConfig, chunk: int = 97) -> tuple[list[Bar], list]:
    logics: dict[str, BarLogic] = {}
    bars: list[Bar] = []
    late = []
    by_symbol: dict[str, list[Tick]] = {}
    for t in ticks:
        by_symbol.setdefault(t.symbol, []).append(t)
    for sym, ts in by_symbol.items():
        logic = logics.setdefault(sym, BarLogic(config))
        for i in range(0, len(ts), chunk):
            events, _ = logic.on_item(TickChunk("test", 0, ts[i : i + chunk]))
            for e in events:
                if e.bar or e.late:
                    (bars.append(e.bar) if e.bar else late.append(e.late))
        events, _ = logic.on_eof()
        bars += [e.bar for e in events if e.bar]
    return bars, late


@pytest.mark.parametrize("bar_seconds", [1, 60, 3600])
def test_bars_equal_pandas(bar_seconds: int) -> None:
    ticks = random_ticks()
    bars, late = run_bars(ticks, BarConfig(bar_seconds=bar_seconds, allowance_s=0))
    assert late == []
    got = pd.DataFrame(bars)[COLUMNS].sort_values(["symbol", "start_us"]).reset_index(drop=True)
    want = pandas_bars(ticks, bar_seconds)[COLUMNS]
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, check_dtype=False)
    assert all(b.bar_seconds == bar_seconds for b in bars)


def test_out_of_order_within_allowance_is_kept_and_beyond_is_late() -> None:
    """Without a revision window (see test_revisions for the default)."""
    t0 = START_US
    cfg = BarConfig(bar_seconds=60, allowance_s=5, revision_window_s=0)
    ticks = [
        Tick(t0 + 10 * US, "X", 10.0, 1, 0, None),
        Tick(t0 + 30 * US, "X", 11.0, 1, 1, None),
        Tick(t0 + 26 * US, "X", 9.0, 1, 2, None),  # 4 s behind: within the allowance
        Tick(t0 + 20 * US, "X", 12.0, 1, 3, None),  # 10 s behind the newest: late
        Tick(t0 + 70 * US, "X", 13.0, 2, 4, None),  # next bar
    ]
    bars, late = run_bars(ticks, cfg, chunk=1)
    assert [r.seq for r in late] == [3]
    assert late[0].reason == "late"
    first = bars[0]
    assert (first.open, first.high, first.low, first.close, first.trades) == (
        10.0,
        11.0,
        9.0,
        11.0,
        3,
    )
    assert first.start_us == t0 - t0 % (60 * US)


def live_tick(time_us: int, arrived_us: int, price: float = 5.0, n: int = 0) -> Tick:
    """A live tick: its seq carries the time it arrived."""
    return Tick(time_us, "Q", price, 1, (arrived_us << TRADE_INDEX_BITS) + n, None)


def test_a_quiet_symbol_closes_its_bar_one_allowance_after_the_end_on_the_arrival_clock() -> None:
    cfg = BarConfig(bar_seconds=10, allowance_s=2)
    logic = BarLogic(cfg, live=True)
    bar_start = START_US - START_US % (10 * US)
    tick = live_tick(bar_start + 9 * US, bar_start + 9 * US)
    events, _ = logic.on_item(TickChunk("test", tick.time_us, [tick]))
    assert list(events) == []
    assert logic.notify_at() is None, "time moves with the stream, not the system clock"
    # Empty chunks carry the arrival clock: bar end (start + 10 s) + allowance (2 s).
    quiet = TickChunk("test", bar_start + 12 * US - 1, [])
    assert list(logic.on_item(quiet)[0]) == []
    (event,) = logic.on_item(quiet._replace(clock_us=bar_start + 12 * US))[0]
    assert event.bar is not None
    assert event.bar.close == 5.0


def test_a_backlog_is_judged_at_its_arrival_times_however_it_is_batched() -> None:
    """After an outage the journal hands over minutes of trades at once, in one chunk
    whose clock is the newest arrival: none of them is late."""
    cfg = BarConfig(bar_seconds=5, allowance_s=1)
    t0 = START_US - START_US % (5 * US)
    ticks = [live_tick(t0 + i * 100_000, t0 + i * 100_000 + 30_000, n=i) for i in range(600)]
    one = BarLogic(cfg, live=True)
    events_one = list(one.on_item(TickChunk("test", ticks[-1].seq >> TRADE_INDEX_BITS, ticks))[0])
    many = BarLogic(cfg, live=True)
    events_many = []
    for i in range(0, 600, 7):
        part = ticks[i : i + 7]
        events_many += list(many.on_item(TickChunk("test", part[-1].seq >> 10, part))[0])
    assert [e.late for e in events_one if e.late] == []
    assert [e.bar for e in events_one] == [e.bar for e in events_many]
    assert len(events_one) == 11  # 60 s of trades: 11 bars closed, the 12th still open


def test_a_trade_stamped_ahead_of_its_arrival_cannot_make_the_next_trades_late() -> None:
    cfg = BarConfig(bar_seconds=5, allowance_s=1)
    logic = BarLogic(cfg, live=True)
    t0 = START_US - START_US % (5 * US)
    future = live_tick(t0 + 50 * US, t0)  # 50 s ahead of its arrival
    good = [live_tick(t0 + i * US // 10, t0 + i * US // 10 + 1000, n=i + 1) for i in range(1, 120)]
    events = list(logic.on_item(TickChunk("test", t0, [future]))[0])
    for t in good:
        events += logic.on_item(TickChunk("test", t.seq >> TRADE_INDEX_BITS, [t]))[0]
    assert [e.late for e in events if e.late] == []
    closed = [e.bar for e in events if e.bar]
    assert sum(b.trades for b in closed) == sum(
        1 for t in good if t.time_us < closed[-1].start_us + 5 * US
    )


def test_a_late_trade_is_still_late() -> None:
    cfg = BarConfig(bar_seconds=5, allowance_s=1, revision_window_s=0)
    logic = BarLogic(cfg, live=True)
    t0 = START_US - START_US % (5 * US)
    logic.on_item(TickChunk("test", t0 + 10 * US, [live_tick(t0 + 10 * US, t0 + 10 * US)]))
    (event,) = logic.on_item(
        TickChunk("test", t0 + 10 * US, [live_tick(t0 + 8 * US, t0 + 10 * US, n=1)])
    )[0]
    assert event.late is not None
    assert event.late.reason == "late"


def test_the_price_band_refuses_a_bad_print_and_follows_a_real_move() -> None:
    cfg = BarConfig(bar_seconds=60, allowance_s=0, price_band=4.0)
    logic = BarLogic(cfg)
    t0 = START_US - START_US % (60 * US)
    prices = [100.0] * 20 + [1e308] + [100.5] * 5 + [1000.0] * 12  # a bad print, then a 10x move
    ticks = [Tick(t0 + i * 1000, "Q", p, 1, i, None) for i, p in enumerate(prices)]
    events = list(logic.on_item(TickChunk("test", 0, ticks))[0]) + list(logic.on_eof()[0])
    refused = [e.late for e in events if e.late]
    assert refused[0].reason == "implausible_price"
    assert "1e+308" in refused[0].detail
    (bar,) = [e.bar for e in events if e.bar]
    assert bar.high is not None
    assert bar.high < 1e308
    # The move to 1000 is refused until the median of the last 15 trades (the bad print
    # among them) follows it, at its 7th trade.
    assert len(refused) == 1 + 6
    assert bar.close == 1000.0
    assert bar.trades + len(refused) == len(prices)


def test_no_price_band() -> None:
    logic = BarLogic(BarConfig(bar_seconds=60, allowance_s=0, price_band=0))
    ticks = [Tick(START_US + i, "Q", p, 1, i, None) for i, p in enumerate([1.0, 1e6, 1e-6])]
    events = list(logic.on_item(TickChunk("test", 0, ticks))[0]) + list(logic.on_eof()[0])
    assert [e.bar.trades for e in events if e.bar] == [3]


def test_bar_length_limits() -> None:
    with pytest.raises(ValueError, match="between 1 s and 1 day"):
        BarConfig(bar_seconds=0)
    with pytest.raises(ValueError, match="between 1 s and 1 day"):
        BarConfig(bar_seconds=86_401)
