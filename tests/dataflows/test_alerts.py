"""Alerts fire once on an injected volatility spike, never on a calm series."""

from __future__ import annotations

import numpy as np

from dataflows.alerts import AlertConfig, StaleFeed, VolatilityAlerts, always_open
from dataflows.config import SessionConfig
from dataflows.metrics import MetricsConfig, MetricsState
from dataflows.records import US, Alert
from dataflows.sessions import CalendarBook
from tests.dataflows.test_metrics import bars_from_closes


def run(returns: np.ndarray, cfg: AlertConfig | None = None) -> list[Alert]:
    closes = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    metrics, alerts = MetricsState(MetricsConfig()), VolatilityAlerts(cfg or AlertConfig())
    out: list[Alert] = []
    for bar in bars_from_closes(closes):
        out += alerts.update(metrics.update(bar))
    return out


def test_calm_series_raises_nothing() -> None:
    rng = np.random.default_rng(11)
    assert run(rng.normal(0, 1e-3, 5000)) == []


def test_injected_volatility_spike_alerts_exactly_once() -> None:
    rng = np.random.default_rng(12)
    r = rng.normal(0, 1e-3, 1200)
    r[600:700] *= 5  # a 100-bar regime at five times the volatility
    alerts = run(r)
    spikes = [a for a in alerts if a.kind == "volatility_spike"]
    assert len(spikes) == 1
    bar = spikes[0].time_us // (60 * US)
    assert 600 <= bar < 620, "it fires within a few bars of the spike's start"
    assert spikes[0].value is not None
    assert spikes[0].threshold is not None
    assert spikes[0].value >= spikes[0].threshold


def test_a_second_spike_after_calm_alerts_again() -> None:
    rng = np.random.default_rng(13)
    r = rng.normal(0, 1e-3, 2400)
    r[600:700] *= 5
    r[1800:1900] *= 5
    spikes = [a for a in run(r) if a.kind == "volatility_spike"]
    assert [a.time_us // (60 * US) // 600 for a in spikes] == [1, 3]


def test_price_jump_is_one_alert_on_its_bar() -> None:
    rng = np.random.default_rng(14)
    r = rng.normal(0, 1e-3, 400)
    r[300] = 0.05  # fifty sigma
    jumps = [a for a in run(r) if a.kind == "price_jump"]
    assert [a.time_us // (60 * US) for a in jumps] == [301]


def test_stale_feed_fires_once_per_silence_and_only_when_open() -> None:
    cfg = AlertConfig(stale_after_s=60)
    always = always_open
    feed = StaleFeed(cfg)
    t0 = 1_700_000_000 * US
    subs = ("AAPL", "MSFT")
    assert feed.update(t0, subs, {"AAPL": t0, "MSFT": t0}, always) == []
    assert feed.update(t0 + 30 * US, subs, {"AAPL": t0 + 30 * US}, always) == []
    alerts = feed.update(t0 + 61 * US, subs, {"AAPL": t0 + 61 * US}, always)
    assert [(a.symbol, a.kind) for a in alerts] == [("MSFT", "stale_feed")]
    assert feed.update(t0 + 120 * US, subs, {"AAPL": t0 + 120 * US}, always) == []
    # it ticks again, then falls silent again: a new episode, a new alert
    assert feed.update(t0 + 130 * US, subs, {"MSFT": t0 + 130 * US}, always) == []
    later = feed.update(t0 + 200 * US, subs, {"AAPL": t0 + 200 * US}, always)
    # AAPL too was silent from 120 s to 200 s (no batch came in between): its gap shows,
    # timed when it reached the limit.
    assert [(a.symbol, (a.time_us - t0) // US) for a in later] == [("AAPL", 180), ("MSFT", 190)]
    never = StaleFeed(cfg)
    never.update(t0, subs, {}, lambda s, t: False)
    assert never.update(t0 + 600 * US, subs, {}, lambda s, t: False) == []


def test_a_gap_jumped_over_shows_as_one_stale_alert() -> None:
    """The feed process was down: the next batch already has trades again, 20 s later."""
    feed = StaleFeed(AlertConfig(stale_after_s=5))
    always = always_open
    t0 = 1_700_000_000 * US
    subs = ("AAPL",)
    assert feed.update(t0, subs, {"AAPL": t0}, always) == []
    (alert,) = feed.update(t0 + 20 * US, subs, {"AAPL": t0 + 20 * US}, always)
    assert (alert.kind, alert.time_us, alert.value) == ("stale_feed", t0 + 5 * US, 20.0)
    assert feed.update(t0 + 21 * US, subs, {"AAPL": t0 + 21 * US}, always) == []


def test_market_calendar_per_symbol() -> None:
    book = CalendarBook(SessionConfig(calendars={"BINANCE:BTCUSDT": "24/7"}))
    is_open = book.market_open
    tuesday_noon_ny = 1_704_819_600 * US  # 2024-01-09 17:00 UTC
    saturday = 1_705_168_800 * US  # 2024-01-13 18:00 UTC
    assert is_open("AAPL", tuesday_noon_ny)
    assert not is_open("AAPL", saturday)
    assert is_open("BINANCE:BTCUSDT", saturday)
