"""Offline evaluation: the online models on real S&P 500 data, and the anomaly detectors on
synthetic volatility regimes.

:func:`evaluate_sp500` runs :class:`SymbolModels`, exactly as the pipeline does, over the
daily S&P 500 bars that ship with ``arch`` (1999-2018), next to a GARCH(1,1) peer, and
scores 1-bar forecasts after a burn-in. :func:`compare_detectors` says which anomaly
detector best finds injected high-volatility regimes. ``arch`` is imported only here.
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

from dataflows.metrics import MetricsState
from dataflows.records import US, Bar
from online_models.config import ModelConfig
from online_models.detectors import DETECTORS, make_detector, score_then_learn
from online_models.features import FeatureState
from online_models.symbol_models import RETURN, VOLATILITY, SymbolModels

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
    metrics = MetricsState()
    n = len(bars) - 1
    r = np.full(n, np.nan)
    values = {name: np.full(n, np.nan) for name in models.slots}
    widths = {name: np.full(n, np.nan) for name in models.slots}
    for i, bar in enumerate(bars):
        m = metrics.update(bar)
        if i:
            r[i - 1] = m.log_return
        for _, _, name, _, h, value, lower, upper, _ in models.step(bar, m).forecasts:
            if h == 1 and i < n:
                values[name][i] = value
                if lower is not None and upper is not None:
                    widths[name][i] = (upper - lower) / 2
    return models, r, values, widths


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
                res = arch_model(y[: t + 1], mean="Constant", vol="GARCH", p=1, q=1,
                                 rescale=False).fit(disp="off")  # fmt: skip
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


# --- anomaly detectors ---------------------------------------------------------------------


def regime_bars(
    n_bars: int = 4000,
    seed: int = 0,
    regimes: int = 12,
    regime_bars: int = 30,
    multiplier: float = 3.0,
    volume_multiplier: float = 1.5,
    bar_seconds: int = 60,
) -> tuple[list[Bar], np.ndarray]:
    """Synthetic 1-minute bars with ``regimes`` injected, non-overlapping stretches (after
    the first 300 bars) of ``multiplier`` times the volatility and ``volume_multiplier``
    times the volume. Returns the bars and a boolean label per bar, True inside a regime.
    The base volatility drifts slowly, so a detector has to adapt without forgetting what
    a regime looks like."""
    rng = np.random.default_rng(seed)
    label = np.zeros(n_bars, dtype=bool)
    slot = (n_bars - 300) // regimes  # one regime per slot, so that none overlap
    if slot <= regime_bars:
        raise ValueError("too many or too long regimes for n_bars")
    for k in range(regimes):
        start = 300 + k * slot + int(rng.integers(0, slot - regime_bars))
        label[start : start + regime_bars] = True
    drift = np.exp(0.3 * np.sin(np.arange(n_bars) / 400))
    sigma = 1e-3 * drift * np.where(label, multiplier, 1.0)
    steps = rng.standard_normal((n_bars, 8)) * (sigma / math.sqrt(8))[:, None]
    log_price = math.log(100.0) + np.cumsum(steps.ravel()).reshape(n_bars, 8)
    opens = np.concatenate([[math.log(100.0)], log_price[:-1, -1]])
    highs = np.maximum(log_price.max(axis=1), opens)
    lows = np.minimum(log_price.min(axis=1), opens)
    volume = rng.lognormal(8.0, 0.3, n_bars) * np.where(label, volume_multiplier, 1.0)
    ohlcv = zip(opens, highs, lows, log_price[:, -1], volume, strict=True)
    bars = [
        Bar(i * bar_seconds * US, "SYN", math.exp(o), math.exp(h), math.exp(lo),
            math.exp(c), float(v), None, 8, bar_seconds)
        for i, (o, h, lo, c, v) in enumerate(ohlcv)
    ]  # fmt: skip
    return bars, label


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties at average rank)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = int(labels.sum())
    neg = len(labels) - pos
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int | None = None) -> float:
    """Share of true regime bars among the ``k`` highest scores (``k`` = number of them)."""
    k = int(labels.sum()) if k is None else k
    top = np.argsort(-scores, kind="mergesort")[:k]
    return float(labels[top].mean())


def detector_scores(name: str, bars: Sequence[Bar], seed: int = 42) -> np.ndarray:
    """Anomaly score of every bar by detector ``name``, as the pipeline computes it."""
    features, detector = FeatureState(), make_detector(name, seed=seed)
    out = np.zeros(len(bars))
    prev = bars[0].close
    for i, bar in enumerate(bars[1:], start=1):
        r = math.log(bar.close / prev)
        prev = bar.close
        _, anomaly_x = features.update(bar, r)
        if anomaly_x is not None:
            out[i] = score_then_learn(detector, anomaly_x)
    return out


def compare_detectors(
    detectors: Sequence[str] = DETECTORS, n_series: int = 3, warmup: int = 300, **regimes: int
) -> pd.DataFrame:
    """AUC and precision@k of each detector at flagging regime bars, averaged over
    ``n_series`` synthetic series (:func:`regime_bars`, seeds 0..n-1), best first; the
    winner's name is in ``.attrs['winner']``."""
    rows: dict[str, dict[str, float]] = {d: {"auc": 0.0, "precision_at_k": 0.0} for d in detectors}
    for d in detectors:
        rows[d]["seconds"] = 0.0
    for seed in range(n_series):
        bars, label = regime_bars(seed=seed, **regimes)
        for d in detectors:
            start = time.perf_counter()
            scores = detector_scores(d, bars, seed=seed)
            rows[d]["seconds"] += time.perf_counter() - start
            rows[d]["auc"] += auc(scores[warmup:], label[warmup:]) / n_series
            rows[d]["precision_at_k"] += precision_at_k(scores[warmup:], label[warmup:]) / n_series
    table = pd.DataFrame.from_dict(rows, orient="index").sort_values("auc", ascending=False)
    table.index.name = "detector"
    table.attrs["winner"] = str(table.index[0])
    return table
