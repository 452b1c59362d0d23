"""``sentinel evaluate``: the online models on real data, through the real dataflow.

The daily S&P 500 series that ``arch`` ships (1999-2018) becomes four trades a day
(open, high, low, close, at fixed times of the session), goes through
:func:`dataflows.ticks.build_flow` with 1-day bars exactly as a replay would, and the
flow's own forecast rows are scored against the bars' log returns after a burn-in:
QLIKE and MSE for volatility, next to EWMA and a GARCH(1,1) refitted by ``arch`` every
20 days on an expanding window; MAE, RMSE, direction and interval coverage for returns.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
from bytewax.run import cli_main

from dataflows.config import BarConfig, CheckpointConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, RawBatch, RowBlock
from dataflows.ticks import FlowConfig
from online_models.sp500 import Evaluation, run_models, score_tables, sp500_bars, timed_garch
from sentinel.flows import memory_flow, rows_of

DAY = 86_400
# Trade times within the day (seconds after midnight UTC): open, high, low, close.
_TIMES = (14 * 3600 + 1800, 16 * 3600, 18 * 3600, 20 * 3600 + 3540)


def sp500_batches(symbol: str = "SPX", per_batch: int = 2000) -> list[RawBatch]:
    """The series as replay batches: four rows a day, seq = row number."""
    bars = sp500_bars(symbol)
    times, symbols, prices, sizes = [], [], [], []
    for b in bars:
        for offset, price in zip(_TIMES, (b.open, b.high, b.low, b.close), strict=True):
            times.append(b.start_us + offset * US)
            prices.append(price)
            sizes.append(b.volume / 4)
            symbols.append(symbol)
    batches = []
    for start in range(0, len(times), per_batch):
        rows = slice(start, start + per_batch)
        block = RowBlock(start, times[rows], symbols[rows], prices[rows], sizes[rows])
        clock_us = int(np.median(times[rows]))
        batches.append(RawBatch(f"evaluate:{symbol}", clock_us, [(start, block)]))
    return batches


def run_flow(batches: list[RawBatch]) -> tuple[dict[str, list[Any]], float]:
    years = 30 * 365.25 * DAY
    config = FlowConfig(
        parse=ParseConfig(max_future_s=years, max_past_s=years),
        bars=BarConfig(bar_seconds=DAY, allowance_s=0),
        checkpoints=CheckpointConfig(every_s=100 * 365 * DAY),
        live=False,
    )
    flow, sinks = memory_flow(batches, config)
    start = time.perf_counter()
    cli_main(flow)
    elapsed = time.perf_counter() - start
    return rows_of(sinks), elapsed


def evaluate(burn_in: int = 250, garch_refit: int = 20) -> tuple[Evaluation, float]:
    """Scores per model, and the dataflow's wall time for the whole series."""
    out, flow_seconds = run_flow(sp500_batches())
    bars = sorted(out["bars"], key=lambda b: b.start_us)
    closes = np.array([b.close for b in bars])
    r = np.log(closes[1:] / closes[:-1])  # r[i] is bar i + 1's return
    # Horizon 1 is the next bar that trades (after a Friday, the Monday): match forecasts
    # by the bar they were made at.
    index = {b.start_us: i for i, b in enumerate(bars)}
    forecasts: dict[str, np.ndarray] = {}
    widths: dict[str, np.ndarray] = {}
    targets: dict[str, str] = {}
    for f in out["forecasts"]:
        i = index.get(f.made_at_us)
        if f.horizon != 1 or i is None or i >= len(r):
            continue
        forecasts.setdefault(f.model, np.full(len(r), np.nan))[i] = f.value
        widths.setdefault(f.model, np.full(len(r), np.nan))[i] = (
            (f.upper - f.lower) / 2 if f.lower is not None and f.upper is not None else np.nan
        )
        targets[f.model] = f.target
    # Compute time per model: the same models stepped over the same bars, timed one by one.
    seconds = run_models(bars)[0].timings()
    peers = {"garch(1,1)": timed_garch(r, burn_in, garch_refit)}
    evaluation = score_tables(r, forecasts, widths, targets, seconds, len(bars), burn_in, peers)
    ranked = replace(evaluation, volatility=evaluation.volatility.sort_values("qlike"))
    return ranked, flow_seconds
