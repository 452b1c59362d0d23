"""`sentinel evaluate`: real S&P 500 data through the real dataflow, several bars ahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataflows.records import RowBlock
from online_models.sp500 import REFERENCE, horizon_config, run_models, sp500_bars, volatility_scores
from sentinel.cli import main
from sentinel.evaluate import evaluate, plot, series_batches

HORIZONS = (1, 5)  # 22 takes the same code path as 5, at a third more time


@pytest.fixture(scope="module")
def evaluated() -> tuple:
    seen: list[tuple[str, int, int]] = []
    # GJR-GARCH refitted twice (every 2,500 days): the machinery, not the reference's
    # figure, which tests/online_models/test_sp500.py checks independently.
    evaluation, _ = evaluate(
        burn_in=250,
        garch_refit=2500,
        horizons=HORIZONS,
        peers=(REFERENCE,),
        progress=lambda *a: seen.append(a),
        timings=False,
    )
    return evaluation, seen


def test_the_flows_forecasts_at_every_horizon_are_the_models_own(evaluated: tuple) -> None:
    evaluation, seen = evaluated
    vol = evaluation.volatility
    bars = sp500_bars()
    assert evaluation.n_scored[1] == len(bars) - 1 - 250
    # The flow's forecasts are exactly the models' own, stepped directly over the same
    # bars, at each horizon: forecasts are matched to the bar h trading days later. The
    # models are online, so the first 1,500 days show it as well as all of them.
    _, _, values, _ = run_models(bars[:1500], horizon_config(HORIZONS))
    for model in ("range_har", "har", "ewma"):
        for h in HORIZONS:
            np.testing.assert_array_equal(
                evaluation.sigma[(model, h)][:1499], values[(model, h)], err_msg=f"{model} {h}"
            )
    for h, col in ((1, "qlike"), (5, "qlike_h5")):
        scored = np.zeros(len(evaluation.r), bool)
        scored[250:] = True
        scored &= np.isfinite(evaluation.sigma[(REFERENCE, h)])
        assert scored.sum() == evaluation.n_scored[h]
        r, sigma = evaluation.r[scored], evaluation.sigma[("range_har", h)][scored]
        assert vol.loc["range_har", col] == volatility_scores(r, sigma)[0]
    assert vol.loc["range_har", "qlike"] < vol.loc["ewma", "qlike"]
    assert vol.loc[REFERENCE, "rel_gjr"] == 0
    assert np.isfinite(vol.loc[REFERENCE, "qlike_h5"])
    ret = evaluation.returns
    assert abs(ret.loc["linear", "coverage"] - 0.9) < 0.02, "90% intervals cover about 90%"
    assert ("dataflow", 1, 1) in seen
    assert (REFERENCE, 2, 2) in seen


def test_the_plot_is_a_png(evaluated: tuple, tmp_path: Path) -> None:
    evaluation, _ = evaluated
    path = plot(evaluation, tmp_path / "evaluate.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000


def test_four_trades_a_day_rebuild_the_daily_bars() -> None:
    batches = series_batches(sp500_bars())
    blocks = [payload for b in batches for _, payload in b.messages]
    rows = sum(len(p.time) for p in blocks if isinstance(p, RowBlock))
    assert rows == 4 * len(sp500_bars())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--plot", "out.txt"], "--plot writes a PNG"),
        (["--plot", "/nonexistent-dir/out.png"], "no directory"),
        (["--horizons", "5,22"], "including 1"),
        (["--horizons", "1,x"], "not whole numbers"),
        (["--burn-in", "0"], "must be a whole number >= 1"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["evaluate", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    assert code != 0
    captured = capsys.readouterr()
    assert message in captured.out + captured.err
