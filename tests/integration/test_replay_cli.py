"""`sentinel replay` end to end: twice, or killed and resumed, gives one clean run's rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from tests.conftest import ROOT

TABLES = {
    "ticks": "symbol, time, seq, price, size",
    "bars": "symbol, time, open, high, low, close, volume, vwap, trades",
    "bar_metrics": "symbol, time, log_return, realized_vol, ewma_vol, sharpe",
    "alerts": "symbol, kind, time, value",
    "ticks_rejected": "source, received_at, seq, reason",
    "daily_summary": "symbol, session_date, open, high, low, close, volume, trades, sharpe",
    "session_events": "symbol, time, event, session_date",
}


def write_csv(path: Path, rows_per_symbol: int, seed: int = 5) -> int:
    """A tick file over a few hours with a handful of bad rows; returns its row count."""
    rng = np.random.default_rng(seed)
    frames = []
    start = pd.Timestamp("2024-03-04T14:30:00Z")
    for k, sym in enumerate(["AAPL", "MSFT", "NVDA"]):
        t = start + pd.to_timedelta(
            np.sort(rng.integers(0, 4 * 3600 * 10**6, rows_per_symbol)), unit="us"
        )
        p = (100 + 50 * k) * np.exp(np.cumsum(rng.normal(0, 2e-4, rows_per_symbol)))
        frames.append(
            pd.DataFrame(
                {
                    "time": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "symbol": sym,
                    "price": p.round(2),
                    "size": rng.integers(1, 300, rows_per_symbol),
                }
            )
        )
    df = pd.concat(frames).sort_values("time").reset_index(drop=True).astype(str)
    bad = rng.choice(len(df), 6, replace=False)
    for i, (col, value) in zip(
        bad,
        [
            ("price", "abc"),
            ("price", "-1"),
            ("size", "-3"),
            ("time", "yesterday"),
            ("price", "nan"),
            ("symbol", ""),
        ],
        strict=True,
    ):
        df.loc[i, col] = value
    df.to_csv(path, index=False)
    return len(df)


def replay(db: str, *args: str, **settings: str) -> subprocess.Popen[str]:
    """``sentinel replay ARGS`` on ``db``; ``settings``: more environment variables."""
    env = {**os.environ, "DATABASE_URL": db, "SENTINEL_LOG_LEVEL": "WARNING", **settings}
    return subprocess.Popen(
        [sys.executable, "-m", "sentinel", "replay", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    """Wait for a replay to succeed; returns what it wrote to stderr."""
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return err


def snapshot(db: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(db) as conn:
        return {
            t: conn.execute(f"SELECT {c} FROM {t} ORDER BY {c}").fetchall()
            for t, c in TABLES.items()
        }


def count(db: str, table: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def test_replay_twice_leaves_the_rows_of_one_run(db: str, tmp_path: Path) -> None:
    csv = tmp_path / "ticks.csv"
    n = write_csv(csv, 3000)
    finish(replay(db, str(csv), "--bar", "1m"))
    once = snapshot(db)
    assert len(once["ticks"]) == n - 6
    assert sorted(str(r[3]) for r in once["ticks_rejected"]) == sorted(
        [
            "non_numeric",
            "non_positive_price",
            "negative_size",
            "bad_time",
            "non_finite",
            "missing_field",
        ]
    )
    assert len(once["bars"]) > 3 * 200
    assert len(once["bar_metrics"]) == len(once["bars"])
    finish(replay(db, str(csv), "--bar", "1m"))
    assert snapshot(db) == once


@pytest.mark.slow
def test_replay_killed_midway_and_resumed_equals_a_clean_run(
    db: str, server_dsn: str, tmp_path: Path
) -> None:
    csv = tmp_path / "ticks.csv"
    # 30,000 trades a symbol in 30 s bars (it was 60,000 in 10 s bars): the models' work
    # per bar is most of a run's time. The kill still comes a quarter into the ticks,
    # several 0.2 s snapshots in, with bars open in every symbol and three quarters of
    # the file left to resume (the ticks are committed 10,000 at a time).
    n = write_csv(csv, 30_000)
    finish(replay(db, str(csv), "--bar", "30s"))
    clean = snapshot(db)
    with psycopg.connect(db, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"TRUNCATE {table}")

    recovery = tmp_path / "recovery"
    args = [str(csv), "--bar", "30s", "--recovery-dir", str(recovery), "--snapshot-interval", "0.2"]
    proc = replay(db, *args)
    deadline = time.monotonic() + 120
    while count(db, "ticks") < n // 4:
        assert proc.poll() is None, "the replay finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    partial = count(db, "ticks")
    assert partial < n - 6, "killed midway"
    finish(replay(db, *args))
    assert snapshot(db) == clean


def test_no_ticks_stores_everything_but_the_raw_ticks(
    db: str, fresh_db: str, tmp_path: Path
) -> None:
    from timescale.migrate import migrate

    csv = tmp_path / "ticks.csv"
    write_csv(csv, 1000)
    migrate(fresh_db, echo=lambda _: None)
    # Two processes on two databases, side by side: neither reads what the other writes.
    full_run = replay(db, str(csv), "--bar", "1m")
    lean_run = replay(fresh_db, str(csv), "--bar", "1m", "--no-ticks")
    try:
        finish(full_run)
        finish(lean_run)
    finally:
        for proc in (full_run, lean_run):
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    full, lean = snapshot(db), snapshot(fresh_db)
    assert lean["ticks"] == []
    assert full["ticks"]
    for table in ("bars", "bar_metrics", "alerts", "ticks_rejected"):
        assert lean[table] == full[table], table


def write_daily_csv(path: Path, years: int, seed: int = 3) -> int:
    """A trade a minute before the close of every eighth NYSE session (fewer bars keep the
    test quick) for ``years`` from 1999, as the NASDAQ history replays; returns its row
    count."""
    import exchange_calendars

    nyse = exchange_calendars.get_calendar("XNYS", start="1999-01-01")
    sessions = nyse.sessions_in_range("1999-01-04", f"{1998 + years}-12-31")[::8]
    closes = nyse.closes[sessions] - pd.Timedelta(minutes=1)
    rng = np.random.default_rng(seed)
    prices = 2000 * np.exp(np.cumsum(rng.normal(0, 0.01, len(closes))))
    times = closes.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame = pd.DataFrame({"time": times.to_numpy(), "symbol": "NDAQ", "price": prices.round(4)})
    frame.assign(size=1000).to_csv(path, index=False)
    return len(frame)


def chunk_counts(db: str) -> dict[str, int]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT hypertable_name, count(*) FROM timescaledb_information.chunks GROUP BY 1"
        ).fetchall()
    return {str(t): int(n) for t, n in rows}


def test_years_of_daily_data_land_in_a_few_chunks(db: str, tmp_path: Path) -> None:
    """Twenty years of daily closes: a few big chunks per table (one per trading day in
    `ticks` without pre-sizing), every row stored, each table's own interval unchanged."""
    csv = tmp_path / "daily.csv"
    n = write_daily_csv(csv, years=20)
    with psycopg.connect(db) as conn:
        intervals = conn.execute(
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
        ).fetchall()
    # Checkpoints every 30 days of event time rather than every bar: the test's time
    # goes to the models otherwise.
    err = finish(replay(db, str(csv), "--bar", "1d", SENTINEL_CHECKPOINT_EVERY_S="2592000"))
    assert "chunks: ticks:" in err, err[-3000:]
    assert "1095 days" in err, err[-3000:]
    counts = chunk_counts(db)
    for table in ("ticks", "bars", "bar_metrics", "forecasts", "model_scores", "alerts"):
        assert counts.get(table, 0) <= 8, (table, counts)
    assert count(db, "ticks") == count(db, "bars") == count(db, "bar_metrics") == n
    assert count(db, "forecasts") > 0
    assert count(db, "model_scores") > 0
    with psycopg.connect(db, autocommit=True) as conn:
        after = conn.execute(
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
        ).fetchall()
        assert sorted(after) == sorted(intervals)
        conn.execute("INSERT INTO ticks (time, symbol, price, seq) VALUES (now(), 'LIVE', 1, 0)")
        newest = conn.execute(
            """SELECT range_end - range_start FROM timescaledb_information.chunks
               WHERE hypertable_name = 'ticks' ORDER BY range_start DESC LIMIT 1"""
        ).fetchone()
    assert newest == (timedelta(days=1),)
    assert chunk_counts(db)["ticks"] == counts["ticks"] + 1
