"""`sentinel bench`'s live figures: a short run of the real live path (simulator, feed,
dataflow as child processes) on the embedded TimescaleDB, and the arithmetic of the
figures against hand-computed references."""

from __future__ import annotations

import os

import numpy as np
import psycopg
import pytest

from sentinel.bench_live import (
    SOAK_FIRST_S,
    LiveBenchError,
    lag_growth,
    latency_figures,
    live_latency,
    rss_figures,
)
from tests.integration.procs import descendants

LATENCIES = ("bar_latency_ms", "forecast_latency_ms", "tick_latency_ms", "tick_latency_oldest_ms")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_short_live_run_measures_committed_rows_and_stops_its_children(db: str) -> None:
    before = set(descendants(os.getpid()))
    lines: list[str] = []
    result = live_latency(
        db,
        symbols=3,
        rate=20.0,
        duration_s=7.0,
        warmup_s=2.0,
        late_allowance_s=0.5,
        echo=lines.append,
    )

    assert not any(alive(pid) for pid in result["child_pids"].values())
    assert set(descendants(os.getpid())) <= before
    assert "3 symbols x 20 trades/s" in lines[0]
    for key in LATENCIES:
        figures = result[key]
        assert figures["count"] > 0, key
        assert 0 <= figures["p50"] <= figures["p99"] <= figures["max"], key
    bars, beyond = result["bar_latency_ms"], result["bar_latency_beyond_allowance_ms"]
    # A bar is closed only once its end plus the allowance has passed on the arrival clock.
    assert beyond["p50"] >= 0
    assert bars["max"] < 10_000
    assert beyond["p99"] == pytest.approx(bars["p99"] - 500, abs=0.15)
    assert result["forecast_latency_ms"]["p50"] >= bars["p50"] - 50
    # About 7 bars per symbol in the window, each one announced; the table holds them all.
    assert 3 * 4 <= bars["count"] <= 3 * 9
    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT symbol) FROM bars").fetchone()
        ticks = conn.execute("SELECT count(*) FROM ticks").fetchone()
    assert stored is not None
    assert ticks is not None
    assert stored[0] >= bars["count"]
    assert stored[1] == 3
    assert ticks[0] == result["ticks_total"] >= result["ticks_in_window"]
    # The simulator's turbulent regime trades twice as fast as its calm one.
    assert 60 / 3 < result["trades_per_s"] < 60 * 3
    assert result["duration_s"] == pytest.approx(7.0, abs=0.5)
    rss = result["rss_mb"]
    assert 0 < rss["at_window_start"] <= rss["peak"]
    assert 0 < rss["at_end"] <= rss["peak"]
    assert rss["peak_per_symbol"] == pytest.approx(rss["peak"] / 3, abs=0.03)
    assert rss["feed_peak"] > 0
    assert rss["simulator_peak"] > 0
    assert result["targets"]["at_target_rate"] is False
    assert result["targets"]["rss_end_within_10_percent_of_1_min"] is None


@pytest.mark.slow
def test_a_child_that_dies_is_reported_with_its_log_and_the_rest_are_stopped(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(descendants(os.getpid()))
    monkeypatch.setenv("SENTINEL_METRICS_WINDOW", "1")  # the dataflow refuses it, alone
    with pytest.raises(LiveBenchError, match="dataflow exited with code 1") as caught:
        live_latency(db, symbols=2, rate=5.0, duration_s=5.0, warmup_s=1.0, start_timeout_s=60)
    assert "the metrics window needs at least 2 bars" in str(caught.value)
    assert set(descendants(os.getpid())) <= before


def test_a_database_with_other_tickers_is_refused(db: str) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO tickers (symbol) VALUES ('AAPL')")
    with pytest.raises(LiveBenchError, match="scratch database"):
        live_latency(db, symbols=2, duration_s=1.0)


def test_latency_figures_are_numpy_percentiles_in_ms() -> None:
    rng = np.random.default_rng(3)
    seconds = list(rng.exponential(0.2, 1000) + 1.0)
    figures = latency_figures(seconds, shift_s=1.0)
    ms = (np.asarray(seconds) - 1.0) * 1000
    assert figures["count"] == 1000
    assert figures["p50"] == round(float(np.median(ms)), 1)
    assert figures["p99"] == round(float(np.quantile(ms, 0.99)), 1)
    assert figures["max"] == round(float(ms.max()), 1)
    assert latency_figures([]) == {"count": 0, "p50": None, "p99": None, "max": None}


def test_lag_growth_compares_the_last_minute_with_the_first() -> None:
    # 0.5 s of latency growing by 10 ms a minute, one sample a second for 3 minutes.
    def ms(seconds: range) -> list[float]:
        return [500 + 10 * t / 60 for t in seconds]

    samples = [(1000.0 + t, 0.5 + 0.010 * t / 60) for t in range(180)]
    growth = lag_growth(samples, 1000.0, 1180.0)
    assert growth["segment_s"] == 45.0  # a quarter of a window under 4 minutes
    first, last = np.median(ms(range(45))), np.median(ms(range(135, 180)))
    assert growth["first_p50"] == pytest.approx(first, abs=0.1)
    assert growth["last_p50"] == pytest.approx(last, abs=0.1)
    assert growth["growth"] == pytest.approx(last - first, abs=0.1)
    assert growth["slope_ms_per_min"] == pytest.approx(10.0, abs=0.01)
    minutes = [ms(range(m * 60, m * 60 + 60)) for m in range(3)]
    assert growth["p50_by_minute"] == pytest.approx([np.median(m) for m in minutes], abs=0.1)
    assert growth["p99_by_minute"] == pytest.approx(
        [np.quantile(m, 0.99) for m in minutes], abs=0.1
    )


def test_rss_figures_of_a_soak() -> None:
    samples = [(float(t), 200.0 + t / 10) for t in range(0, 601, 1)]  # 200 MB, +6 MB/min
    rss = rss_figures(
        samples,
        None,
        symbols=50,
        ticks_total=3_000_000,
        ticks_window=2_500_000,
        window_from_s=100.0,
        soak=True,
    )
    assert rss["peak"] == 260.0
    assert rss["at_window_start"] == 210.0
    assert rss["at_end"] == 260.0
    assert rss["peak_per_symbol"] == 5.2
    assert rss["peak_per_million_ticks"] == round(260 / 3, 1)
    assert rss["growth_per_million_ticks"] == round(50 / 2.5, 2)
    assert rss["after_1_min"] == 200.0 + SOAK_FIRST_S / 10
    assert rss["end_over_1_min"] == round(260 / 206, 3)
    assert rss["every_minute"] == [200.0 + 6 * m for m in range(1, 11)]
    short = rss_figures(
        samples[:30], 99.0, symbols=3, ticks_total=0, ticks_window=0, window_from_s=5, soak=False
    )
    assert short["peak"] == 99.0  # the kernel's high-water mark, when there is one
    assert "after_1_min" not in short
    assert short["peak_per_million_ticks"] is None
