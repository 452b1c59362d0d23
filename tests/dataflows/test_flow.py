"""The whole dataflow under Bytewax: TestingSource -> build_flow -> TestingSink."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from dataflows.alerts import AlertConfig
from dataflows.bars import BarConfig
from dataflows.metrics import MetricsConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, Bar, Metrics, RawBatch, Tick
from dataflows.ticks import FlowConfig, Sinks, build_flow
from tests.dataflows.helpers import pandas_bars, random_ticks
from tests.dataflows.test_bars import COLUMNS


def as_batches(ticks: list[Tick], per_batch: int = 250) -> list[RawBatch]:
    """Finnhub messages of a few trades each, in batches as a live source would emit."""
    batches = []
    for b in range(0, len(ticks), per_batch):
        chunk = ticks[b : b + per_batch]
        messages: list[tuple[int, str | Any]] = []
        for m in range(0, len(chunk), 5):
            data = [
                {"s": t.symbol, "p": t.price, "t": t.time_us // 1000, "v": t.size}
                for t in chunk[m : m + 5]
            ]
            messages.append((b + m, json.dumps({"type": "trade", "data": data})))
        messages.append((b + len(chunk) + 1, "not json"))
        clock = chunk[-1].time_us
        batches.append(RawBatch("test", clock, messages))
    return batches


def ms_ticks(n: int = 4000) -> list[Tick]:
    """Random ticks at millisecond resolution (Finnhub's)."""
    return [t._replace(time_us=t.time_us // 1000 * 1000) for t in random_ticks(n=n)]


SINKS = ("ticks", "rejects", "bars", "metrics", "alerts", "forecasts", "scores", "checkpoints")


def run(
    batches: list[RawBatch],
    config: FlowConfig,
    workers: int = 1,
    extra_sinks: tuple[str, ...] = (),
) -> dict[str, list[Any]]:
    """Run the flow to the end; every sink's rows, flattened (``extra_sinks``: the
    optional ones too, e.g. ``summaries``)."""
    outs: dict[str, list[Any]] = {k: [] for k in SINKS + extra_sinks}
    sinks = Sinks(**{k: TestingSink(v) for k, v in outs.items()})
    flow = build_flow(TestingSource(batches), sinks, config)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return {k: [row for item in v for row in item] for k, v in outs.items()}


CONFIG = FlowConfig(
    parse=ParseConfig(max_future_s=3600, max_past_s=3600),
    bars=BarConfig(bar_seconds=60, allowance_s=0),
    metrics=MetricsConfig(window=10),
    live=False,
)


def test_flow_bars_ticks_and_rejects() -> None:
    ticks = ms_ticks()
    batches = as_batches(ticks)
    out = run(batches, CONFIG)
    assert len(out["ticks"]) == len(ticks)
    assert {r.reason for r in out["rejects"]} == {"malformed_json"}
    assert len(out["rejects"]) == len(batches)
    got = pd.DataFrame(out["bars"])[COLUMNS].sort_values(["symbol", "start_us"])
    want = pandas_bars(ticks, 60)[COLUMNS]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, rtol=1e-12, check_dtype=False)
    assert len(out["metrics"]) == len(out["bars"])


def test_two_workers_give_the_same_rows_as_one() -> None:
    batches = as_batches(ms_ticks())
    one, two = run(batches, CONFIG), run(batches, CONFIG, workers=2)
    # Pickled checkpoint bytes are not canonical; every other column must match.
    for rows in (one, two):
        rows["checkpoints"] = [r[:5] + r[6:] for r in rows["checkpoints"]]
    for key in one:
        assert sorted(one[key]) == sorted(two[key]), key


def test_metrics_follow_the_bars_in_order() -> None:
    out = run(as_batches(ms_ticks()), CONFIG)
    bars: list[Bar] = sorted(out["bars"], key=lambda b: (b.symbol, b.start_us))
    metrics: list[Metrics] = sorted(out["metrics"], key=lambda m: (m.symbol, m.start_us))
    for sym in {b.symbol for b in bars}:
        closes = np.array([b.close for b in bars if b.symbol == sym])
        rets: list[Any] = [m.log_return for m in metrics if m.symbol == sym]
        assert rets[0] is None
        np.testing.assert_allclose(rets[1:], np.log(closes[1:] / closes[:-1]), rtol=1e-9)
        assert [m.start_us for m in metrics if m.symbol == sym] == [
            b.start_us for b in bars if b.symbol == sym
        ]


def test_late_ticks_in_the_flow_are_rejected_not_dropped() -> None:
    t0 = 1_700_000_040 * US
    trades = [(t0, 1.0), (t0 + 10 * US, 2.0), (t0 + 2 * US, 3.0)]  # the last is 8 s late
    messages = [
        (i, json.dumps({"type": "trade", "data": [{"s": "Z", "p": p, "t": t // 1000, "v": 1}]}))
        for i, (t, p) in enumerate(trades)
    ]
    cfg = FlowConfig(
        parse=CONFIG.parse, bars=BarConfig(60, allowance_s=5, revision_window_s=0), live=False
    )
    out = run([RawBatch("test", t0, messages)], cfg)
    assert [r.reason for r in out["rejects"]] == ["late"]
    assert len(out["ticks"]) == 3, "raw ticks are stored even when late for their bar"
    assert sum(b.trades for b in out["bars"]) == 2


def test_backfilled_batches_are_no_news_of_the_live_feed() -> None:
    """A backfill's trades arrive long after their time, in batches of their own source,
    now and then: the stale-feed check follows the live feed only, so two backfills
    200 s apart (60 s limit) raise no stale alert while the feed itself trades on."""
    t0 = 1_700_000_040 * US

    def batch(source: str, clock: int, t_us: int, price: float) -> RawBatch:
        trade = {"s": "AAPL", "p": price, "t": t_us // 1000, "v": 10, "c": ["1"]}
        message = json.dumps({"type": "trade", "data": [trade]})
        return RawBatch(source, clock, [(clock, message)], ("AAPL",))

    batches = [batch("finnhub", t0 + s * US, t0 + s * US, 100.0) for s in range(0, 400, 5)]
    for s in (100, 300):  # a trade of 30 s earlier, fetched at s
        batches.insert(s // 5 + 1, batch("finnhub_tick", t0 + s * US + 1, t0 + (s - 30) * US, 99))
    alerts = AlertConfig(stale_after_s=60)
    out = run(batches, FlowConfig(parse=CONFIG.parse, bars=CONFIG.bars, alerts=alerts, live=True))
    assert [t.source for t in out["ticks"]].count("finnhub_tick") == 2
    assert [a for a in out["alerts"] if a.kind == "stale_feed"] == []
