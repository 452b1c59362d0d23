"""Trade condition rules: the table, the lookup, and bars under them through the real flow,
against an independent pandas reading of the same table."""

from __future__ import annotations

import itertools
import json
import logging
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dataflows import conditions
from dataflows.bars import BarConfig, BarLogic, _Acc
from dataflows.conditions import (
    ALL,
    HIGH_LOW,
    OPEN_CLOSE,
    PRICES,
    RULES,
    TABLE,
    TRADE,
    UNKNOWN,
    VOLUME,
    VWAP,
    flags,
    tick_flags,
)
from dataflows.config import Conditions, SessionConfig
from dataflows.metrics import MetricsConfig
from dataflows.parse import ParseConfig, TickChunk
from dataflows.records import US, Bar, DailySummary, RawBatch, Tick
from dataflows.ticks import FlowConfig
from tests.dataflows.helpers import START_US
from tests.dataflows.test_flow import run

RULE_COLUMNS = [
    "updates_open_close",
    "updates_high_low",
    "updates_volume",
    "updates_vwap",
    "counts_as_trade",
]
BAR_COLUMNS = ["symbol", "start_us", "open", "high", "low", "close", "volume", "vwap", "trades"]
T0_MS = START_US // 1000 - START_US // 1000 % 60_000  # on a minute


# The table


def test_every_row_is_parsed_codes_are_unique_and_the_sources_are_cited() -> None:
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    header = "\n".join(line for line in lines if line.startswith("#"))
    body = [line for line in lines if line and not line.startswith("#")]
    assert body[0].startswith("code,name,cta,utp,confirmed,")
    codes = [line.split(",", 1)[0] for line in body[1:]]
    assert len(codes) == len(set(codes)) == len(RULES)
    for source in ("CTA Plan", "CTS Output Specification", "UTP Plan", "UTDF", "/v3/reference"):
        assert source in header
    regular, odd_lot, form_t, candle = RULES["1"], RULES["12"], RULES["24"], RULES["candle"]
    assert (regular.flags, regular.cta, regular.utp, regular.confirmed) == (ALL, "@", "@", True)
    assert (odd_lot.flags, odd_lot.utp, odd_lot.confirmed) == (VOLUME | VWAP | TRADE, "I", True)
    assert (form_t.flags, form_t.cta, form_t.confirmed) == (VOLUME | VWAP | TRADE, "T", True)
    assert candle.flags == OPEN_CLOSE | HIGH_LOW | VOLUME
    assert RULES["16"].flags == RULES["31"].flags == 0  # official close and open: markers
    assert RULES["37"].flags == PRICES  # corrected consolidated close: no volume
    assert RULES["26"].flags == HIGH_LOW | VOLUME | VWAP | TRADE  # sold out of sequence
    assert RULES["3"].flags == VOLUME | TRADE  # average price: neither prices nor VWAP


