"""``sentinel bench``: throughput and memory, measured in one run, as JSON.

Timings on a shared 2-core machine are noisy, so the figures that matter are ratios
taken in the same run: the pipeline's end-to-end ticks/s (Finnhub messages in, every
output written to TimescaleDB) over a raw binary COPY of the same ticks into the same
table. Everything runs against a scratch database that is dropped afterwards, and any
HTTP load goes to 127.0.0.1 only.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

from bytewax.run import cli_main
from psycopg.conninfo import conninfo_to_dict

from connectors.simulator import TickGenerator, finnhub_trade_message
from connectors.timescale.scratch import copy_ticks_again, scratch_database, table_counts
from dataflows.bars import BarConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, RawBatch
from dataflows.ticks import FlowConfig
from sentinel.flows import bench_flow

SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "GOOGL", "META", "SPY")
Echo = Callable[[str], None]


def make_batches(n_ticks: int, seed: int = 1) -> tuple[list[RawBatch], int]:
    """Simulated trades as Finnhub messages (up to 1000 trades each), 20 messages a batch,
    generated before timing starts."""
    start = 1_700_000_000 * US
    rate = 200.0  # trades/s per symbol: a busy session
    gen = TickGenerator(list(SYMBOLS), seed, start, rates=dict.fromkeys(SYMBOLS, rate))
    span_us = int(n_ticks / (rate * len(SYMBOLS)) * US)
    trades = gen.advance(start + span_us)
    messages = [
        (i, finnhub_trade_message(trades[j : j + 1000]))
        for i, j in enumerate(range(0, len(trades), 1000))
    ]
    batches = [
        RawBatch(
            "bench",
            trades[min(len(trades) - 1, (k + 20) * 1000 - 1)].time_ms * 1000,
            messages[k : k + 20],
        )
        for k in range(0, len(messages), 20)
    ]
    return batches, len(trades)


def pipeline(dsn: str, n_ticks: int, echo: Echo) -> dict[str, Any]:
    batches, n = make_batches(n_ticks)
    echo(f"pipeline: {n:,} ticks through the dataflow into TimescaleDB")
    config = FlowConfig(
        parse=ParseConfig(max_future_s=86_400, max_past_s=86_400),
        bars=BarConfig(bar_seconds=1, allowance_s=0.5),
        live=False,
    )
    started = time.perf_counter()
    cli_main(bench_flow(batches, dsn, config))
    e2e = time.perf_counter() - started
    counts = table_counts(dsn, ("ticks", "bars", "bar_metrics", "forecasts", "model_scores"))
    echo(f"raw COPY: the same {counts['ticks']:,} ticks, binary COPY straight into `ticks`")
    copied, raw = copy_ticks_again(dsn)
    e2e_rate, raw_rate = n / e2e, copied / raw
    return {
        "ticks": n,
        "bar_seconds": 1,
        "end_to_end_ticks_per_s": round(e2e_rate),
        "raw_copy_rows_per_s": round(raw_rate),
        "ratio_end_to_end_over_raw_copy": round(e2e_rate / raw_rate, 3),
        "rows_written": counts,
    }


def models(n_bars: int = 3000) -> dict[str, Any]:
    """predict + learn steps/s of one symbol's whole model set."""
    import pickle

    from connectors.simulator import start_price
    from dataflows.metrics import MetricsState
    from dataflows.records import Bar
    from online_models import SymbolModels

    gen = TickGenerator(["AAPL"], 3, 0, rates={"AAPL": 5.0})
    bars, price = [], start_price("AAPL")
    for i in range(n_bars):
        trades = gen.advance((i + 1) * 60 * US) or []
        close = trades[-1].price if trades else price
        hi = max([t.price for t in trades] + [price])
        lo = min([t.price for t in trades] + [price])
        bars.append(Bar(i * 60 * US, "AAPL", price, hi, lo, close, 1.0, None, 1, 60))
        price = close
    metrics, symbol_models = MetricsState(), SymbolModels("AAPL")
    started = time.perf_counter()
    for bar in bars:
        symbol_models.step(bar, metrics.update(bar))
    elapsed = time.perf_counter() - started
    return {
        "bars": n_bars,
        "steps_per_s": round(n_bars / elapsed),
        "pickled_bytes_per_symbol": len(pickle.dumps(symbol_models)),
    }


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(dsn: str, *, ticks: int = 400_000, echo: Echo = print, api: bool = True) -> dict[str, Any]:
    host = conninfo_to_dict(dsn).get("host") or "local socket"
    result: dict[str, Any] = {"database_host": host}
    with scratch_database(dsn) as bench:
        result["pipeline"] = pipeline(bench, ticks, echo)
        echo("models: stepping one symbol's model set")
        result["models"] = models()
        if api:
            echo("api: load test of /forecasts/{symbol} on 127.0.0.1")
            result["api"] = api_load(bench)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def api_load(dsn: str) -> dict[str, Any]:
    """Serve the API on 127.0.0.1 over ``dsn`` (filled by the pipeline run) and load
    ``/forecasts/AAPL`` for 5 s with 8 concurrent clients, at most 5,000 requests."""
    from api.loadtest import bench_api

    return bench_api({"DATABASE_URL": dsn}, "AAPL", duration_s=5, concurrency=8, max_requests=5000)
