"""Simulated bars with known volatility, and a runner that keeps every step's output."""

from __future__ import annotations

import numpy as np

from dataflows.records import US, Bar, Forecast, Metrics
from online_models import StepResult, SymbolModels


def simulate(
    sigma: np.ndarray, seed: int = 0, bar_seconds: int = 60, symbol: str = "X"
) -> tuple[list[Bar], list[Metrics], np.ndarray]:
    """``len(sigma) + 1`` bars whose log returns are ``N(0, sigma[i]^2)``.

    Returns the bars, their metrics (log returns of the closes, computed here with numpy,
    the first one None) and those returns, ``r[i]`` being bar ``i + 1``'s.
    """
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(len(sigma)) * sigma
    closes = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    bars = []
    for i, close in enumerate(closes):
        open_ = closes[i - 1] if i else close
        wiggle = 1.0 + abs(rng.normal(0.0, sigma[max(i - 1, 0)]))
        start = i * bar_seconds * US
        high, low = max(open_, close) * wiggle, min(open_, close) / wiggle
        volume = float(rng.lognormal(5.0, 0.3))
        bars.append(
            Bar(start, symbol, float(open_), high, low, float(close), volume, None, 10, bar_seconds)
        )
    metrics = metrics_for(bars)
    return bars, metrics, np.array([m.log_return for m in metrics[1:]])


def metrics_for(bars: list[Bar]) -> list[Metrics]:
    """Metrics carrying only the log return of each bar (numpy, from the closes)."""
    r = np.diff(np.log(np.array([b.close for b in bars], dtype=float)))
    returns = [None, *map(float, r)]
    return [
        Metrics(b.start_us, b.symbol, ret, None, None, None, None, None, i + 1)
        for i, (b, ret) in enumerate(zip(bars, returns, strict=True))
    ]


def regime_sigma(n: int, calm: float = 1e-3, wild: float = 3e-3, period: int = 500) -> np.ndarray:
    """Volatility alternating between ``calm`` and ``wild`` every ``period`` bars."""
    return np.where((np.arange(n) // period) % 2 == 0, calm, wild)


def run(models: SymbolModels, bars: list[Bar], metrics: list[Metrics]) -> list[StepResult]:
    return [models.step(b, m) for b, m in zip(bars, metrics, strict=True)]


def forecast_table(results: list[StepResult]) -> dict[tuple[str, int, int], Forecast]:
    """Every forecast row by ``(model, horizon, made_at_us)``."""
    return {(f.model, f.horizon, f.made_at_us): f for res in results for f in res.forecasts}