def test_an_inconsistent_table_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "rules.csv"
    head = "# source\ncode,name,cta,utp,confirmed," + ",".join(RULE_COLUMNS) + "\n"
    for row, message in [
        ("1,a,,,0,1,1,1,1,1\n1,b,,,0,1,1,1,1,1\n", "repeated"),
        ("1,a,,,0,1,1,0,1,0\n", "without volume"),
        ("1,a,,,0,1,0,1,1,1\n", "without high and low"),
        ("1,a,,,0,1,1,1,1,yes\n", "not 0 or 1"),
    ]:
        path.write_text(head + row, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            conditions.load_rules(path)


# The lookup


def test_flags_of_regular_combined_unknown_and_all(caplog: pytest.LogCaptureFixture) -> None:
    assert flags(None) == flags("") == flags("1") == flags("1,") == ALL
    assert flags("1,12") == flags("12") == VOLUME | VWAP | TRADE  # the AND of the codes
    assert flags("1,24,12") == VOLUME | VWAP | TRADE
    assert flags("26,30") == HIGH_LOW | VOLUME | TRADE
    assert flags("1,16") == 0
    with caplog.at_level(logging.WARNING, logger="dataflows.conditions"):
        assert flags("1,no-such-code") == UNKNOWN == VOLUME | TRADE
        assert flags("no-such-code") == UNKNOWN
        assert flags("12,no-such-code") == TRADE | VOLUME
    assert sum("'no-such-code'" in r.getMessage() for r in caplog.records) == 1  # once a code
    for c in (None, "1,12", "16", "no-such-code", "candle"):
        assert flags(c, "all") == ALL
        assert tick_flags(c, 0.0, "all") == PRICES
    assert tick_flags("1", 0.0) == PRICES
    assert tick_flags("1,12", 0.0) == 0
    assert tick_flags("candle", 0.0) == PRICES
    assert tick_flags("1", 5.0) == ALL


# Bars under the rules, through the flow, against pandas

MIXED: list[list[str] | None] = [
    None,
    [],
    ["1"],
    ["1"],
    ["1", "12"],
    ["1", "12"],
    ["1", "24"],
    ["1", "24", "12"],
    ["1", "8"],
    ["8", "12"],
    ["1", "3"],
    ["1", "16"],
    ["37"],
    ["candle"],
    ["1", "99"],
    ["zz"],
    ["26"],
    ["30", "12"],
    ["1", "23"],
    ["1", ""],
]


def mixed_tape(seed: int, n: int = 300, zero_share: float = 0.1) -> pd.DataFrame:
    """Trades of two symbols over two minutes, with mixed conditions (combinations, codes
    outside the table) and some zero sizes; prices on a 1/64 grid and whole sizes, so that
    every sum is exact. The last seconds hold bars made to be price-less or empty."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, symbol in enumerate(("AAA", "BBB")):
        times = T0_MS + np.sort(rng.integers(0, 110_000, n))
        prices = 100.0 * (k + 1) + np.cumsum(rng.integers(-3, 4, n)) / 64
        sizes = rng.integers(1, 400, n).astype(float)
        sizes[rng.random(n) < zero_share] = 0.0
        picks = rng.integers(0, len(MIXED), n)
        rows += [
            (int(t), symbol, float(p), float(v), MIXED[i])
            for t, p, v, i in zip(times, prices, sizes, picks, strict=True)
        ]
        last = float(prices[-1])
        made = [
            (111_000, ["1", "12"], 30.0),  # odd lots only: volume and VWAP, no prices
            (111_500, ["1", "12"], 20.0),
            (112_000, ["1"], 0.0),  # zero size only: no bar
            (113_000, ["1", "16"], 100.0),  # an official close only: no bar
            (114_000, ["26"], 50.0),  # out of sequence only: high/low but no close
            (115_000, ["3"], 70.0),  # average price only: volume, no VWAP, no prices
        ]
        rows += [(T0_MS + dt, symbol, last, v, c) for dt, c, v in made]
    df = pd.DataFrame(rows, columns=["time_ms", "symbol", "price", "size", "codes"])
    return df.sort_values(["time_ms", "symbol"], kind="stable").reset_index(drop=True)


def batches(tape: pd.DataFrame, per_batch: int = 64) -> list[RawBatch]:
    """Finnhub trade messages, a few trades each; ``c`` absent when a trade has none."""
    out = []
    for b in range(0, len(tape), per_batch):
        chunk = tape.iloc[b : b + per_batch]
        messages: list[tuple[int, Any]] = []
        for m in range(0, len(chunk), 4):
            data = []
            for row in chunk.iloc[m : m + 4].itertuples():
                trade: dict[str, Any] = {"s": row.symbol, "p": row.price, "t": row.time_ms}
                trade["v"] = row.size
                if row.codes is not None:
                    trade["c"] = row.codes
                data.append(trade)
            messages.append((b + m, json.dumps({"type": "trade", "data": data})))
        out.append(RawBatch("test", int(chunk.time_ms.iloc[-1]) * 1000, messages))
    return out


def reference_bars(tape: pd.DataFrame, mode: Conditions, bar_seconds: int) -> pd.DataFrame:
    """The bars by pandas from the table itself: each trade's permissions are the minimum
    over its codes (no code: all; a code outside the table: volume and trade count only),
    zero sizes lose volume, VWAP and trade count; then masks and group-bys per bar."""
    table = pd.read_csv(TABLE, comment="#", dtype=str, keep_default_na=False)
    table = table.set_index("code")[RULE_COLUMNS].astype(int)
    codes = tape["codes"].explode()
    codes = codes[codes.notna() & (codes != "")]
    per_code = pd.DataFrame({"code": codes}).join(table, on="code")
    unknown = per_code[RULE_COLUMNS].isna().all(axis=1)
    per_code.loc[unknown, RULE_COLUMNS] = [0, 0, 1, 0, 1]
    allowed = per_code.groupby(level=0)[RULE_COLUMNS].min()
    allowed = allowed.reindex(tape.index, fill_value=1).astype(bool)
    if mode == "all":
        allowed[:] = True
    allowed.loc[tape["size"] <= 0, ["updates_volume", "updates_vwap", "counts_as_trade"]] = False
    df = tape.join(allowed)
    df["order"] = np.arange(len(df))  # the tape's order: (time, seq) within a millisecond
    df["start_us"] = df.time_ms * 1000 // (bar_seconds * US) * (bar_seconds * US)
    df = df.sort_values(["symbol", "start_us", "time_ms", "order"])
    keys = ["symbol", "start_us"]
    exists = ((df["size"] > 0) & df[RULE_COLUMNS].any(axis=1)).groupby([df.symbol, df.start_us])
    out = pd.DataFrame({"exists": exists.any()})
    oc = df[df.updates_open_close].groupby(keys).price
    hl = df[df.updates_high_low].groupby(keys).price
    vw = df[df.updates_vwap].assign(pv=lambda d: d.price * d["size"]).groupby(keys)
    out["open"], out["close"] = oc.first(), oc.last()
    out["high"], out["low"] = hl.max(), hl.min()
    out["volume"] = df["size"].where(df.updates_volume, 0.0).groupby([df.symbol, df.start_us]).sum()
    out["vwap"] = vw.pv.sum() / vw["size"].sum()
    out["trades"] = df.counts_as_trade.groupby([df.symbol, df.start_us]).sum()
    out.loc[out.close.isna(), ["high", "low"]] = np.nan  # prices: all or none
    return out[out.exists].drop(columns="exists").reset_index()[BAR_COLUMNS]


def flow_config(mode: Conditions, bar_seconds: int = 1) -> FlowConfig:
    return FlowConfig(
        parse=ParseConfig(max_future_s=3600, max_past_s=3600),
        bars=BarConfig(bar_seconds=bar_seconds, allowance_s=0, price_band=0, conditions=mode),
        metrics=MetricsConfig(window=10),
        live=False,
    )


def flow_bars(tape: pd.DataFrame, mode: Conditions, bar_seconds: int = 1) -> pd.DataFrame:
    out = run(batches(tape), flow_config(mode, bar_seconds))
    got = pd.DataFrame([b for b in out["bars"] if isinstance(b, Bar)])[BAR_COLUMNS]
    return got.sort_values(["symbol", "start_us"]).reset_index(drop=True)


@pytest.mark.parametrize("mode", ["tape", "all"])
def test_a_mixed_tape_gives_the_bars_pandas_computes_from_the_table(mode: Conditions) -> None:
    tape = mixed_tape(seed=16)
    got = flow_bars(tape, mode)
    want = reference_bars(tape, mode, 1)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
    made = got[got.start_us >= (T0_MS + 111_000) * 1000]
    if mode == "tape":
        # 111 s: odd lots (volume, VWAP, no prices); 114 s: out of sequence (no close, so
        # no prices); 115 s: average price (volume only); 112 s and 113 s: no bar.
        assert [s // US - T0_MS // 1000 for s in made.start_us[made.symbol == "AAA"]] == [
            111,
            114,
            115,
        ]
        assert made.close.isna().all()
        assert made.high.isna().all()
        assert made.vwap.isna().tolist() == [False, False, True] * 2
        assert made.volume.tolist() == [50.0, 50.0, 70.0] * 2
        priceless = got[got.close.isna()]
        assert len(priceless) > len(made)  # the random part makes some too
    else:
        assert made.close.notna().all()  # every print sets prices; still no zero-size bar
        assert (made.start_us // US - T0_MS // 1000).tolist() == [111, 113, 114, 115] * 2


@pytest.mark.parametrize("mode", ["tape", "all"])
def test_zero_size_prints_leave_volume_vwap_and_trades_exactly_as_they_were(
    mode: Conditions,
) -> None:
    base = mixed_tape(seed=7, zero_share=0.0)
    rng = np.random.default_rng(8)
    extra = base.sample(120, random_state=9).assign(size=0.0)
    extra["price"] = extra.price + rng.integers(-200, 200, len(extra)) / 64
    extra["codes"] = [MIXED[i] for i in rng.integers(0, len(MIXED), len(extra))]
    with_zeros = pd.concat([base, extra]).sort_values(["time_ms", "symbol"], kind="stable")
    with_zeros = with_zeros.reset_index(drop=True)
    before, after = flow_bars(base, mode), flow_bars(with_zeros, mode)
    same = ["symbol", "start_us", "volume", "vwap", "trades"]
    pd.testing.assert_frame_equal(before[same], after[same], check_exact=True)
    assert not before[["open", "high", "low", "close"]].equals(
        after[["open", "high", "low", "close"]]
    )  # the zero-size prints did reach the bars: they moved prices
    pd.testing.assert_frame_equal(
        after, reference_bars(with_zeros, mode, 1), check_exact=True, check_dtype=False
    )


# The bar step alone


def tick(ms: int, price: float, size: float, c: str | None, seq: int) -> Tick:
    return Tick((T0_MS + ms) * 1000, "X", price, size, seq, c)


def test_odd_lots_alone_make_a_price_less_bar_and_open_close_follow_time_not_arrival() -> None:
    logic = BarLogic(BarConfig(bar_seconds=1, allowance_s=0, price_band=0))
    ticks = [
        tick(900, 10.5, 0, "1", 3),  # zero size: prices, nothing else
        tick(100, 10.0, 7, "1,12", 1),
        tick(300, 12.0, 5, "1,12", 2),
        tick(50, 9.0, 1, "1,24", 0),
        tick(1_200, 11.0, 10, "1,12", 4),
    ]
    events = list(logic.on_item(TickChunk("test", 0, ticks))[0]) + list(logic.on_eof()[0])
    first, second = [e.bar for e in events if e.bar]
    assert (first.open, first.high, first.low, first.close) == (10.5, 10.5, 10.5, 10.5)
    assert (first.volume, first.vwap, first.trades) == (13.0, (70 + 60 + 9) / 13, 3)
    assert second == Bar(first.start_us + US, "X", None, None, None, None, 10.0, 11.0, 1, 1)


def test_a_snapshot_from_before_the_rules_resumes_its_bars() -> None:
    old = _Acc.__new__(_Acc)
    fields = (1, 0), 10.0, 12.0, 9.0, (5, 1), 11.0, 30.0, 330.0, 3
    names = "open_key open high low close_key close volume notional trades"
    old.__dict__.update(zip(names.split(), fields, strict=True))
    acc = pickle.loads(pickle.dumps(old))
    acc.add(tick(0, 13.0, 10.0, None, 9), "tape")
    bar = acc.bar(0, "X", 1)
    assert bar is not None
    assert (bar.high, bar.volume, bar.vwap, bar.trades) == (13.0, 40.0, 460 / 40, 4)


# Price-less bars downstream


def test_price_less_bars_get_no_metrics_models_nor_alerts_and_count_in_the_day() -> None:
    """One XNYS session of 60 s bars; every third minute trades odd lots only."""
    rng = np.random.default_rng(3)
    open_ms = int(pd.Timestamp("2024-07-01 09:30", tz="America/New_York").value // 1_000_000)
    rows = []
    for minute in range(40):
        odd_only = minute % 3 == 2
        for j in range(5):
            odd = odd_only or j % 2 == 1
            size = float(rng.integers(1, 99) if odd else rng.integers(100, 900))
            codes = ["1", "12"] if size < 100 else ["1"]
            price = 200 + float(rng.integers(-64, 64)) / 64
            rows.append((open_ms + minute * 60_000 + j * 7_000, "AAPL", price, size, codes))
    tape = pd.DataFrame(rows, columns=["time_ms", "symbol", "price", "size", "codes"])
    config = FlowConfig(
        parse=ParseConfig(max_future_s=3600, max_past_s=3600),
        bars=BarConfig(bar_seconds=60, allowance_s=0, price_band=0),
        metrics=MetricsConfig(window=5),
        sessions=SessionConfig(default="XNYS"),
        live=False,
    )
    out = run(batches(tape), config, extra_sinks=("session_events", "summaries"))
    bars = [b for b in out["bars"] if isinstance(b, Bar)]
    priceless = {b.start_us for b in bars if b.close is None}
    priced = [b for b in bars if b.close is not None]
    assert len(bars) == 40
    assert len(priceless) == 13
    assert all(b.vwap is not None and b.volume > 0 for b in bars)
    assert [m.start_us for m in out["metrics"]] == [b.start_us for b in priced]
    made_at = {f.made_at_us for f in out["forecasts"]}
    assert made_at
    assert not made_at & priceless
    assert not {a.time_us for a in out["alerts"]} & priceless
    # The return across a price-less bar is from the last close before it.
    by_start = {m.start_us: m for m in out["metrics"]}
    for prev, bar in itertools.pairwise(priced):
        assert bar.close is not None
        assert prev.close is not None
        r = by_start[bar.start_us].log_return
        assert r == pytest.approx(np.log(bar.close / prev.close), rel=1e-12)
    (day,) = [s for s in out["summaries"] if isinstance(s, DailySummary)]
    regular = tape[tape["size"] >= 100]
    assert (day.volume, day.trades, day.bars) == (tape["size"].sum(), len(tape), 40)
    assert day.vwap == pytest.approx((tape.price * tape["size"]).sum() / tape["size"].sum())
    assert (day.open, day.close) == (regular.price.iloc[0], regular.price.iloc[-1])
    assert (day.high, day.low) == (regular.price.max(), regular.price.min())
