"""Recovery snapshots of the stateful steps: pickles of the state at the epoch's end,
independent of the state the step goes on changing."""

from __future__ import annotations

import pickle

import pytest

from dataflows.analysis import Analysis, AnalysisLogic, SymbolState
from dataflows.bars import BarConfig, BarLogic, BarState
from dataflows.parse import TickChunk
from dataflows.records import frozen_clock
from dataflows.snapshots import thaw
from dataflows.ticks import FlowConfig
from online_models import ModelConfig
from tests.dataflows.helpers import random_ticks
from tests.dataflows.test_bars import run_bars


def analysed(logic: AnalysisLogic, bars: list) -> list:
    return [a for bar in bars for a in logic.on_item(bar)[0]]


def test_an_analysis_snapshot_resumes_as_if_never_stopped() -> None:
    bars, _ = run_bars(random_ticks(("AAPL",), n=3000, seconds=1200), BarConfig(10, 0))
    assert len(bars) > 100
    analysis = Analysis(FlowConfig(live=False), frozen_clock, None)
    logic = AnalysisLogic(analysis, None)
    analysed(logic, bars[:60])
    snapshot = logic.snapshot()
    assert isinstance(snapshot, bytes)
    after = analysed(logic, bars[60:])  # the state the snapshot was taken from moves on
    resumed = AnalysisLogic(analysis, pickle.loads(pickle.dumps(snapshot)))
    assert analysed(resumed, bars[60:]) == after
    # A recovery store written before snapshots were pickles holds the state itself.
    old = AnalysisLogic(analysis, None)
    analysed(old, bars[:60])
    assert analysed(AnalysisLogic(analysis, old.state), bars[60:]) == after  # type: ignore[arg-type]


def test_a_bars_snapshot_is_not_the_live_state() -> None:
    ticks = random_ticks(("AAPL",), n=400, seconds=60)
    logic = BarLogic(BarConfig(5, 0))
    logic.on_item(TickChunk("test", 0, ticks[:200]))
    snapshot = logic.snapshot()
    frozen = pickle.loads(snapshot)
    logic.on_item(TickChunk("test", 0, ticks[200:]))
    assert pickle.loads(snapshot) == frozen != logic.state
    resumed = BarLogic(BarConfig(5, 0), state=thaw(snapshot, BarState))
    again = BarLogic(BarConfig(5, 0))
    again.on_item(TickChunk("test", 0, ticks[:200]))
    rest = list(again.on_item(TickChunk("test", 0, ticks[200:]))[0])
    assert rest, "bars closed after the snapshot"
    assert list(resumed.on_item(TickChunk("test", 0, ticks[200:]))[0]) == rest


def test_a_snapshot_of_another_kind_of_state_is_refused() -> None:
    with pytest.raises(TypeError, match="holds BarState, not SymbolState"):
        thaw(pickle.dumps(BarState()), SymbolState)
    assert thaw(None, BarState) is None


@pytest.mark.parametrize("change", ["horizons", "model set"])
def test_a_snapshot_of_other_models_resumes_with_the_configured_ones(
    change: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another SENTINEL_MODEL_HORIZONS, or a snapshot from a version with other models:
    the models start afresh, the metrics go on."""
    bars, _ = run_bars(random_ticks(("AAPL",), n=1500, seconds=600), BarConfig(10, 0))
    before = Analysis(FlowConfig(live=False), frozen_clock, None)
    logic = AnalysisLogic(before, None)
    analysed(logic, bars[:40])
    if change == "model set":
        del logic.state.models.slots["range_har"]  # type: ignore[union-attr]
        now = before
    else:
        now = Analysis(
            FlowConfig(live=False, models=ModelConfig(horizons=(1, 5))), frozen_clock, None
        )
    bars_seen = logic.state.metrics.bars_seen  # type: ignore[union-attr]
    with caplog.at_level("WARNING", "dataflows.analysis"):
        resumed = AnalysisLogic(now, logic.snapshot())
    assert "AAPL: the models are not those configured; they start afresh" in caplog.text
    state = resumed.state
    assert state is not None
    assert state.models.bars_seen == 0
    assert state.models.config == now.config.models
    assert "range_har" in state.models.slots
    assert state.metrics.bars_seen == bars_seen
    out = analysed(resumed, bars[40:60])
    assert any(f.model == "range_har" for a in out for f in a.forecasts)
    caplog.clear()
    same = AnalysisLogic(before, None)
    analysed(same, bars[:40])
    with caplog.at_level("WARNING", "dataflows.analysis"):
        kept = AnalysisLogic(before, same.snapshot()).state
    assert kept is not None
    assert kept.models.bars_seen == same.state.models.bars_seen > 0  # type: ignore[union-attr]
    assert "start afresh" not in caplog.text
