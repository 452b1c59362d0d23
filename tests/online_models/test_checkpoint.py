"""Checkpoints round-trip exactly; bad ones are reported and skipped, never fatal."""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable

import pytest

from dataflows.records import ModelCheckpoint
from online_models import (
    CHECKPOINT_VERSION,
    RETURN_MODELS,
    VOLATILITY_MODELS,
    ModelConfig,
    SymbolModels,
    restore,
    symbol_models,
)
from online_models.checkpoint import RESERVED_NAMES, SHARED_MODEL
from online_models.zero import ZeroReturn
from tests.online_models.helpers import regime_sigma, run, simulate

CFG = ModelConfig(horizons=(1, 2), score_window=20)


@pytest.fixture(scope="module")
def data() -> tuple[list, list]:
    bars, metrics, _ = simulate(regime_sigma(600, period=150), seed=5)
    return bars, metrics


@pytest.fixture(scope="module")
def trained_once(data: tuple[list, list]) -> bytes:
    models = SymbolModels("X", CFG)
    run(models, data[0][:400], data[1][:400])
    return pickle.dumps(models)


@pytest.fixture
def original(trained_once: bytes) -> SymbolModels:
    """Models that have seen the first 400 bars (a fresh copy for each test)."""
    models: SymbolModels = pickle.loads(trained_once)
    return models


def test_rows_have_the_sink_format(original: SymbolModels) -> None:
    rows = original.checkpoint(123)
    names = {r.model for r in rows}
    assert names == {"_shared", "anomaly", *VOLATILITY_MODELS, *RETURN_MODELS}
    for row in rows:
        time_us, symbol, _, version, bars_seen, state, metrics = row
        assert (time_us, symbol, version, bars_seen) == (123, "X", CHECKPOINT_VERSION, 399)
        assert isinstance(state, bytes)
        json.dumps(metrics, allow_nan=False)  # what the jsonb sink does
    har = next(r for r in rows if r.model == "har").metrics
    assert {"qlike", "qlike_rolling", "mse_rel_ewma", "qlike_h2"} <= har.keys()


def test_restored_models_forecast_identically(
    data: tuple[list, list], original: SymbolModels
) -> None:
    bars, metrics = data
    rows = original.checkpoint(bars[399].start_us)
    # The database hands back plain tuples, the state as bytes (or a memoryview).
    as_read = [(*r[:5], memoryview(r.state), dict(r.metrics)) for r in rows]
    restored, errors = restore(as_read, CFG)
    assert errors == []
    assert restored is not None
    snapshot = pickle.loads(pickle.dumps(original))  # what Bytewax recovery does
    after = [run(m, bars[400:], metrics[400:]) for m in (original, restored, snapshot)]
    assert after[0] == after[1] == after[2]
    assert sum(len(r.forecasts) for r in after[0]) == len(bars[400:]) * 2 * 7
    assert original.scores() == restored.scores()


def test_latest_checkpoint_wins(data: tuple[list, list], original: SymbolModels) -> None:
    bars, metrics = data
    old_rows = original.checkpoint(1)
    run(original, bars[400:450], metrics[400:450])
    restored, errors = SymbolModels.restore(old_rows + original.checkpoint(2))
    assert errors == []
    assert restored is not None
    assert restored.bars_seen == 449


def _corrupt(rows: list[ModelCheckpoint], model: str, **change: object) -> list[ModelCheckpoint]:
    return [r._replace(**change) if r.model == model else r for r in rows]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": b"\x80\x05garbage"}, "cannot unpickle"),
        ({"state": b""}, "cannot unpickle"),
        ({"version": CHECKPOINT_VERSION + 1}, "version"),
        ({"state": pickle.dumps({"not": "a model"})}, "expected a ModelSlot"),
    ],
)
def test_a_bad_model_row_is_reported_and_that_model_starts_afresh(
    data: tuple[list, list], original: SymbolModels, change: dict[str, object], message: str
) -> None:
    bars, metrics = data
    restored, errors = restore(_corrupt(original.checkpoint(7), "har", **change), CFG)
    assert restored is not None
    assert len(errors) == 1
    assert "har" in errors[0]
    assert message in errors[0]
    fresh = SymbolModels("X", CFG)
    assert restored.slots["har"].scores[1].values() == fresh.slots["har"].scores[1].values() == {}
    # The other models carry on as if nothing happened (their intervals come from 'har').
    a, b = run(original, bars[400:], metrics[400:]), run(restored, bars[400:], metrics[400:])
    rows_a = [f[:6] for res in a for f in res.forecasts if f[2] != "har"]
    rows_b = [f[:6] for res in b for f in res.forecasts if f[2] != "har"]
    assert rows_a == rows_b


def test_a_slot_of_another_model_is_refused(original: SymbolModels) -> None:
    rows = original.checkpoint(7)
    ewma_state = next(r.state for r in rows if r.model == "ewma")
    restored, errors = restore(_corrupt(rows, "har", state=ewma_state))
    assert restored is not None
    assert errors == ["X/har: checkpoint of another model; starting afresh"]


def test_missing_and_unknown_rows_are_reported(original: SymbolModels) -> None:
    kept = [r for r in original.checkpoint(7) if r.model != "anomaly"]
    rows: list[object] = [*kept, kept[0]._replace(model="retired_model"), ("not", "a", "row")]
    restored, errors = restore(rows)
    assert restored is not None
    assert any("anomaly: no checkpoint row" in e for e in errors)
    assert any("retired_model: unknown model" in e for e in errors)
    assert any("malformed" in e for e in errors)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda rows: [r for r in rows if r.model != SHARED_MODEL], "no _shared row"),
        (lambda rows: _corrupt(rows, SHARED_MODEL, state=b"junk"), "cannot unpickle"),
        (lambda rows: _corrupt(rows, SHARED_MODEL, version=0), "version 0"),
        (lambda rows: _corrupt(rows, SHARED_MODEL, state=pickle.dumps(3)), "expected a _Shared"),
        (lambda rows: _corrupt(rows, "har", symbol="Y"), "several symbols"),
        (lambda rows: [], "no checkpoint rows"),
    ],
)
def test_an_unusable_checkpoint_means_starting_fresh(
    original: SymbolModels,
    mangle: Callable[[list[ModelCheckpoint]], list[ModelCheckpoint]],
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    restored, errors = restore(mangle(original.checkpoint(7)))
    assert restored is None
    assert errors
    assert any(re.search(message, e) for e in errors)
    assert "model checkpoint" in caplog.text


def test_a_changed_config_is_refused(original: SymbolModels) -> None:
    rows = original.checkpoint(7)
    restored, errors = restore(rows, ModelConfig(horizons=(1,)))
    assert restored is None
    assert errors == ["X: config changed since the checkpoint"]


def test_a_model_cannot_take_the_name_of_another_row() -> None:
    assert sorted(RESERVED_NAMES) == ["_pipeline", "_shared", "anomaly"]
    for name in RESERVED_NAMES:
        with pytest.raises(ValueError, match="model names must be unique"):
            SymbolModels("X", return_models={name: ZeroReturn()})


@pytest.mark.parametrize("name", ["SymbolModels", "ModelSlot", "_Shared", "_Snapshot", "_Detector"])
def test_pickled_classes_are_found_where_older_pickles_look(name: str) -> None:
    """Checkpoints and Bytewax snapshots written before the module was split name these
    classes in ``online_models.symbol_models``."""
    assert isinstance(getattr(symbol_models, name), type)
