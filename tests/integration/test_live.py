"""The live path for real: `sentinel simulate` on localhost, the feed process following
the `tickers` table into the journal, the dataflow in its own process reading it, and a
websocket server that dies and comes back."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from tests.integration.live import feed_and_dataflow, live_setup
from tests.integration.procs import start, stop, wait_until


def scalar(db: str, query: str, *params: object) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute(query, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@pytest.mark.slow
def test_live_feed_follows_tickers_and_survives_a_feed_restart(db: str, tmp_path: Path) -> None:
    live = live_setup(db, tmp_path / "home")
    sim_log, feed_log, flow_log = tmp_path / "sim.log", tmp_path / "feed.log", tmp_path / "flow.log"
    sim = start(live.sim_args, live.env, sim_log)
    try:
        with feed_and_dataflow(live.env, feed_log, flow_log):
            bars = "SELECT count(*) FROM bars WHERE symbol = %s"
            wait_until(lambda: scalar(db, bars, "AAPL") >= 2, 60, "AAPL bars", flow_log)
            assert scalar(db, bars, "MSFT") == 0

            with psycopg.connect(db) as conn:
                conn.execute("INSERT INTO tickers (symbol) VALUES ('MSFT')")
            wait_until(lambda: scalar(db, bars, "MSFT") >= 2, 30, "MSFT bars", flow_log)
            with psycopg.connect(db) as conn:
                feed = conn.execute(
                    "SELECT connected, subscribed, now() - updated_at < interval '10 s'"
                    " FROM feed_status WHERE source = 'finnhub'"
                ).fetchone()
            assert feed == (True, ["AAPL", "MSFT"], True), "the feed reports its state"
            trade_age = "SELECT extract(epoch FROM now() - last_trade_at) FROM feed_status"
            assert 0 <= scalar(db, trade_age) < 10, "and when it last received a trade"
            assert scalar(db, "SELECT count(*) FROM bar_metrics WHERE symbol = 'MSFT'") >= 1

            stop(sim, signal.SIGKILL)
            wait_until(
                lambda: "disconnected" in feed_log.read_text(errors="replace").lower(),
                30,
                "the feed noticing the server is gone",
                feed_log,
            )
            restarted_us = time.time_ns() // 1000
            sim = start(live.sim_args, live.env, sim_log)
            after = "SELECT count(*) FROM ticks WHERE symbol = %s AND time > to_timestamp(%s)"
            for sym in ("AAPL", "MSFT"):

                def resumed(s: str = sym) -> bool:
                    return scalar(db, after, s, restarted_us / 1e6) > 10

                wait_until(resumed, 60, f"{sym} ticks after the feed restart", feed_log)
            log = feed_log.read_text(errors="replace")
            assert "disconnected" in log.lower()
            assert log.lower().count("connected to") >= 2
    finally:
        stop(sim)
