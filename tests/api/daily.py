"""`daily_summary` rows as the dataflow writes them at a session's close, for the tests
of `/summary` and of the dashboard's daily table."""

from __future__ import annotations

import json
from typing import Any

import exchange_calendars as xcals
import pandas as pd
import psycopg

XNYS = xcals.get_calendar("XNYS")
JSON_COLUMNS = {"alerts", "model_scores"}


def summary_row(symbol: str, session: pd.Timestamp, i: int) -> dict[str, Any]:
    """The ``i``-th row of a run: its session's times from `exchange_calendars`."""
    return {
        "session_date": session.date(),
        "symbol": symbol,
        "calendar": "XNYS",
        "open_time": XNYS.session_open(session).to_pydatetime(),
        "close_time": XNYS.session_close(session).to_pydatetime(),
        "open": 100.0 + i,
        "high": 102.5 + i,
        "low": 99.0 + i,
        "close": 101.0 + i * 1.5,
        "volume": 1000.0 * (i + 1),
        "vwap": 100.75 + i,
        "trades": 50 + i,
        "bars": 78,
        "realized_vol": 0.01,
        "realized_vol_ann": 0.01 * 252**0.5,
        "sharpe": None if i == 0 else 0.5,
        "overnight_return": None if i == 0 else -0.001 * i,
        "alerts": {"volatility_spike": i % 3, "price_jump": 1} if i % 3 else {},
        "model_scores": {"har": {"qlike": -8.1, "qlike_ewma": -8.0}},
    }


def insert_summaries(dsn: str, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    text = (
        f"INSERT INTO daily_summary ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    values = [[json.dumps(r[c]) if c in JSON_COLUMNS else r[c] for c in columns] for r in rows]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(text, values)
