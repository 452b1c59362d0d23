"""``sentinel evaluate``: the online models on real data, through the real dataflow.

A daily series that ``arch`` ships (the S&P 500 1999-2018 by default) becomes four trades
a day (open, high, low, close, at fixed times of the session), goes through
:func:`dataflows.ticks.build_flow` with 1-day bars exactly as a replay would, and the
flow's own forecast rows, 1, 5 and 22 bars ahead, are scored against the bars' log
returns after a burn-in (:func:`online_models.sp500.score_tables`): QLIKE and MSE for
volatility, next to EWMA and the GJR-GARCH, EGARCH and GARCH references refitted by
``arch`` every 20 days on an expanding window; MAE, RMSE, direction and interval
coverage for returns. :func:`plot` draws the forecasts and the running QLIKE difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from bytewax.run import cli_main

from dataflows.config import BarConfig, CheckpointConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, Bar, RawBatch, RowBlock
from dataflows.ticks import FlowConfig
from online_models.registry import VOLATILITY
from online_models.sp500 import (
    HORIZONS,
    PEERS,
    REFERENCE,
    SERIES,
    Evaluation,
    Key,
    bar_dates,
    daily_bars,
    horizon_config,
    peer_forecasts,
    qlike,
    run_models,
    score_tables,
)
from sentinel.flows import memory_flow, rows_of

DAY = 86_400
# Trade times within the day (seconds after midnight UTC): open, high, low, close.
_TIMES = (14 * 3600 + 1800, 16 * 3600, 18 * 3600, 20 * 3600 + 3540)


def series_batches(bars: Sequence[Bar], per_batch: int = 2000) -> list[RawBatch]:
    """Daily bars as replay batches: four rows a day, seq = row number."""
    times, symbols, prices, sizes = [], [], [], []
    for b in bars:
        for offset, price in zip(_TIMES, (b.open, b.high, b.low, b.close), strict=True):
            times.append(b.start_us + offset * US)
            prices.append(price)
            sizes.append(b.volume / 4)
            symbols.append(b.symbol)
    batches = []
    for start in range(0, len(times), per_batch):
        rows = slice(start, start + per_batch)
        block = RowBlock(start, times[rows], symbols[rows], prices[rows], sizes[rows])
        clock_us = int(np.median(times[rows]))
        batches.append(RawBatch(f"evaluate:{bars[0].symbol}", clock_us, [(start, block)]))
    return batches


def run_flow(
    batches: list[RawBatch], horizons: Sequence[int] = HORIZONS
) -> tuple[dict[str, list[Any]], float]:
    years = 30 * 365.25 * DAY
    config = FlowConfig(
        parse=ParseConfig(max_future_s=years, max_past_s=years),
        bars=BarConfig(bar_seconds=DAY, allowance_s=0),
        models=horizon_config(horizons),
        checkpoints=CheckpointConfig(every_s=100 * 365 * DAY),
        live=False,
    )
    flow, sinks = memory_flow(batches, config)
    start = time.perf_counter()
    cli_main(flow)
    elapsed = time.perf_counter() - start
    return rows_of(sinks), elapsed


def evaluate(
    series: str = "sp500",
    burn_in: int = 250,
    garch_refit: int = 20,
    horizons: Sequence[int] = HORIZONS,
    peers: Sequence[str] = tuple(PEERS),
    progress: Callable[[str, int, int], None] | None = None,
    timings: bool = True,
) -> tuple[Evaluation, float]:
    """Scores per model, and the dataflow's wall time for the whole series.

    ``progress(what, done, total)`` hears of the dataflow and of each peer's refits;
    ``timings=False`` skips timing each online model (its seconds are then NaN)."""
    tell = progress or (lambda what, done, total: None)
    tell("dataflow", 0, 1)
    out, flow_seconds = run_flow(series_batches(daily_bars(series)), horizons)
    tell("dataflow", 1, 1)
    bars = sorted(out["bars"], key=lambda b: b.start_us)
    closes = np.array([b.close for b in bars])
    r = np.log(closes[1:] / closes[:-1])  # r[i] is bar i + 1's return
    # Horizon h is the h-th next bar that trades (after a Friday, the Monday is the
    # first): match forecasts by the bar they were made at.
    index = {b.start_us: i for i, b in enumerate(bars)}
    forecasts: dict[Key, np.ndarray] = {}
    widths: dict[str, np.ndarray] = {}
    targets: dict[str, str] = {}
    for f in out["forecasts"]:
        i = index.get(f.made_at_us)
        if i is None or i + f.horizon - 1 >= len(r):
            continue
        t = i + f.horizon - 1
        forecasts.setdefault((f.model, f.horizon), np.full(len(r), np.nan))[t] = f.value
        if f.horizon == 1:
            has_interval = f.lower is not None and f.upper is not None
            half = (f.upper - f.lower) / 2 if has_interval else np.nan
            widths.setdefault(f.model, np.full(len(r), np.nan))[t] = half
        targets[f.model] = f.target
    # Compute time per model: the same models stepped over the same bars, timed one by one.
    seconds = run_models(bars, horizon_config(horizons))[0].timings() if timings else {}
    peer_sigma, peer_seconds = peer_forecasts(r, burn_in, garch_refit, horizons, peers, tell)
    evaluation = score_tables(
        r,
        {**forecasts, **peer_sigma},
        widths,
        targets | dict.fromkeys(peers, VOLATILITY),
        seconds | peer_seconds,
        bar_dates(bars),
        burn_in,
        series,
    )
    ranked = replace(evaluation, volatility=evaluation.volatility.sort_values("qlike"))
    return ranked, flow_seconds


# Drawn in this order, the first on top; models not listed (the 'last' return) are left
# out: a line of zero-return days would flatten the scale.
_PLOTTED = ("range_har", REFERENCE, "har", "egarch(1,1,1)", "garch(1,1)", "ewma")
_TRADING_DAYS = 252


def plot(evaluation: Evaluation, path: str | Path) -> Path:
    """Draw ``evaluation`` into ``path`` (PNG): each model's 1-day volatility forecast,
    annualized, over the realized absolute returns (the whole series, then its most
    volatile year), then the running sum of each model's QLIKE minus the GJR-GARCH's
    (falling: the model is doing better than GJR), at each horizon."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    ev, r = evaluation, evaluation.r
    horizons = sorted({h for _, h in ev.sigma})
    models = [m for m in _PLOTTED if (m, 1) in ev.sigma]
    colors = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    fig, axes = plt.subplots(
        2 + len(horizons),
        1,
        figsize=(11, 6.5 + 2.2 * len(horizons)),
        gridspec_kw={"height_ratios": [2, 2] + [1.1] * len(horizons)},
        layout="constrained",
    )
    scored = slice(ev.burn_in, len(r))
    year = _most_volatile_year(r, ev.burn_in)
    name = SERIES.get(ev.series, ev.series)
    for ax, span, title in (
        (axes[0], scored, f"{name} daily: 1-day volatility forecasts"),
        (axes[1], year, "its most volatile year"),
    ):
        _forecast_panel(ax, ev, models, colors, span)
        ax.set_title(title)
    axes[0].legend(loc="upper left", ncols=4, fontsize=8, markerscale=4)
    for ax, h in zip(axes[2:], horizons, strict=True):
        _difference_panel(ax, ev, models, colors, h)
    axes[2].legend(loc="upper left", ncols=5, fontsize=8)
    for ax in axes[3:]:
        ax.sharex(axes[2])
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _most_volatile_year(r: np.ndarray, start: int) -> slice:
    """The 252 returns after ``start`` with the largest sum of squares."""
    sq = np.concatenate([[0.0], np.cumsum(r[start:] ** 2)])
    if len(sq) <= _TRADING_DAYS:
        return slice(start, len(r))
    best = start + int(np.argmax(sq[_TRADING_DAYS:] - sq[:-_TRADING_DAYS]))
    return slice(best, best + _TRADING_DAYS)


