"""Offline evaluation of the online models on real data: daily S&P 500 bars.

:func:`evaluate_sp500` runs :class:`~online_models.symbol_models.SymbolModels`, exactly as
the pipeline does, over the daily S&P 500 bars that ship with ``arch`` (1999-2018), next
to a GARCH(1,1) peer, and scores 1-bar forecasts after a burn-in (:func:`score_tables`,
plain numpy and pandas). ``arch`` is imported only here, and only when called.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from dataflows.records import Bar, Metrics
from online_models.config import ModelConfig
from online_models.registry import RETURN, VOLATILITY
from online_models.symbol_models import SymbolModels

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Evaluation:
    """Scores per model: ``volatility`` (QLIKE, MSE of ``sigma^2`` on ``r^2``, both
    relative to EWMA) and ``returns`` (MAE, RMSE, relative to the zero forecast,
    directional accuracy, interval coverage); ``seconds`` is compute time per model."""

    volatility: pd.DataFrame
    returns: pd.DataFrame
    n_scored: int
    burn_in: int


def sp500_bars(symbol: str = "SPX") -> list[Bar]:
    """Daily bars of ``arch.data.sp500``, prices scaled to the ``Adj Close`` column."""
    from arch.data import sp500

    df = sp500.load()
    adj = df["Adj Close"] / df["Close"]
    starts = (df.index.to_numpy().astype("datetime64[us]").astype(np.int64)).tolist()
    cols = [(df[c] * adj).to_numpy(float) for c in ("Open", "High", "Low", "Adj Close")]
    volume = df["Volume"].to_numpy(float)
    return [
        Bar(int(t), symbol, float(o), float(h), float(lo), float(c), float(v), None, 1, DAY_SECONDS)
        for t, o, h, lo, c, v in zip(starts, *cols, volume, strict=True)
    ]


def run_models(
    bars: Sequence[Bar], config: ModelConfig | None = None
) -> tuple[SymbolModels, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Step fresh models over ``bars``; return them, the log returns ``r`` (``r[i]`` is bar
    ``i + 1``'s), and each model's 1-bar forecasts and interval half-widths of ``r[i]``."""
    models = SymbolModels(bars[0].symbol, config)
    n = len(bars) - 1
    r = np.full(n, np.nan)
    values = {name: np.full(n, np.nan) for name in models.slots}
    widths = {name: np.full(n, np.nan) for name in models.slots}
    for i, (bar, m) in enumerate(zip(bars, return_metrics(bars), strict=True)):
        if i:
            r[i - 1] = m.log_return
        for f in models.step(bar, m).forecasts:
            if f.horizon == 1 and i < n:
                values[f.model][i] = f.value
                if f.lower is not None and f.upper is not None:
                    widths[f.model][i] = (f.upper - f.lower) / 2
    return models, r, values, widths


def return_metrics(bars: Sequence[Bar]) -> list[Metrics]:
    """Each bar's metrics as far as :meth:`SymbolModels.step` reads them: the log return
    of the close (None for the first bar), computed as the dataflow's metrics step does."""
    out: list[Metrics] = []
    prev: float | None = None
    for i, bar in enumerate(bars):
        r = None if prev is None else math.log(bar.close / prev)
        out.append(Metrics(bar.start_us, bar.symbol, r, None, None, None, None, None, i + 1))
        prev = bar.close
    return out


def garch_forecasts(r: np.ndarray, burn_in: int = 250, refit: int = 20) -> np.ndarray:
    """1-step GARCH(1,1) volatility forecasts of ``r[t]`` for ``t >= burn_in``.

    Fitted by ``arch`` (constant mean, normal errors, returns scaled by 100 for its
    optimizer) on the expanding window ``r[:t]`` every ``refit`` bars; in between, the
    variance recursion runs on with the last fitted parameters.
    """
    from arch import arch_model

    y = 100.0 * r
    out = np.full(len(r), np.nan)
    mu = omega = alpha = beta = s2 = 0.0
    for t in range(burn_in - 1, len(r) - 1):  # having seen y[t], forecast y[t + 1]
        if (t - burn_in + 1) % refit == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = arch_model(
                    y[: t + 1], mean="Constant", vol="GARCH", p=1, q=1, rescale=False
                ).fit(disp="off")
            mu, omega = float(res.params["mu"]), float(res.params["omega"])
            alpha, beta = float(res.params["alpha[1]"]), float(res.params["beta[1]"])
            s2 = float(res.conditional_volatility[-1]) ** 2
        e = y[t] - mu
        s2 = omega + alpha * e * e + beta * s2
        out[t + 1] = math.sqrt(s2) / 100.0
    return out


