"""Revised bars: a trade arriving after its bar closed, within the revision window,
rewrites that bar once with the next revision; past the window it is a ``late`` reject."""

from __future__ import annotations

import json
import pickle

import pandas as pd

from dataflows.bars import BarConfig, BarEvent, BarLogic, BarState
from dataflows.parse import TRADE_INDEX_BITS, TickChunk
from dataflows.records import US, RawBatch, Tick
from dataflows.ticks import FlowConfig
from tests.dataflows.helpers import START_US, pandas_bars
from tests.dataflows.test_bars import COLUMNS
from tests.dataflows.test_flow import CONFIG, run

BAR_S, WINDOW_S = 5, 30
T0 = START_US - START_US % (BAR_S * US)


def tick(at_s: float, arrived_s: float, price: float, size: float = 1.0, n: int = 0) -> Tick:
    """A live tick of ``Q`` at ``T0 + at_s``, arrived at ``T0 + arrived_s`` (in its seq)."""
    arrived = T0 + round(arrived_s * US)
    return Tick(T0 + round(at_s * US), "Q", price, size, (arrived << TRADE_INDEX_BITS) + n, None)


def feed(logic: BarLogic, arrived_s: float, ticks: list[Tick]) -> list[BarEvent]:
    events, _ = logic.on_item(TickChunk("test", T0 + round(arrived_s * US), ticks))
    return list(events)


def live_logic(window_s: float = WINDOW_S) -> BarLogic:
    cfg = BarConfig(bar_seconds=BAR_S, allowance_s=1, revision_window_s=window_s)
    return BarLogic(cfg, live=True)


def reference(ticks: list[Tick]) -> tuple[float, ...]:
    row = pandas_bars(ticks, BAR_S).iloc[0]
    return tuple(
        float(row[c]) for c in ("open", "high", "low", "close", "volume", "vwap", "trades")
    )


def ohlcv(bar: object) -> tuple[float, ...]:
    return tuple(
        float(getattr(bar, c)) for c in ("open", "high", "low", "close", "volume", "vwap", "trades")
    )


def test_a_late_trade_inside_the_window_revises_its_bar_exactly_once() -> None:
    logic = live_logic()
    first = [tick(0.5, 0.5, 10.0, 3), tick(2.0, 2.0, 11.0, 1, n=1)]
    feed(logic, 2.0, first)
    (closed,) = [e.bar for e in feed(logic, 7.0, [tick(7.0, 7.0, 10.5)]) if e.bar]
    assert closed.revision == 0
    assert ohlcv(closed) == reference(first)

    # 20 s after the bar closed (its end, 5 s, passed the watermark at 6 s): a print
    # stamped at 4 s, the bar's new high and close.
    late = tick(4.0, 26.0, 12.0, 2)
    events = feed(logic, 26.0, [late])
    revised = [e.revised for e in events if e.revised is not None]
    assert [e.late for e in events if e.late] == []
    assert len(revised) == 1
    assert revised[0].revision == 1
    assert revised[0].start_us == closed.start_us
    assert ohlcv(revised[0]) == reference([*first, late])

    # Time goes on, nothing late: no second revision.
    quiet = feed(logic, 27.0, [tick(27.0, 27.0, 10.0)]) + feed(logic, 40.0, [])
    assert [e.revised for e in quiet if e.revised is not None] == []


def test_past_the_window_a_late_trade_is_rejected_and_the_bar_stays() -> None:
    logic = live_logic()
    feed(logic, 1.0, [tick(1.0, 1.0, 10.0)])
    feed(logic, 7.0, [tick(7.0, 7.0, 10.5)])
    # The bar [0, 5) closed when the watermark passed 5 s (at 6 s); 37 s is 31 s later.
    events = feed(logic, 37.0, [tick(3.0, 37.0, 12.0)])
    assert [e.revised for e in events if e.revised is not None] == []
    (reject,) = [e.late for e in events if e.late]
    assert reject.reason == "late"
    assert logic.state.late == 1


def test_several_late_trades_in_one_chunk_are_one_revision_and_the_next_chunk_another() -> None:
    logic = live_logic()
    base = [tick(1.0, 1.0, 10.0)]
    feed(logic, 1.0, base)
    feed(logic, 7.0, [tick(7.0, 7.0, 10.5)])
    two = [tick(2.0, 9.0, 9.0, n=0), tick(3.0, 9.0, 9.5, n=1)]
    (rev1,) = [e.revised for e in feed(logic, 9.0, two) if e.revised is not None]
    three = tick(4.5, 12.0, 13.0)
    (rev2,) = [e.revised for e in feed(logic, 12.0, [three]) if e.revised is not None]
    assert (rev1.revision, rev2.revision) == (1, 2)
    assert ohlcv(rev1) == reference(base + two)
    assert ohlcv(rev2) == reference([*base, *two, three])


