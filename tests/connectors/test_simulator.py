"""The simulator: its generator, its Bytewax source, and its Finnhub-protocol server."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import groupby
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from connectors.simulator import (
    EXTENDED_HOURS_CONDITION,
    KNOWN_SYMBOLS,
    MAX_MESSAGE_TRADES,
    SimParams,
    SimulatorSource,
    Spike,
    TickGenerator,
    Trade,
    finnhub_trade_message,
    market_hours,
    start_price,
    trade_json,
)
from connectors.simulator_server import ServerThread
from dataflows.records import US, RawBatch

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
MINUTE = 60 * US
CALM_ONLY = SimParams(calm_mean_s=math.inf, jumps_per_hour=0.0, vol_of_vol=0.0)


def trades_of(gen: TickGenerator, until_us: int, step_us: int | None = None) -> list[Trade]:
    if step_us is None:
        return gen.advance(until_us)
    out: list[Trade] = []
    t = gen.now_us
    while t < until_us:
        t = min(t + step_us, until_us)
        out.extend(gen.advance(t))
    return out


def by_symbol(trades: list[Trade], symbol: str) -> list[Trade]:
    return [t for t in trades if t.symbol == symbol]


def sampled_log_returns(trades: list[Trade], every_us: int) -> np.ndarray:
    """Log returns of the last price in each ``every_us`` bucket."""
    last = {t.time_ms * 1000 // every_us: t.price for t in trades}
    return np.diff(np.log(np.array([last[k] for k in sorted(last)])))


# --- the generator -------------------------------------------------------------------


def test_same_seed_same_trades_whatever_the_call_pattern() -> None:
    symbols = ["AAPL", "MSFT", "XYZQ"]
    one_call = trades_of(TickGenerator(symbols, 42, T0), T0 + 10 * MINUTE)
    small_steps = trades_of(TickGenerator(symbols, 42, T0), T0 + 10 * MINUTE, step_us=37_123)
    other_seed = trades_of(TickGenerator(symbols, 43, T0), T0 + 10 * MINUTE)
    assert len(one_call) > 5000
    assert one_call == small_steps
    assert one_call != other_seed
    assert one_call == sorted(one_call, key=lambda t: (t.time_ms, t.symbol))
    assert all(T0 // 1000 <= t.time_ms < (T0 + 10 * MINUTE) // 1000 for t in one_call)


def test_a_symbols_stream_does_not_depend_on_the_others() -> None:
    alone = trades_of(TickGenerator(["AAPL"], 7, T0), T0 + 5 * MINUTE)
    crowd = trades_of(TickGenerator(["TSLA", "AAPL", "SPY"], 7, T0), T0 + 5 * MINUTE)
    assert by_symbol(crowd, "AAPL") == alone

    later = TickGenerator(["AAPL"], 7, T0)
    first = later.advance(T0 + 2 * MINUTE)
    later.add_symbol("MSFT")
    rest = later.advance(T0 + 5 * MINUTE)
    assert first + by_symbol(rest, "AAPL") == alone
    # MSFT started at T0 + 2 min: its stream is the one a generator started then gives.
    msft = trades_of(TickGenerator(["MSFT"], 7, T0 + 2 * MINUTE), T0 + 5 * MINUTE)
    assert by_symbol(rest, "MSFT") == msft

    later.remove_symbol("AAPL")
    assert {t.symbol for t in later.advance(T0 + 6 * MINUTE)} == {"MSFT"}


def test_the_stream_does_not_depend_on_pythons_hash_seed() -> None:
    code = (
        "from connectors.simulator import TickGenerator as G;"
        "print(G(['QQQZ', 'AAPL'], 5, 0).advance(30_000_000)[:20])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert "QQQZ" in outputs.pop()


def test_trades_are_plausible() -> None:
    gen = TickGenerator(["AAPL", "NVDA", "SPY", "ZZTOP"], 1, T0)
    trades = gen.advance(T0 + 30 * MINUTE)
    prices = np.array([t.price for t in trades])
    assert (prices > 0).all()
    assert np.allclose(prices * 100, np.round(prices * 100), rtol=0, atol=1e-6)  # cents
    assert all(type(t.volume) is int and t.volume >= 1 for t in trades)
    assert all(t.conditions in (("1",), ("1", "12")) for t in trades)  # Finnhub's codes
    assert all((t.conditions == ("1", "12")) == (t.volume < 100) for t in trades)  # odd lot
    volumes = np.array([t.volume for t in trades])
    assert 50 < np.median(volumes) < 100 < np.percentile(volumes, 95)  # heavy-tailed
    assert 0.48 < np.mean(volumes < 100) < 0.58  # about half odd lots, as on US tapes
    for symbol in ("AAPL", "NVDA", "SPY"):
        first = by_symbol(trades, symbol)[0].price
        assert first == pytest.approx(KNOWN_SYMBOLS[symbol][0], rel=0.01)
    assert 5.0 <= start_price("ZZTOP") < 500.0
    assert by_symbol(trades, "ZZTOP")[0].price == pytest.approx(start_price("ZZTOP"), rel=0.01)


def test_arrivals_are_poisson_at_the_configured_rate() -> None:
    seconds, rate = 2000, 5.0
    gen = TickGenerator(["AAPL"], 3, T0, params=replace(CALM_ONLY, rate=rate))
    trades = gen.advance(T0 + seconds * US)
    expected = rate * seconds
    assert abs(len(trades) - expected) < 5 * math.sqrt(expected)
    gaps = np.diff([t.time_ms for t in trades]) / 1000
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: CV = 1


def test_per_symbol_rates() -> None:
    gen = TickGenerator(["AAPL", "MSFT"], 3, T0, params=CALM_ONLY, rates={"MSFT": 20.0})
    trades = gen.advance(T0 + 500 * US)
    assert len(by_symbol(trades, "AAPL")) == pytest.approx(4.0 * 500, rel=0.1)
    assert len(by_symbol(trades, "MSFT")) == pytest.approx(20.0 * 500, rel=0.1)


def minute_stats(trades: list[Trade]) -> tuple[np.ndarray, np.ndarray]:
    """Per minute: realized volatility of trade-to-trade log returns, and trade count."""
    minutes = [list(g) for _, g in groupby(trades, key=lambda t: t.time_ms // 60_000)]
    returns = [np.diff(np.log([t.price for t in m])) for m in minutes]
    return np.array([np.sqrt(np.sum(r * r)) for r in returns]), np.array(list(map(len, minutes)))


def test_regimes_switch_volatility_and_rate() -> None:
    params = SimParams(
        calm_mean_s=300.0, turbulent_mean_s=120.0, vol_of_vol=0.0, jumps_per_hour=0.0
    )
    vol, counts = minute_stats(
        TickGenerator(["AAPL"], 11, T0, params=params).advance(T0 + 240 * MINUTE)
    )
    high = vol > 1.8 * np.median(vol)
    assert 0.1 < high.mean() < 0.5  # turbulent about 120 / (300 + 120) of the time
    assert np.median(vol[high]) / np.median(vol[~high]) == pytest.approx(3.0, rel=0.15)
    assert np.median(counts[high]) / np.median(counts[~high]) == pytest.approx(2.0, rel=0.15)

    vol, _ = minute_stats(
        TickGenerator(["AAPL"], 11, T0, params=CALM_ONLY).advance(T0 + 240 * MINUTE)
    )
    assert (vol < 1.8 * np.median(vol)).all()


def test_jumps_happen_at_their_rate() -> None:
    # Diffusion negligible, so every move above 30 bp is a jump (|N(0, 1%)| > 0.3%: 76%).
    params = replace(CALM_ONLY, annual_vol=1e-4, jumps_per_hour=60.0, jump_std=0.01)
    trades = TickGenerator(["AAPL"], 5, T0, params=params).advance(T0 + 120 * MINUTE)
    returns = np.diff(np.log([t.price for t in trades]))
    big = int((np.abs(returns) > 0.003).sum())
    expected = 120 * 0.764
    assert abs(big - expected) < 4 * math.sqrt(expected)


def test_injected_spike_multiplies_volatility_by_its_factor() -> None:
    start, length = T0 + 10 * MINUTE, 5 * MINUTE
    spike = Spike("AAPL", start, length, 4.0)
    plain = TickGenerator(["AAPL", "MSFT"], 9, T0).advance(T0 + 20 * MINUTE)
    spiked = TickGenerator(["AAPL", "MSFT"], 9, T0, spikes=[spike]).advance(T0 + 20 * MINUTE)

    assert [(t.time_ms, t.volume) for t in plain] == [(t.time_ms, t.volume) for t in spiked]
    assert by_symbol(plain, "MSFT") == by_symbol(spiked, "MSFT")
    before = [t for t in plain if t.time_ms * 1000 < start]
    assert spiked[: len(before)] == before

    def window(trades: list[Trade]) -> list[Trade]:
        return [t for t in by_symbol(trades, "AAPL") if start <= t.time_ms * 1000 < start + length]

    vol_plain = np.std(sampled_log_returns(window(plain), 5 * US))
    vol_spiked = np.std(sampled_log_returns(window(spiked), 5 * US))
    assert vol_spiked / vol_plain == pytest.approx(4.0, rel=0.05)


def test_generator_pickles_mid_stream() -> None:
    gen = TickGenerator(["AAPL", "MSFT"], 2, T0)
    gen.advance(T0 + 90 * US + 123)
    copy = pickle.loads(pickle.dumps(gen))
    assert copy.advance(T0 + 5 * MINUTE) == gen.advance(T0 + 5 * MINUTE)


def test_finnhub_trade_message_is_exactly_finnhubs() -> None:
    trades = [
        Trade("AAPL", 189.12, 1700000000123, 100, ("1", "12")),
        Trade("MSFT", 410.0, 1700000000124, 3, ()),
        Trade("BRK.B", 0.07, 1700000000125, 1, None),
    ]
    text = finnhub_trade_message(trades)
    assert text.startswith(
        '{"type":"trade","data":[{"s":"AAPL","p":189.12,"t":1700000000123,"v":100,"c":["1","12"]}'
    )
    expected = {
        "type": "trade",
        "data": [
            {"s": "AAPL", "p": 189.12, "t": 1700000000123, "v": 100, "c": ["1", "12"]},
            {"s": "MSFT", "p": 410.0, "t": 1700000000124, "v": 3, "c": []},
            {"s": "BRK.B", "p": 0.07, "t": 1700000000125, "v": 1, "c": None},
        ],
    }
    assert text == json.dumps(expected, separators=(",", ":"))
    assert finnhub_trade_message([]) == '{"type":"trade","data":[]}'


# --- market hours --------------------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")
FORM_T = EXTENDED_HOURS_CONDITION


def ny(year: int, month: int, day: int, hour: int, minute: int) -> int:
    """Microseconds since the epoch of a New York wall-clock time."""
    return int(datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).timestamp()) * US


def window(start_us: int, minutes: int, params: SimParams = CALM_ONLY) -> list[Trade]:
    """``minutes`` of AAPL on XNYS and MSFT on no calendar from ``start_us``: the
    generator's clock is the time it is advanced to."""
    gen = TickGenerator(["AAPL", "MSFT"], 5, start_us, params=params, calendars={"AAPL": "XNYS"})
    return gen.advance(start_us + minutes * MINUTE)


