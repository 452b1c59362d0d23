"""Bars equal pandas' over the same ticks; late ticks are refused, never lost."""

from __future__ import annotations

import pandas as pd
import pytest

from dataflows.bars import BarConfig, BarLogic, frozen_clock
from dataflows.parse import TickChunk
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
        logic = logics.setdefault(sym, BarLogic(config, frozen_clock))
        for i in range(0, len(ts), chunk):
            events, _ = logic.on_item(TickChunk("test", 0, ts[i : i + chunk]))
            for e in events:
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
    t0 = START_US
    cfg = BarConfig(bar_seconds=60, allowance_s=5)
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


def test_a_quiet_symbol_closes_its_bar_one_allowance_after_the_end() -> None:
    now = [START_US]
    cfg = BarConfig(bar_seconds=10, allowance_s=2)
    logic = BarLogic(cfg, lambda: now[0])
    bar_start = START_US - START_US % (10 * US)
    tick = Tick(bar_start + 9 * US, "Q", 5.0, 1, 0, None)
    now[0] = tick.time_us
    events, _ = logic.on_item(TickChunk("test", now[0], [tick]))
    assert list(events) == []
    due = logic.notify_at()
    assert due is not None
    # bar end (start + 10 s) + allowance (2 s), on the clock that saw the tick
    assert int(due.timestamp() * US) == bar_start + 12 * US
    now[0] = bar_start + 12 * US - 1
    assert list(logic.on_notify()[0]) == []
    now[0] = bar_start + 12 * US
    (event,) = logic.on_notify()[0]
    assert event.bar is not None
    assert event.bar.close == 5.0


def test_bar_length_limits() -> None:
    with pytest.raises(ValueError, match="between 1 s and 1 day"):
        BarConfig(bar_seconds=0)
    with pytest.raises(ValueError, match="between 1 s and 1 day"):
        BarConfig(bar_seconds=86_401)
