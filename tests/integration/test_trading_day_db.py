"""`sentinel replay` over real calendar dates into TimescaleDB: the trading day's rows
(session events, one summary per session, extended-hours flags) as stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import psycopg

from tests.integration.test_replay_cli import finish, replay

NY = "America/New_York"


def write_days(path: Path) -> pd.DataFrame:
    """AAPL (XNYS) and BTCUSD (24/7 in `tickers`) every minute, 2024-07-02 to 07-08."""
    rng = np.random.default_rng(3)
    times = pd.date_range("2024-07-02", "2024-07-09", freq="1min", tz="UTC", inclusive="left")
    frames = [
        pd.DataFrame(
            {
                "time": times.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "symbol": sym,
                "price": (base * np.exp(np.cumsum(rng.normal(0, 5e-4, len(times))))).round(4),
                "size": rng.integers(1, 100, len(times)),
            }
        )
        for sym, base in (("AAPL", 200.0), ("BTCUSD", 60_000.0))
    ]
    df = pd.concat(frames).sort_values(["time", "symbol"]).reset_index(drop=True)
    df.to_csv(path, index=False)
    df["time"] = pd.to_datetime(df.time)
    return df


def test_replay_writes_sessions_summaries_and_flags(db: str, tmp_path: Path) -> None:
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO tickers (symbol, calendar) VALUES ('BTCUSD', '24/7')")
    ticks = write_days(tmp_path / "days.csv")
    # 15 min bars (it was 5 min): the sessions' opens and closes, the early one at 13:00
    # included, fall on bar boundaries all the same, with a third of the models' work.
    finish(replay(db, str(tmp_path / "days.csv"), "--bar", "15m"))
    with psycopg.connect(db) as conn:
        summaries = conn.execute(
            "SELECT symbol, session_date, trades, alerts, model_scores FROM daily_summary "
            "ORDER BY symbol, session_date"
        ).fetchall()
        events = conn.execute(
            "SELECT symbol, event, count(*) FROM session_events GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        flags: dict[bool, int] = dict(
            conn.execute(
                "SELECT extended, count(*) FROM ticks WHERE symbol = 'AAPL' GROUP BY 1"
            ).fetchall()
        )
    sched = xcals.get_calendar("XNYS").schedule.loc["2024-07-02":"2024-07-08"]
    aapl = [(d, n) for s, d, n, _, _ in summaries if s == "AAPL"]
    assert [d for d, _ in aapl] == [d.date() for d in sched.index]
    assert date(2024, 7, 4) not in [d for d, _ in aapl]  # the holiday
    a = ticks[ticks.symbol == "AAPL"]
    for (_, n), (_, s) in zip(aapl, sched.iterrows(), strict=True):
        assert n == ((a.time >= s.open) & (a.time < s.close)).sum()
    coin = [d for s, d, *_ in summaries if s == "BTCUSD"]
    assert coin == [date(2024, 7, d) for d in range(2, 9)]  # every UTC day
    assert events == [
        ("AAPL", "close", 4),
        ("AAPL", "open", 4),
        ("BTCUSD", "close", 7),
        ("BTCUSD", "open", 7),
    ]
    regular = sum(n for _, n in aapl)
    assert flags == {False: regular, True: len(a) - regular}
    assert all(isinstance(row[4], dict) and "ewma" in row[4] for row in summaries[1:])