def test_a_bar_made_only_of_late_trades_is_revision_one() -> None:
    logic = live_logic()
    feed(logic, 1.0, [tick(1.0, 1.0, 10.0)])
    feed(logic, 16.0, [tick(16.0, 16.0, 10.0)])  # bars [0,5) closed; [5,10) never traded
    gap = [tick(6.0, 20.0, 10.2, 4), tick(8.0, 20.0, 10.1, 1, n=1)]
    (made,) = [e.revised for e in feed(logic, 20.0, gap) if e.revised is not None]
    assert made.start_us == T0 + BAR_S * US
    assert made.revision == 1
    assert ohlcv(made) == reference(gap)


def test_a_late_trade_whose_bar_is_still_open_joins_it() -> None:
    logic = live_logic()
    feed(logic, 3.0, [tick(3.0, 3.0, 10.0)])
    feed(logic, 8.0, [tick(8.0, 8.0, 10.0)])  # the watermark is at 7 s; [5, 10) is open
    events = feed(logic, 8.5, [tick(6.0, 8.5, 11.0)])  # behind the watermark, bar open
    assert [e for e in events if e.late or e.revised] == []
    (bar,) = [e.bar for e in feed(logic, 12.0, []) if e.bar and e.bar.start_us == T0 + 5 * US]
    assert (bar.high, bar.trades, bar.revision) == (11.0, 2, 0)


def test_closed_bars_are_forgotten_once_the_window_has_passed() -> None:
    logic = live_logic(window_s=10)
    for s in range(0, 57, 2):
        feed(logic, s, [tick(s, s, 10.0)])
    kept = sorted((start - T0) // US for start in logic.state.closed)
    # At 56 s the watermark reached 55 s and closed [50, 55): the bars that ended 10 s
    # before it or later are kept, the older ones gone.
    assert kept == [40, 45, 50]
    events = feed(logic, 56.0, [tick(44.0, 56.0, 11.0, n=1), tick(39.0, 56.0, 11.0, n=2)])
    assert [e.revised.start_us for e in events if e.revised] == [T0 + 40 * US]
    assert [e.late.reason for e in events if e.late] == ["late"]


def test_a_snapshot_from_before_revisions_never_rewrites_a_bar_with_a_late_trade_alone() -> None:
    logic = live_logic()
    feed(logic, 1.0, [tick(1.0, 1.0, 10.0)])
    feed(logic, 7.0, [tick(7.0, 7.0, 10.5)])
    old = logic.state.__dict__.copy()
    for name in ("closed", "revisions", "kept_from_us"):
        del old[name]
    state = BarState.__new__(BarState)
    state.__setstate__(old)
    resumed = BarLogic(logic.config, live=True, state=pickle.loads(pickle.dumps(state)))
    events = feed(resumed, 9.0, [tick(2.0, 9.0, 12.0)])
    assert [e.revised for e in events if e.revised is not None] == []
    assert [e.late.reason for e in events if e.late] == ["late"]


def test_in_the_flow_the_bar_row_is_revised_and_its_metrics_stay_as_they_were() -> None:
    t0 = 1_700_000_040 * US
    trades = [(t0, 1.0), (t0 + 70 * US, 2.0), (t0 + 2 * US, 3.0)]  # the last one is late
    messages = [
        (i, json.dumps({"type": "trade", "data": [{"s": "Z", "p": p, "t": t // 1000, "v": 1}]}))
        for i, (t, p) in enumerate(trades)
    ]
    bars = BarConfig(60, allowance_s=5, revision_window_s=120)
    cfg = FlowConfig(parse=CONFIG.parse, bars=bars, live=False)
    out = run([RawBatch("test", t0, messages[:2]), RawBatch("test", t0, messages[2:])], cfg)
    assert out["rejects"] == []
    rows = pd.DataFrame(out["bars"]).sort_values(["start_us", "revision"])
    ticks = [Tick(t, "Z", p, 1.0, i, None) for i, (t, p) in enumerate(trades)]
    want = pandas_bars(ticks, 60)
    final = rows.drop_duplicates("start_us", keep="last")
    pd.testing.assert_frame_equal(
        final[COLUMNS].reset_index(drop=True), want[COLUMNS], check_dtype=False
    )
    assert rows.revision.tolist() == [0, 1, 0]
    assert [m.start_us for m in out["metrics"]] == sorted(set(rows.start_us))