def volatility_scores(r: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    """Mean QLIKE and MSE (``sigma^2`` against ``r^2``), numpy, over the given arrays."""
    s2 = sigma * sigma
    return float(np.mean(np.log(s2) + r * r / s2)), float(np.mean((r * r - s2) ** 2))


def evaluate_sp500(
    burn_in: int = 250, garch_refit: int = 20, config: ModelConfig | None = None, garch: bool = True
) -> Evaluation:
    """Score 1-day forecasts of every model on ``arch.data.sp500`` after ``burn_in`` days."""
    bars = sp500_bars()
    models, r, values, widths = run_models(bars, config)
    targets = {name: slot.target for name, slot in models.slots.items()}
    peers = {"garch": timed_garch(r, burn_in, garch_refit)} if garch else {}
    return score_tables(r, values, widths, targets, models.timings(), len(bars), burn_in, peers)


def timed_garch(r: np.ndarray, burn_in: int, refit: int) -> tuple[np.ndarray, float]:
    """:func:`garch_forecasts` and the seconds it took."""
    start = time.perf_counter()
    sigma = garch_forecasts(r, burn_in, refit)
    return sigma, time.perf_counter() - start


def score_tables(
    r: np.ndarray,
    values: Mapping[str, np.ndarray],
    widths: Mapping[str, np.ndarray],
    targets: Mapping[str, str],
    seconds: Mapping[str, float],
    n_bars: int,
    burn_in: int,
    peers: Mapping[str, tuple[np.ndarray, float]] = MappingProxyType({}),
) -> Evaluation:
    """Both score tables from 1-bar forecasts: ``values[m][i]`` and ``widths[m][i]`` (the
    interval half-width) forecast ``r[i]``; ``targets`` gives each model's target;
    ``peers`` adds volatility forecasts made elsewhere (name -> (sigma, seconds))."""
    scored = slice(burn_in, len(r))
    y = r[scored]
    vol_rows: dict[str, dict[str, float]] = {}
    for name, target in targets.items():
        if target == VOLATILITY:
            qlike, mse = volatility_scores(y, values[name][scored])
            vol_rows[name] = {"qlike": qlike, "mse": mse, "seconds": seconds.get(name, np.nan)}
    for name, (sigma, elapsed) in peers.items():
        qlike, mse = volatility_scores(y, sigma[scored])
        vol_rows[name] = {"qlike": qlike, "mse": mse, "seconds": elapsed}
    vol = pd.DataFrame.from_dict(vol_rows, orient="index")
    if "ewma" in vol.index:
        vol.insert(1, "qlike_rel_ewma", vol["qlike"] - vol.loc["ewma", "qlike"])
        vol.insert(3, "mse_rel_ewma", vol["mse"] / vol.loc["ewma", "mse"])
    vol["us_per_bar"] = vol["seconds"] / n_bars * 1e6
    ret_rows = {
        name: _return_scores(y, values[name][scored], widths[name][scored])
        | {"seconds": seconds.get(name, np.nan)}
        for name, target in targets.items()
        if target == RETURN
    }
    ret = pd.DataFrame.from_dict(ret_rows, orient="index")
    if "zero" in ret.index:
        ret.insert(1, "mae_rel_zero", ret["mae"] / ret.loc["zero", "mae"])
        ret.insert(3, "rmse_rel_zero", ret["rmse"] / ret.loc["zero", "rmse"])
    vol.index.name = ret.index.name = "model"
    return Evaluation(vol, ret, len(y), burn_in)


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
    """Both tables as plain text for the terminal."""
    vol = evaluation.volatility.sort_values("qlike")
    head = (
        f"S&P 500 daily, 1-bar forecasts scored on {evaluation.n_scored} days "
        f"after a {evaluation.burn_in}-day burn-in"
    )
    return "\n\n".join(
        [
            head,
            "Volatility (QLIKE = log s^2 + r^2/s^2, lower is better; qlike_rel_ewma = model - "
            "EWMA; mse_rel_ewma = model / EWMA)\n" + vol.to_string(float_format=_fmt),
            "Returns (mae/rmse_rel_zero = model / zero forecast; coverage of the "
            "prediction interval)\n" + evaluation.returns.to_string(float_format=_fmt),
        ]
    )


def _fmt(v: float) -> str:
    return f"{v:.4e}" if v and abs(v) < 1e-3 else f"{v:.5f}"
