"""The simulator through the whole dataflow, checked against an independent reference."""

from __future__ import annotations

import math

import pandas as pd

from connectors.simulator import SimParams, SimulatorSource, Spike, TickGenerator
from dataflows.alerts import AlertConfig
from dataflows.bars import BarConfig
from dataflows.parse import ParseConfig
from dataflows.records import US
from dataflows.ticks import FlowConfig
from tests.dataflows.test_bars import COLUMNS
from tests.dataflows.test_conditions import reference_bars

START_US = 1_700_000_000 * US
SYMBOLS = ["AAPL", "MSFT", "NVDA"]
# Unpaced simulator batches span minutes of event time, their clock at the end.
PARSE = ParseConfig(max_future_s=60, max_past_s=3600)


def flow_of(source: SimulatorSource, config: FlowConfig) -> dict[str, list]:
    from bytewax.testing import TestingSink

    from dataflows.ticks import Sinks, build_flow

    outs: dict[str, list] = {k: [] for k in Sinks.__dataclass_fields__}
    from bytewax.testing import run_main

    run_main(build_flow(source, Sinks(**{k: TestingSink(v) for k, v in outs.items()}), config))
    return {k: [row for item in v for row in item] for k, v in outs.items()}


def test_simulated_bars_equal_pandas_over_the_generators_own_trades() -> None:
    seconds, bar = 1800, 60
    source = SimulatorSource(SYMBOLS, seed=7, start_us=START_US, duration_s=seconds)
    out = flow_of(source, FlowConfig(parse=PARSE, bars=BarConfig(bar, 0), live=False))

    # The reference: the same generator, advanced in one go, bars by pandas under the
    # condition rules (its odd lots, ``["1", "12"]``, set no prices).
    trades = TickGenerator(SYMBOLS, 7, START_US).advance(START_US + seconds * US)
    tape = pd.DataFrame(
        [
            (t.time_ms, t.symbol, t.price, float(t.volume), list(t.conditions or []) or None)
            for t in trades
        ],
        columns=["time_ms", "symbol", "price", "size", "codes"],
    )
    assert tape.codes.map(lambda c: c == ["1", "12"]).any()
    want = reference_bars(tape, "tape", bar)
    got = pd.DataFrame(out["bars"])[COLUMNS].sort_values(["symbol", "start_us"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, rtol=1e-12, check_dtype=False)
    assert len(out["ticks"]) == len(trades)
    assert out["rejects"] == []
    assert {b.symbol for b in out["bars"]} == set(SYMBOLS)


def test_an_injected_spike_alerts_once_and_calm_symbols_never() -> None:
    calm = SimParams(calm_mean_s=math.inf, jumps_per_hour=0.0, rate=8.0)
    spike = Spike("AAPL", START_US + 2400 * US, 600 * US, 5.0)
    source = SimulatorSource(
        ["AAPL", "MSFT"], seed=11, start_us=START_US, duration_s=3600, params=calm, spikes=[spike]
    )
    config = FlowConfig(parse=PARSE, bars=BarConfig(10, 0), alerts=AlertConfig(), live=False)
    out = flow_of(source, config)
    spikes = [a for a in out["alerts"] if a.kind == "volatility_spike"]
    assert [a.symbol for a in spikes] == ["AAPL"]
    assert spike.start_us <= spikes[0].time_us < spike.start_us + spike.duration_us