def test_finnhub_condition_codes() -> None:
    # Finnhub's websocket, as captured: Form T is "24", an odd lot "12" (at any hour).
    assert FORM_T == "24"
    trades = window(ny(2024, 7, 3, 8, 0), 30)
    assert {t.conditions for t in trades} == {
        ("1",),
        ("1", "12"),
        ("1", "24"),
        ("1", "24", "12"),
    }


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(ny(2024, 6, 29, 12, 0), id="saturday"),
        pytest.param(ny(2024, 7, 4, 11, 0), id="independence-day"),
        pytest.param(ny(2024, 7, 3, 22, 0), id="22:00"),
        pytest.param(ny(2024, 7, 8, 3, 30), id="before-04:00"),
    ],
)
def test_no_trades_when_the_market_is_closed(start: int) -> None:
    trades = window(start, 30)
    assert by_symbol(trades, "AAPL") == []
    assert len(by_symbol(trades, "MSFT")) == pytest.approx(4.0 * 1800, rel=0.1)


def test_full_rate_in_the_regular_session() -> None:
    trades = window(ny(2024, 7, 2, 10, 0), 30)
    aapl, msft = by_symbol(trades, "AAPL"), by_symbol(trades, "MSFT")
    expected = 4.0 * 1800
    assert abs(len(aapl) - expected) < 5 * math.sqrt(expected)
    assert len(msft) == pytest.approx(expected, rel=0.1)
    assert not any(FORM_T in (t.conditions or ()) for t in aapl)


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(ny(2024, 7, 3, 8, 0), id="pre-market"),
        pytest.param(ny(2024, 7, 3, 14, 0), id="after-the-13:00-early-close"),
        pytest.param(ny(2024, 7, 2, 19, 30), id="after-hours"),
    ],
)
def test_sparse_flagged_trades_in_extended_hours(start: int) -> None:
    trades = window(start, 30)
    aapl = by_symbol(trades, "AAPL")
    expected = 0.1 * 4.0 * 1800  # SimParams.extended_rate
    assert abs(len(aapl) - expected) < 5 * math.sqrt(expected)
    assert all(t.conditions == (("1", "24", "12") if t.volume < 100 else ("1", "24")) for t in aapl)
    assert len(by_symbol(trades, "MSFT")) == pytest.approx(4.0 * 1800, rel=0.1)
    assert not any(FORM_T in (t.conditions or ()) for t in by_symbol(trades, "MSFT"))


