"""Offline evaluation of the online models on real data: daily index bars, 1999-2018.

:func:`run_models` steps :class:`~online_models.symbol_models.SymbolModels`, exactly as
the pipeline does, over the daily bars of a series that ships with ``arch`` (the S&P 500,
on which the models were designed, or the NASDAQ Composite, held out), next to the
classical GARCH family refitted by ``arch`` (:func:`arch_forecasts`), and scores forecasts
1, 5 and 22 bars ahead after a burn-in (:func:`score_tables`, plain numpy and pandas).
``arch`` is imported only here, and only when called.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal

import numpy as np
import pandas as pd

from dataflows.records import Bar, Metrics
from online_models.config import ModelConfig
from online_models.registry import RETURN, VOLATILITY
from online_models.symbol_models import SymbolModels

DAY_SECONDS = 86_400
HORIZONS = (1, 5, 22)  # a day, a week, a month of trading days
SERIES = {"sp500": "S&P 500", "nasdaq": "NASDAQ Composite"}  # arch.data modules
# The refitted peers: name -> (arch's vol, o: the leverage order). The first is the one
# every other model is compared with.
PEERS: Mapping[str, tuple[Literal["GARCH", "EGARCH"], int]] = MappingProxyType(
    {"gjr-garch(1,1,1)": ("GARCH", 1), "egarch(1,1,1)": ("EGARCH", 1), "garch(1,1)": ("GARCH", 0)}
)
REFERENCE = next(iter(PEERS))

Key = tuple[str, int]
"""A forecast series: ``(model, horizon)``."""


@dataclass(frozen=True)
class Evaluation:
    """Scores per model.

    ``volatility``: QLIKE at each horizon (``qlike`` at 1, ``qlike_h5``, ...), each minus
    the reference GJR-GARCH's (``*_rel_gjr``), the 1-bar QLIKE minus EWMA's, MSE of
    ``sigma^2`` on ``r^2`` and its ratio to EWMA's, compute seconds and microseconds per
    bar. ``returns``: MAE, RMSE (both relative to the zero forecast), directional
    accuracy, interval coverage. ``sigma`` keeps every volatility forecast (``sigma[key][t]``
    forecasts ``r[t]``) and ``dates`` the date of each return, for plots."""

    volatility: pd.DataFrame
    returns: pd.DataFrame
    n_scored: dict[int, int]  # returns scored, by horizon
    burn_in: int
    series: str
    r: np.ndarray
    dates: np.ndarray
    sigma: Mapping[Key, np.ndarray]


def daily_bars(series: str = "sp500", symbol: str | None = None) -> list[Bar]:
    """Daily bars of ``arch.data.<series>``, prices scaled to the ``Adj Close`` column."""
    import importlib

    if series not in SERIES:
        raise ValueError(f"unknown series {series!r}; known: {', '.join(SERIES)}")
    df = importlib.import_module(f"arch.data.{series}").load()
    adj = df["Adj Close"] / df["Close"]
    starts = (df.index.to_numpy().astype("datetime64[us]").astype(np.int64)).tolist()
    cols = [(df[c] * adj).to_numpy(float) for c in ("Open", "High", "Low", "Adj Close")]
    volume = df["Volume"].to_numpy(float)
    sym = symbol or series.upper()
    return [
        Bar(int(t), sym, float(o), float(h), float(lo), float(c), float(v), None, 1, DAY_SECONDS)
        for t, o, h, lo, c, v in zip(starts, *cols, volume, strict=True)
    ]


def sp500_bars(symbol: str = "SPX") -> list[Bar]:
    """Daily bars of ``arch.data.sp500``."""
    return daily_bars("sp500", symbol)


def horizon_config(horizons: Sequence[int] = HORIZONS) -> ModelConfig:
    """The default models at ``horizons``."""
    return replace(ModelConfig(), horizons=tuple(horizons))


def run_models(
    bars: Sequence[Bar], config: ModelConfig | None = None
) -> tuple[SymbolModels, np.ndarray, dict[Key, np.ndarray], dict[str, np.ndarray]]:
    """Step fresh models over ``bars``; return them, the log returns ``r`` (``r[i]`` is bar
    ``i + 1``'s), each model's forecasts by ``(model, horizon)`` (``values[k][t]``
    forecasts ``r[t]``) and its 1-bar interval half-widths."""
    models = SymbolModels(bars[0].symbol, config)
    n = len(bars) - 1
    r = np.full(n, np.nan)
    values: dict[Key, np.ndarray] = {}
    widths = {name: np.full(n, np.nan) for name in models.slots}
    for i, (bar, m) in enumerate(zip(bars, return_metrics(bars), strict=True)):
        if i:
            r[i - 1] = m.log_return
        for f in models.step(bar, m).forecasts:
            t = i + f.horizon - 1  # made at bar i: bar i + h, whose return is r[i + h - 1]
            if t < n:
                values.setdefault((f.model, f.horizon), np.full(n, np.nan))[t] = f.value
                if f.horizon == 1 and f.lower is not None and f.upper is not None:
                    widths[f.model][t] = (f.upper - f.lower) / 2
    return models, r, values, widths


def return_metrics(bars: Sequence[Bar]) -> list[Metrics]:
    """Each bar's metrics as far as :meth:`SymbolModels.step` reads them: the log return
    of the close (None for the first bar), computed as the dataflow's metrics step does."""
    out: list[Metrics] = []
    prev: float | None = None
    for i, bar in enumerate(bars):
        close = bar.close
        assert close is not None  # daily bars of arch.data: every one has prices
        r = None if prev is None else math.log(close / prev)
        out.append(Metrics(bar.start_us, bar.symbol, r, None, None, None, None, None, i + 1))
        prev = close
    return out


def arch_forecasts(
    r: np.ndarray,
    vol: Literal["GARCH", "EGARCH"] = "GARCH",
    o: int = 0,
    burn_in: int = 250,
    refit: int = 20,
    horizons: Sequence[int] = (1,),
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Volatility forecasts of ``r[t]`` made ``h`` bars earlier, by ``arch`` (constant
    mean, normal errors, returns scaled by 100 for its optimizer), for every ``h`` in
    ``horizons`` and every ``t`` whose forecast is made at ``burn_in - 1`` or later.

    The model ``arch_model(vol=vol, p=1, o=o, q=1)`` is fitted on ``r[:t0]`` for
    ``t0 = burn_in, burn_in + refit, ...`` (an expanding window) and forecasts from the
    origins ``t0 - 1 .. t0 + refit - 2`` with those parameters, each origin seeing the
    returns up to itself: nothing is fitted on a return it forecasts. EGARCH has no
    closed-form forecast beyond one step; there, ``arch`` simulates 1,000 paths per
    origin (seeded). ``progress(done, total)`` is told after each fit.
    """
    from arch import arch_model

    y = 100.0 * np.asarray(r, float)
    n, top = len(y), max(horizons)
    method: Literal["simulation", "analytic"] = (
        "simulation" if vol == "EGARCH" and top > 1 else "analytic"
    )
    # arch's simulations draw from the model's own generator unless given ``rng``.
    generator = np.random.default_rng(seed)

    def draws(size: int | tuple[int, ...]) -> np.ndarray:
        return generator.standard_normal(size)

    out = {h: np.full(n, np.nan) for h in horizons}
    starts = range(burn_in, n, refit)
    for done, t0 in enumerate(starts, start=1):
        end = min(t0 + refit - 1, n - 1)  # the block's last origin is end - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on the first windows
            model = arch_model(y[: end + 1], mean="Constant", vol=vol, p=1, o=o, q=1, rescale=False)
            res = model.fit(last_obs=t0, disp="off")
            fc = res.forecast(
                horizon=top,
                start=t0 - 1,
                reindex=False,
                method=method,
                simulations=1000,
                rng=draws,
            )
        var = fc.variance.to_numpy()[: end - t0 + 1] / 1e4  # rows: origins t0 - 1 .. end - 1
        origins = np.arange(t0 - 1, end)
        for h in horizons:
            keep = origins + h < n
            out[h][origins[keep] + h] = np.sqrt(var[keep, h - 1])
        if progress is not None:
            progress(done, len(starts))
    return out


def peer_forecasts(
    r: np.ndarray,
    burn_in: int = 250,
    refit: int = 20,
    horizons: Sequence[int] = HORIZONS,
    peers: Sequence[str] = tuple(PEERS),
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[Key, np.ndarray], dict[str, float]]:
    """:func:`arch_forecasts` of each named peer, and the seconds each took."""
    sigma: dict[Key, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name in peers:
        vol, o = PEERS[name]
        tell = None if progress is None else (lambda d, t, name=name: progress(name, d, t))
        start = time.perf_counter()
        for h, s in arch_forecasts(r, vol, o, burn_in, refit, horizons, progress=tell).items():
            sigma[(name, h)] = s
        seconds[name] = time.perf_counter() - start
    return sigma, seconds


def qlike(r: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Each forecast's QLIKE, ``log sigma^2 + r^2 / sigma^2``."""
    s2 = sigma * sigma
    return np.log(s2) + r * r / s2


def volatility_scores(r: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    """Mean QLIKE and MSE (``sigma^2`` against ``r^2``), numpy, over the given arrays."""
    return float(np.mean(qlike(r, sigma))), float(np.mean((r * r - sigma * sigma) ** 2))


def bar_dates(bars: Sequence[Bar]) -> np.ndarray:
    """The date of each return ``r[t]``: its bar's."""
    return np.array([b.start_us for b in bars[1:]], "datetime64[us]").astype("datetime64[D]")


def score_tables(
    r: np.ndarray,
    forecasts: Mapping[Key, np.ndarray],
    widths: Mapping[str, np.ndarray],
    targets: Mapping[str, str],
    seconds: Mapping[str, float],
    dates: np.ndarray,
    burn_in: int,
    series: str = "sp500",
) -> Evaluation:
    """Both score tables. ``forecasts[(m, h)][t]`` forecasts ``r[t]`` from ``h`` bars
    earlier (a volatility, or a return), ``widths[m][t]`` is a 1-bar interval's
    half-width; ``targets`` gives each model's target.

    At each horizon, every volatility model is scored on the same returns: those from
    ``burn_in`` on that all of them forecast (the refitted peers start forecasting at
    ``burn_in - 1``, so at 22 bars the first 21 are not scored)."""
    n_bars = len(r) + 1
    vol_models = [m for m, t in targets.items() if t == VOLATILITY]
    horizons = sorted({h for m, h in forecasts if m in vol_models})
    rows: dict[str, dict[str, float]] = {m: {} for m in vol_models}
    n_scored: dict[int, int] = {}
    for h in horizons:
        have = [m for m in vol_models if (m, h) in forecasts]
        mask = np.zeros(len(r), bool)
        mask[burn_in:] = True
        for m in have:
            mask &= np.isfinite(forecasts[(m, h)])
        n_scored[h] = int(mask.sum())
        suffix = "" if h == 1 else f"_h{h}"
        for m in have:
            qlike, mse = volatility_scores(r[mask], forecasts[(m, h)][mask])
            rows[m]["qlike" + suffix] = qlike
            if h == 1:
                rows[m]["mse"] = mse
    vol = pd.DataFrame.from_dict(rows, orient="index")
    ref = REFERENCE if REFERENCE in vol.index else None
    for h in horizons:
        col = "qlike" if h == 1 else f"qlike_h{h}"
        if ref is not None:
            vol[col.replace("qlike", "rel_gjr")] = vol[col] - vol.loc[ref, col]
    if "ewma" in vol.index and "qlike" in vol:
        vol["qlike_rel_ewma"] = vol["qlike"] - vol.loc["ewma", "qlike"]
        vol["mse_rel_ewma"] = vol["mse"] / vol.loc["ewma", "mse"]
    vol["seconds"] = [seconds.get(m, np.nan) for m in vol.index]
    vol["us_per_bar"] = vol["seconds"] / n_bars * 1e6
    scored = slice(burn_in, len(r))
    y = r[scored]
    ret_rows = {
        name: _return_scores(y, forecasts[(name, 1)][scored], widths[name][scored])
        | {"seconds": seconds.get(name, np.nan)}
        for name, target in targets.items()
        if target == RETURN and (name, 1) in forecasts
    }
    ret = pd.DataFrame.from_dict(ret_rows, orient="index")
    if "zero" in ret.index:
        ret.insert(1, "mae_rel_zero", ret["mae"] / ret.loc["zero", "mae"])
        ret.insert(3, "rmse_rel_zero", ret["rmse"] / ret.loc["zero", "rmse"])
    vol.index.name = ret.index.name = "model"
    sigma = {k: v for k, v in forecasts.items() if k[0] in vol_models}
    return Evaluation(vol, ret, n_scored, burn_in, series, r, dates, sigma)


def _return_scores(y: np.ndarray, f: np.ndarray, half_width: np.ndarray) -> dict[str, float]:
    e = y - f
    signed = (y != 0) & (f != 0)
    return {
        "mae": float(np.mean(np.abs(e))),
        "rmse": float(np.sqrt(np.mean(e * e))),
        "direction": float(np.mean((y[signed] > 0) == (f[signed] > 0))) if signed.any() else np.nan,
        "coverage": float(np.mean(np.abs(e) <= half_width)),
    }


def format_table(evaluation: Evaluation) -> str:
    """The tables as plain text for the terminal."""
    vol = evaluation.volatility.sort_values("qlike")
    n = evaluation.n_scored
    head = (
        f"{SERIES.get(evaluation.series, evaluation.series)} daily: forecasts scored on "
        f"{n.get(1, 0)} days after a {evaluation.burn_in}-day burn-in"
    )
    one = [c for c in ("qlike", "rel_gjr", "qlike_rel_ewma", "mse", "mse_rel_ewma") if c in vol]
    ahead = [c for c in vol if c.startswith(("qlike_h", "rel_gjr_h"))]
    parts = [
        head,
        "Volatility, 1 bar ahead (QLIKE = log s^2 + r^2/s^2, lower is better; rel_gjr = "
        "model - GJR-GARCH; qlike_rel_ewma = model - EWMA; mse_rel_ewma = model / EWMA)\n"
        + vol[[*one, "seconds", "us_per_bar"]].to_string(float_format=_fmt),
    ]
    if ahead:
        counts = ", ".join(f"{h} bars: {k} days" for h, k in n.items() if h != 1)
        parts.append(
            f"Volatility, more bars ahead (QLIKE of r[t+h]^2 against the forecast made at "
            f"t; {counts})\n" + vol[sorted(ahead, key=_by_horizon)].to_string(float_format=_fmt)
        )
    parts.append(
        "Returns, 1 bar ahead (mae/rmse_rel_zero = model / zero forecast; coverage of the "
        "prediction interval)\n" + evaluation.returns.to_string(float_format=_fmt)
    )
    return "\n\n".join(parts)


def _by_horizon(column: str) -> tuple[int, str]:
    return int(column.rsplit("_h", 1)[1]), column


def _fmt(v: float) -> str:
    return f"{v:.4e}" if v and abs(v) < 1e-3 else f"{v:.5f}"
