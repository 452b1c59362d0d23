"""Returns, realized and EWMA volatility and Sharpe equal an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest

from dataflows.metrics import MetricsConfig, MetricsState
from dataflows.records import Bar


def bars_from_closes(closes: np.ndarray, bar_seconds: int = 60) -> list[Bar]:
    return [
        Bar(i * bar_seconds * 1_000_000, "X", c, c, c, c, 1.0, c, 1, bar_seconds)
        for i, c in enumerate(closes)
    ]


def reference(closes: np.ndarray, cfg: MetricsConfig, bar_seconds: int) -> dict[str, np.ndarray]:
    """Straight from the definitions, with numpy, one bar at a time."""
    r = np.diff(np.log(closes))
    n = len(r)
    realized = np.full(n, np.nan)
    sharpe = np.full(n, np.nan)
    ewma = np.empty(n)
    per_year = cfg.trading_days * max(1.0, cfg.session_seconds / bar_seconds)
    for i in range(n):
        w = r[max(0, i - cfg.window + 1) : i + 1]
        if len(w) >= 2:
            realized[i] = np.std(w, ddof=1)
            sharpe[i] = (w.mean() - cfg.risk_free_rate / per_year) / realized[i] * np.sqrt(per_year)
        ewma[i] = (
            r[0] ** 2
            if i == 0
            else cfg.ewma_lambda * ewma[i - 1] + (1 - cfg.ewma_lambda) * r[i] ** 2
        )
    return {
        "r": r,
        "realized": realized,
        "ewma": np.sqrt(ewma),
        "sharpe": sharpe,
        "ann": np.full(n, np.sqrt(per_year)),
    }


@pytest.mark.parametrize(("bar_seconds", "rf"), [(60, 0.0), (1, 0.03), (86_400, 0.05)])
def test_metrics_match_numpy(bar_seconds: int, rf: float) -> None:
    rng = np.random.default_rng(3)
    vol = np.where(np.arange(3000) % 1000 < 500, 1e-3, 4e-3)  # regimes
    closes = 100 * np.exp(np.cumsum(rng.normal(2e-5, vol)))
    cfg = MetricsConfig(window=30, ewma_lambda=0.94, risk_free_rate=rf)
    state = MetricsState(cfg)
    rows = [state.update(b) for b in bars_from_closes(closes, bar_seconds)]
    ref = reference(closes, cfg, bar_seconds)

    assert rows[0].log_return is None
    assert rows[0].bars_seen == 1
    got = {
        "r": np.array([m.log_return for m in rows[1:]], dtype=float),
        "realized": np.array([m.realized_vol for m in rows[1:]], dtype=float),
        "ewma": np.array([m.ewma_vol for m in rows[1:]], dtype=float),
        "sharpe": np.array([m.sharpe for m in rows[1:]], dtype=float),
    }
    for key in got:
        np.testing.assert_allclose(
            got[key], ref[key], rtol=1e-9, atol=0, equal_nan=True, err_msg=key
        )
    realized_ann = np.array([m.realized_vol_ann for m in rows[1:]], dtype=float)
    np.testing.assert_allclose(realized_ann, ref["realized"] * ref["ann"], rtol=1e-9)
    ewma_ann = np.array([m.ewma_vol_ann for m in rows[1:]], dtype=float)
    np.testing.assert_allclose(ewma_ann, ref["ewma"] * ref["ann"], rtol=1e-9)


def test_annualization_accounts_for_bar_and_session_length() -> None:
    cfg = MetricsConfig()
    assert cfg.bars_per_year(60) == 252 * 390
    assert cfg.bars_per_year(86_400) == 252
    crypto = MetricsConfig(session_seconds=86_400, trading_days=365)
    assert crypto.bars_per_year(3600) == 365 * 24