def _forecast_panel(
    ax: Any, ev: Evaluation, models: list[str], colors: dict[str, str], span: slice
) -> None:
    scale = 100 * np.sqrt(_TRADING_DAYS)  # per day to % a year
    d, r = ev.dates[span], ev.r[span]
    ax.scatter(d, np.abs(r) * scale, s=3, color="0.72", label="|return|, annualized")
    for m in reversed(models):  # the first listed on top
        bold = m in ("range_har", REFERENCE)
        s = ev.sigma[(m, 1)][span] * scale
        ax.plot(d, s, lw=1.5 if bold else 0.8, alpha=1 if bold else 0.8, color=colors[m], label=m)
    ax.set_ylabel("volatility, % a year")
    ax.set_ylim(0, np.nanpercentile(np.abs(r) * scale, 99.5) * 1.1)
    ax.set_xlim(d[0], d[-1])


def _difference_panel(
    ax: Any, ev: Evaluation, models: list[str], colors: dict[str, str], h: int
) -> None:
    ref = ev.sigma[(REFERENCE, h)]
    mask = np.isfinite(ref) & (np.arange(len(ev.r)) >= ev.burn_in)
    for m in models:
        s = ev.sigma.get((m, h))
        if s is not None and m != REFERENCE:
            mask &= np.isfinite(s)
    for m in models:
        s = ev.sigma.get((m, h))
        if s is None or m == REFERENCE:
            continue
        diff = qlike(ev.r[mask], s[mask]) - qlike(ev.r[mask], ref[mask])
        ax.plot(ev.dates[mask], np.cumsum(diff), lw=1.2, color=colors[m], label=m)
    ax.axhline(0, color="0.3", lw=0.8)
    days = f"{h} day{'s' if h > 1 else ''} ahead"
    ax.set_ylabel(days)
    ax.set_title(
        f"running sum of QLIKE minus {REFERENCE}'s, {days} (below 0: better than it)",
        fontsize=9,
    )