@pytest.mark.parametrize(
    ("start", "phases"),
    [
        pytest.param(ny(2024, 7, 2, 9, 0), {1, 2}, id="the-open"),
        pytest.param(ny(2024, 7, 2, 15, 30), {1, 2}, id="the-close"),
        pytest.param(ny(2024, 7, 2, 19, 45), {1}, id="20:00"),
    ],
)
def test_each_trade_is_flagged_by_its_own_time(start: int, phases: set[int]) -> None:
    aapl = by_symbol(window(start, 60, params=SimParams(rate=20.0)), "AAPL")
    phase = market_hours("XNYS").phase([t.time_ms * 1000 for t in aapl])
    assert set(phase.tolist()) == phases  # 1: extended hours, 2: regular; never closed
    flagged = np.array([FORM_T in (t.conditions or ()) for t in aapl])
    assert (flagged == (phase == 1)).all()


def test_calendar_stream_does_not_depend_on_the_call_pattern() -> None:
    start = ny(2024, 7, 2, 9, 20)  # through the open, in blocks of varying length

    def gen() -> TickGenerator:
        return TickGenerator(["AAPL"], 3, start, calendar="XNYS")

    one_call = trades_of(gen(), start + 20 * MINUTE)
    small_steps = trades_of(gen(), start + 20 * MINUTE, step_us=123_457)
    assert len(one_call) > 1000
    assert one_call == small_steps
    copy = gen()
    copy.advance(start + 5 * MINUTE)
    resumed = pickle.loads(pickle.dumps(copy))
    assert resumed.advance(start + 20 * MINUTE) == copy.advance(start + 20 * MINUTE)


