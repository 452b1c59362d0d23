"""SENTINEL_MODEL_HORIZONS: the live pipeline's models forecast several bars ahead."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dataflows.bars import BarConfig
from dataflows.ticks import FlowConfig
from sentinel.flows import flow_config
from sentinel.settings import Settings
from tests.dataflows.helpers import random_ticks
from tests.dataflows.test_flow import as_batches, run


def test_horizons_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_MODEL_HORIZONS", "22, 1,5")
    settings = Settings()
    assert settings.model_horizons == (1, 5, 22)
    assert flow_config(settings).models.horizons == (1, 5, 22)
    monkeypatch.delenv("SENTINEL_MODEL_HORIZONS")
    assert flow_config(Settings()).models.horizons == (1,)  # the default: the next bar


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5,22", "including 1"),
        ("1,1", "distinct"),
        ("1,x", "whole numbers separated by commas"),
        ("0,1", "from 1 to 1000"),
    ],
)
def test_bad_horizons_are_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("SENTINEL_MODEL_HORIZONS", value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_the_flow_forecasts_and_scores_every_horizon() -> None:
    settings = Settings(model_horizons=(1, 5))
    config: FlowConfig = flow_config(settings, live=False)
    config = FlowConfig(parse=config.parse, bars=BarConfig(10, 0), models=config.models, live=False)
    out = run(as_batches(random_ticks(("AAPL",), n=3000, seconds=900)), config)
    by_horizon = {(f.model, f.horizon) for f in out["forecasts"]}
    assert {("range_har", 1), ("range_har", 5), ("linear", 5)} <= by_horizon
    metrics = {(s.model, s.metric) for s in out["scores"]}
    assert {("range_har", "qlike"), ("range_har", "qlike_h5")} <= metrics
