"""Models inside the dataflow: forecasts per bar, checkpoints, restart from a checkpoint."""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from typing import Any

import pytest

from dataflows.analysis import PIPELINE_ROW, Analysis, CheckpointConfig
from dataflows.bars import BarConfig
from dataflows.records import US, frozen_clock
from dataflows.ticks import FlowConfig
from tests.dataflows.helpers import random_ticks
from tests.dataflows.test_bars import run_bars
from tests.dataflows.test_flow import CONFIG, as_batches, ms_ticks, run

BAR_US = 60 * US
EVERY_BAR = replace(CONFIG, checkpoints=CheckpointConfig(every_s=60, clock="event"))


def forecasts_by_bar(rows: list[Any]) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """(symbol, model, made_at) -> the forecast row."""
    return {(r[1], r[2], r[8]): r for r in rows}


def test_every_bar_after_the_first_gets_a_forecast_per_model_for_the_next_bar() -> None:
    out = run(as_batches(ms_ticks()), CONFIG)
    bars = {(b.symbol, b.start_us) for b in out["bars"]}
    forecasts = out["forecasts"]
    models = {r[2] for r in forecasts}
    assert {"har", "ewma", "last", "linear", "zero"} <= models
    for time_us, symbol, _model, target, horizon, value, lower, upper, made_at in forecasts:
        assert (symbol, made_at) in bars
        assert horizon == 1
        assert time_us == made_at + BAR_US
        if target == "volatility":
            assert value > 0
        else:
            assert lower < value < upper
    first = {s: min(t for sym, t in bars if sym == s) for s, _ in bars}
    made = {(r[1], r[8]) for r in forecasts}
    assert made == {(s, t) for s, t in bars if t != first[s]}
    assert out["scores"], "prequential scores are written as the bars come"


def test_a_flow_restarted_from_its_checkpoint_forecasts_as_if_never_stopped() -> None:
    ticks = ms_ticks(6000)
    cut = ticks[len(ticks) // 2].time_us // BAR_US * BAR_US  # restart at a bar boundary
    first_half = as_batches([t for t in ticks if t.time_us < cut])
    second_half = as_batches([t for t in ticks if t.time_us >= cut])

    whole = run(as_batches(ticks), EVERY_BAR)
    before = run(first_half, EVERY_BAR)
    saved = before["checkpoints"]
    assert {r[2] for r in saved} >= {"har", "linear", "_shared", PIPELINE_ROW}

    def loader(symbol: str) -> list[tuple[Any, ...]]:
        rows = [r for r in saved if r[1] == symbol]
        newest = max(r[0] for r in rows)
        return [r for r in rows if r[0] == newest]

    after = run(second_half, replace(EVERY_BAR, checkpoint_loader=loader))
    expected = forecasts_by_bar([r for r in whole["forecasts"] if r[8] >= cut])
    got = forecasts_by_bar(after["forecasts"])
    assert got.keys() == expected.keys()
    assert got == expected
    fresh = forecasts_by_bar(run(second_half, EVERY_BAR)["forecasts"])
    assert fresh != expected, "without the checkpoint the models start from scratch"


def test_a_corrupt_checkpoint_is_skipped_not_fatal() -> None:
    batches = as_batches(ms_ticks(2000))

    def corrupt(symbol: str) -> list[tuple[Any, ...]]:
        return [(0, symbol, "_shared", 1, 10, b"not a pickle", {})]

    out = run(batches, replace(CONFIG, checkpoint_loader=corrupt))
    assert out["forecasts"]


def test_checkpoints_follow_their_interval() -> None:
    cfg = replace(CONFIG, bars=BarConfig(60, 0), checkpoints=CheckpointConfig(every_s=600))
    out = run(as_batches(ms_ticks()), cfg)
    times = sorted({(r[1], r[0]) for r in out["checkpoints"]})
    for symbol in {s for s, _ in times}:
        ts = [t for s, t in times if s == symbol]
        assert ts, symbol
        assert all(b - a >= 600 * US for a, b in itertools.pairwise(ts))


def test_config_is_a_flow_config() -> None:
    assert isinstance(EVERY_BAR, FlowConfig)


def test_a_model_that_fails_on_a_bar_costs_that_bars_forecasts_not_the_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bars, _ = run_bars(random_ticks(("AAPL",), n=2000, seconds=600), BarConfig(10, 0))
    analysis = Analysis(FlowConfig(live=False), frozen_clock, None)
    state, _first = analysis(None, bars[0])
    state, second = analysis(state, bars[1])
    assert second.forecasts, "forecasts from the second bar on"
    step = state.models.step

    def failing(bar: Any, metrics: Any) -> Any:
        raise ValueError("math domain error")

    state.models.step = failing  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, "dataflows.analysis"):
        state, broken = analysis(state, bars[2])
    assert broken.bar == bars[2]
    assert broken.metrics is not None
    assert broken.forecasts == []
    assert broken.scores == []
    assert "AAPL: the models failed on the bar" in caplog.text
    state.models.step = step  # type: ignore[method-assign]
    state, after = analysis(state, bars[3])
    assert after.forecasts