def test_a_closed_night_adds_no_variance() -> None:
    evening, morning = ny(2024, 7, 1, 19, 58), ny(2024, 7, 2, 4, 2)
    moves = []
    for seed in range(20):
        gen = TickGenerator(["AAPL"], seed, evening, calendar="XNYS")
        trades = gen.advance(morning)
        before = [t for t in trades if t.time_ms * 1000 < ny(2024, 7, 1, 20, 0)]
        after = [t for t in trades if t.time_ms * 1000 >= ny(2024, 7, 2, 4, 0)]
        assert before
        assert after
        assert len(before) + len(after) == len(trades)
        moves.append(math.log(after[0].price / before[-1].price))
    # About two minutes of extended-hours trading time at most: well under 0.1 %.
    assert max(map(abs, moves)) < 0.002


def test_a_symbol_on_no_calendar_or_on_24_7_trades_at_all_hours() -> None:
    plain = TickGenerator(["MSFT"], 2, ny(2024, 6, 29, 12, 0)).advance(ny(2024, 6, 29, 12, 10))
    always = TickGenerator(["MSFT"], 2, ny(2024, 6, 29, 12, 0), calendar="24/7").advance(
        ny(2024, 6, 29, 12, 10)
    )
    assert len(plain) > 1000
    assert always == plain  # 24/7 is no calendar: the very same stream
    gen = TickGenerator([], 2, ny(2024, 6, 29, 12, 0), calendar="XNYS", calendars={"MSFT": "24/7"})
    gen.add_symbol("MSFT")
    gen.add_symbol("AAPL")
    assert (gen.calendar_of("MSFT"), gen.calendar_of("AAPL")) == (None, "XNYS")
    assert {t.symbol for t in gen.advance(ny(2024, 6, 29, 12, 10))} == {"MSFT"}


