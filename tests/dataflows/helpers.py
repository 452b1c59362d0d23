"""Tick fixtures shared by the dataflow tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataflows.records import US, Tick

START_US = 1_700_000_000 * US


def random_ticks(
    symbols: tuple[str, ...] = ("AAPL", "MSFT"),
    n: int = 5000,
    seconds: float = 3600.0,
    seed: int = 7,
) -> list[Tick]:
    """Ticks in time order with random times, log-normal prices and integer sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for k, sym in enumerate(symbols):
        times = np.sort(rng.integers(0, int(seconds * US), n)) + START_US
        prices = 100.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        sizes = rng.integers(1, 500, n).astype(float)
        out += [
            Tick(int(t), sym, round(float(p), 2), float(v), i, None)
            for i, (t, p, v) in enumerate(zip(times, prices, sizes, strict=True))
        ]
    out.sort(key=lambda t: (t.time_us, t.symbol))
    return out


def pandas_bars(ticks: list[Tick], bar_seconds: int) -> pd.DataFrame:
    """The reference: OHLCV and VWAP per (symbol, bar start) computed by pandas."""
    df = pd.DataFrame(ticks).sort_values(["symbol", "time_us", "seq"])
    df["start_us"] = df.time_us // (bar_seconds * US) * (bar_seconds * US)
    df["pv"] = df.price * df["size"]
    g = df.groupby(["symbol", "start_us"], sort=True)
    out = g.agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("size", "sum"),
        pv=("pv", "sum"),
        trades=("price", "size"),
    )
    out["vwap"] = out.pv / out.volume
    return out.drop(columns="pv").reset_index()