def test_an_unknown_calendar_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown market calendar"):
        TickGenerator(["AAPL"], 1, T0, calendar="NOPE")


def test_market_status_lines() -> None:
    nyse = market_hours("XNYS")
    assert nyse.status(ny(2026, 12, 5, 12, 0)) == (
        "XNYS is closed (opens Mon 2026-12-07 09:30 America/New_York)"
    )
    assert nyse.status(ny(2024, 7, 3, 10, 0)) == (
        "XNYS is open (closes Wed 2024-07-03 13:00 America/New_York)"
    )
    assert nyse.status(ny(2024, 7, 3, 14, 0)) == (
        "XNYS is closed (after hours; opens Fri 2024-07-05 09:30 America/New_York)"
    )


# --- the Bytewax source --------------------------------------------------------------


def run_source(source: SimulatorSource, **kw: Any) -> list[RawBatch]:
    out: list[RawBatch] = []
    flow = Dataflow("sim")
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    run_main(flow, **kw)
    return out


def expected_messages(symbols: list[str], seed: int, seconds: int, step_ms: int) -> list[str]:
    gen = TickGenerator(symbols, seed, T0)
    chunks = (gen.advance(T0 + k * step_ms * 1000) for k in range(1, seconds * 1000 // step_ms + 1))
    return [finnhub_trade_message(c) for c in chunks if c]


def test_source_emits_the_generators_trades() -> None:
    symbols = ["AAPL", "MSFT", "NVDA"]
    source = SimulatorSource(symbols, seed=4, start_us=T0, duration_s=900, batch_trades=1000)
    batches = run_source(source)
    messages = [m for b in batches for m in b.messages]
    assert [text for _, text in messages] == expected_messages(symbols, 4, 900, 100)
    assert [seq for seq, _ in messages] == list(range(len(messages)))
    assert all(b.source == "simulator" and b.subscribed == tuple(symbols) for b in batches)
    assert batches[-1].clock_us == T0 + 900 * US
    for b in batches:
        last_ms = json.loads(b.messages[-1][1])["data"][-1]["t"]  # type: ignore[arg-type]
        assert last_ms * 1000 < b.clock_us
    sizes = [sum(str(text).count('"s":') for _, text in b.messages) for b in batches]
    assert all(1000 <= n < 1200 for n in sizes[:-1])


def test_busy_steps_are_split_into_messages_of_at_most_1000_trades() -> None:
    rates = {"AAPL": 6000.0, "NVDA": 9000.0}
    source = SimulatorSource(["AAPL", "NVDA"], seed=6, start_us=T0, duration_s=2, rates=rates)
    messages = [text for b in run_source(source) for _, text in b.messages]
    data = [json.loads(str(text))["data"] for text in messages]
    assert max(map(len, data)) == MAX_MESSAGE_TRADES
    assert len(messages) > 20
    expected = TickGenerator(["AAPL", "NVDA"], 6, T0, rates=rates).advance(T0 + 2 * US)
    assert [d for m in data for d in m] == [json.loads(trade_json(t)) for t in expected]


def test_resumed_partition_emits_what_an_uninterrupted_one_does() -> None:
    source = SimulatorSource(
        ["AAPL", "TSLA"], seed=8, start_us=T0, duration_s=600, batch_trades=300
    )

    def drain(part: Any) -> Iterator[RawBatch]:
        while True:
            try:
                yield from part.next_batch()
            except StopIteration:
                return

    part = source.build_part("inp", "simulator", None)
    head = [b for _, b in zip(range(5), drain(part), strict=False)]
    state = pickle.loads(pickle.dumps(part.snapshot()))
    tail = list(drain(part))
    resumed = list(drain(source.build_part("inp", "simulator", state)))
    assert len(tail) > 3
    assert resumed == tail
    assert head + tail == run_source(source)


def test_resume_after_a_crash_with_bytewax_recovery(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)
    recovery = RecoveryConfig(str(tmp_path))

    def flow(out: list[RawBatch], crash_at_seq: int | None) -> Dataflow:
        source = SimulatorSource(
            ["AAPL", "MSFT"], seed=3, start_us=T0, duration_s=1200, batch_trades=500
        )
        f = Dataflow("sim")

        def check(batch: RawBatch) -> RawBatch:
            if crash_at_seq is not None and batch.messages[0][0] >= crash_at_seq:
                raise RuntimeError("simulated crash")
            return batch

        op.output("out", op.map("check", op.input("inp", f, source), check), TestingSink(out))
        return f

    full: list[RawBatch] = []
    run_main(flow(full, None))
    crash_at = full[10].messages[0][0]
    before: list[RawBatch] = []
    with pytest.raises(BytewaxRuntimeError):
        run_main(flow(before, crash_at), epoch_interval=timedelta(0), recovery_config=recovery)
    after: list[RawBatch] = []
    run_main(flow(after, None), epoch_interval=timedelta(0), recovery_config=recovery)

    assert before == full[:10]
    assert after == full[len(full) - len(after) :]
    assert len(full) - len(after) <= len(before)  # nothing skipped


def test_paced_source_follows_the_clock() -> None:
    source = SimulatorSource(
        ["AAPL"], seed=1, duration_s=1.0, batch_interval_ms=100, paced=True, rates={"AAPL": 50}
    )
    started = time.monotonic()
    batches = run_source(source)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5.0
    assert 5 <= len(batches) <= 11  # one per step (fewer if Bytewax wakes late)
    wall_now = time.time_ns() // 1000
    assert all(wall_now - 10 * US < b.clock_us <= wall_now for b in batches)
    for b in batches:
        for _, text in b.messages:
            assert all(d["t"] * 1000 <= b.clock_us for d in json.loads(str(text))["data"])
    assert sum(len(b.messages) for b in batches) >= 5


def test_source_follows_calendars_from_its_injected_clock() -> None:
    saturday = ny(2024, 6, 29, 12, 0)
    source = SimulatorSource(
        ["AAPL", "MSFT"],
        seed=2,
        duration_s=600,
        clock=lambda: saturday,
        calendars={"AAPL": "XNYS"},
    )
    messages = [json.loads(str(text)) for b in run_source(source) for _, text in b.messages]
    assert {d["s"] for m in messages for d in m["data"]} == {"MSFT"}
    assert min(d["t"] for m in messages for d in m["data"]) >= saturday // 1000


# --- the websocket server ------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(rate=30.0, ping_interval=0.5, seed=1) as srv:
        yield srv


def url(srv: ServerThread, token: str | None = None) -> str:
    return f"ws://127.0.0.1:{srv.port}/" + (f"?token={token}" if token is not None else "")


def receive(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(json.loads(ws.recv(timeout=left)))
        except TimeoutError:
            break
    return out


def trade_entries(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for m in messages if m["type"] == "trade" for d in m["data"]]


def subscribe(ws: ClientConnection, symbol: str, kind: str = "subscribe") -> None:
    ws.send(json.dumps({"type": kind, "symbol": symbol}))


def test_server_sends_only_the_subscribed_symbols(server: ServerThread) -> None:
    with (
        connect(url(server, "anything"), proxy=None) as one,
        connect(url(server), proxy=None) as two,
    ):
        subscribe(one, "AAPL")
        subscribe(two, "AAPL")
        subscribe(two, "MSFT")
        got_one, got_two = receive(one, 1.5), receive(two, 1.5)
    entries_one, entries_two = trade_entries(got_one), trade_entries(got_two)
    assert {d["s"] for d in entries_one} == {"AAPL"}
    assert {d["s"] for d in entries_two} == {"AAPL", "MSFT"}
    assert set(entries_one[0]) == {"s", "p", "t", "v", "c"}
    # One shared generator: both clients see the same AAPL trades where they overlap.
    aapl_two = [d for d in entries_two if d["s"] == "AAPL"]
    first, last = (
        max(entries_one[0]["t"], aapl_two[0]["t"]),
        min(entries_one[-1]["t"], aapl_two[-1]["t"]),
    )
    overlap_one = [d for d in entries_one if first <= d["t"] <= last]
    assert len(overlap_one) > 10
    assert overlap_one == [d for d in aapl_two if first <= d["t"] <= last]
    # Trades arrive in several messages, roughly every 0.2 s.
    assert len([m for m in got_one if m["type"] == "trade"]) >= 4


def test_unsubscribe_stops_a_symbol(server: ServerThread) -> None:
    with connect(url(server), proxy=None) as ws:
        subscribe(ws, "AAPL")
        subscribe(ws, "MSFT")
        assert {d["s"] for d in trade_entries(receive(ws, 1.0))} == {"AAPL", "MSFT"}
        subscribe(ws, "AAPL", "unsubscribe")
        receive(ws, 0.3)  # in flight
        assert {d["s"] for d in trade_entries(receive(ws, 1.0))} == {"MSFT"}


def test_server_pings(server: ServerThread) -> None:
    with connect(url(server), proxy=None) as ws:
        messages = receive(ws, 1.2)
    assert {"type": "ping"} in messages
    assert all(m == {"type": "ping"} for m in messages)  # nothing subscribed, no trades


def test_malformed_messages_get_an_error_and_the_connection_survives(
    server: ServerThread,
) -> None:
    bad = [
        "not json",
        "[1, 2]",
        '{"type": "subscribe"}',
        '{"type": "subscribe", "symbol": 42}',
        '{"type": "dance", "symbol": "AAPL"}',
    ]
    with connect(url(server), proxy=None) as ws:
        for text in bad:
            ws.send(text)
            reply = json.loads(ws.recv(timeout=2))
            assert reply["type"] == "error"
            assert set(reply) == {"type", "msg"}
            assert isinstance(reply["msg"], str)
            assert reply["msg"]
        subscribe(ws, "NVDA")
        assert {d["s"] for d in trade_entries(receive(ws, 1.0))} == {"NVDA"}


def test_token_is_enforced_when_configured() -> None:
    with ServerThread(rate=50.0, token="s3cret") as srv:
        for wrong in (url(srv), url(srv, "nope"), url(srv, "")):
            with pytest.raises(InvalidStatus) as refused:
                connect(wrong, proxy=None)
            assert refused.value.response.status_code == 401
        with connect(url(srv, "s3cret"), proxy=None) as ws:
            subscribe(ws, "AAPL")
            assert trade_entries(receive(ws, 1.0))


def is_valid_entry(d: dict[str, Any], now_ms: int) -> bool:
    p, t, v = d.get("p"), d.get("t"), d.get("v")
    return (
        isinstance(d.get("s"), str)
        and isinstance(p, (int, float))
        and math.isfinite(p)
        and p > 0
        and isinstance(t, int)
        and abs(t - now_ms) < 86_400_000
        and isinstance(v, (int, float))
        and v >= 0
    )


def test_bad_rate_sends_malformed_trades() -> None:
    with ServerThread(rate=50.0, bad_rate=1.0) as srv, connect(url(srv), proxy=None) as ws:
        subscribe(ws, "AAPL")
        entries = trade_entries(receive(ws, 1.5))
    now_ms = time.time_ns() // 1_000_000
    assert len(entries) > 30
    assert not any(is_valid_entry(d, now_ms) for d in entries)
    kinds = {
        "text price": any(isinstance(d.get("p"), str) for d in entries),
        "nan": any(isinstance(d.get("p"), float) and math.isnan(d["p"]) for d in entries),
        "negative size": any(d.get("v", 0) < 0 for d in entries),
        "missing field": any(not {"s", "p", "t"} <= set(d) for d in entries),
        "future": any(d.get("t", 0) > now_ms + 86_400_000 for d in entries),
    }
    assert all(kinds.values()), kinds


def test_trades_are_valid_by_default(server: ServerThread) -> None:
    with connect(url(server), proxy=None) as ws:
        subscribe(ws, "AAPL")
        entries = trade_entries(receive(ws, 1.0))
    now_ms = time.time_ns() // 1_000_000
    assert entries
    assert all(is_valid_entry(d, now_ms) for d in entries)


def test_server_follows_the_calendar_of_its_injected_clock() -> None:
    now = [ny(2024, 6, 29, 12, 0)]  # a Saturday
    with (
        ServerThread(
            rate=50.0, interval_s=0.05, ping_interval=60.0, calendar="XNYS", clock=lambda: now[0]
        ) as srv,
        connect(url(srv), proxy=None) as ws,
    ):
        subscribe(ws, "AAPL")
        ws.send("not json")  # answered once the subscription before it is in place
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        now[0] = ny(2024, 7, 1, 4, 1)  # the weekend passes; Monday's pre-market begins
        message = json.loads(ws.recv(timeout=10))
    entries = message["data"]
    assert message["type"] == "trade"
    assert entries
    assert all(ny(2024, 7, 1, 4, 0) <= d["t"] * 1000 < now[0] for d in entries)
    assert all(d["c"][:2] == ["1", "24"] for d in entries)
