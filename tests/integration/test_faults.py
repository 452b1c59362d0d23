"""Faults on a live `sentinel up`, on 127.0.0.1 and bounded in time: the dataflow or the
feed killed with -9, the database stopped for 8 s. Nothing that was received is lost,
nothing is judged late, every part comes back by itself.

The tests that wait for bars run 1 s bars: how long a fault lasts and how many bars it
spans do not depend on the bar length, and every wait for "n bars" is then n seconds
rather than 5n (20 trades a second per symbol leave no 1 s bar empty: e^-20)."""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path

import httpx
import psycopg
import pytest

from connectors.journal import Journal
from tests.integration.hostile_feed import HostileFeed
from tests.integration.procs import wait_until
from tests.integration.stack import (
    LiveStack,
    late_rejects,
    latest_mismatches,
    live_stack,
    missing_bars,
    return_mismatches,
    unbarred_ticks,
)
from timescale.embedded import EmbeddedDatabaseError, EmbeddedPostgres

SYMBOLS = "AAPL,MSFT,NVDA"
BAR_S = 1
BAR = {"SENTINEL_BAR": f"{BAR_S}s"}
OUTAGE_S = 8


def assert_nothing_lost(dsn: str, bar_s: int = BAR_S, revised: bool = False) -> None:
    """``revised``: bars were revised after their metrics were computed (a backfilled
    gap), so the returns after them are from the closes they had then, by design."""
    with psycopg.connect(dsn) as conn:
        counts = conn.execute("SELECT count(*), (SELECT count(*) FROM ticks) FROM bars").fetchone()
    print(f"measured: {counts} bars and ticks checked")  # shown with `pytest -s`
    assert missing_bars(dsn, bar_s) == dict.fromkeys(SYMBOLS.split(","), 0)
    assert late_rejects(dsn) == 0
    if not revised:
        assert return_mismatches(dsn) == []
    assert unbarred_ticks(dsn, bar_s) == dict.fromkeys(SYMBOLS.split(","), 0)
    # the latest tables, written in the rows' transactions, agree with the hypertables
    assert set(latest_mismatches(dsn).values()) == {0}, latest_mismatches(dsn)


def _snapshotted(tmp_path: Path) -> bool:
    """Whether the dataflow has taken a recovery snapshot (each records its journal
    position for pruning)."""
    path = tmp_path / "home" / "journal" / "feed.sqlite3"
    if not path.exists():
        return False
    with Journal(path) as journal:
        return (journal.position("dataflow") or 0) > 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_dataflow_killed_with_sigkill_is_restarted_and_loses_nothing(
    db: str, tmp_path: Path
) -> None:
    env = {"SENTINEL_SYMBOLS": SYMBOLS, "SENTINEL_SNAPSHOT_INTERVAL_S": "4", **BAR}
    with live_stack(tmp_path, env, db) as up:
        # Killed after its first snapshot (each records its journal position), the
        # dataflow resumes from one, as it did when 3 bars of 5 s took 15 s.
        wait_until(lambda: _snapshotted(tmp_path), 60, "a recovery snapshot", up.log)
        up.wait_for_bars_after(0, 3, 60)
        killed_s = up.kill("dataflow")
        # Bars that start a bar after the kill: only the restarted dataflow can make them.
        up.wait_for_bars_after(killed_s + BAR_S, 3, 90)
        print(f"measured: bars again {time.time() - killed_s:.1f} s after the kill")
        up.stop()
    assert_nothing_lost(db)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_database_outage_of_8_s_loses_no_bar(tmp_path: Path) -> None:
    """On its own embedded database, really stopped and started again. 8 s (it was 15 s,
    with 5 s bars), with the sinks' longest wait at 2 s (5 s by default, which would only
    make the test wait longer after the outage): their retries fail at least 5 times in a
    row and reach that longest wait; /health answers 503 throughout; the outage spans 7
    bars of each ticker."""
    database = EmbeddedPostgres(tmp_path / "home")
    env = {"SENTINEL_SYMBOLS": SYMBOLS, "SENTINEL_SINK_BACKOFF_MAX_S": "2", **BAR}
    try:
        with live_stack(tmp_path, env, None) as up:
            _outage(up, database)
            up.stop()
        assert "restarted" not in up.text(), "nothing crashed"
        assert_nothing_lost(up.dsn)
    finally:
        _stop_for_good(database)  # `sentinel up` leaves its database running


def _stop_for_good(database: EmbeddedPostgres) -> None:
    """Never leave a server behind, even one that does not stop when asked."""
    try:
        database.stop(timeout=30)
    except EmbeddedDatabaseError as exc:
        pid = database.status().pid
        warnings.warn(f"{exc}; killing it", stacklevel=1)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def _outage(up: LiveStack, database: EmbeddedPostgres) -> None:
    up.wait_for_bars_after(0, 3, 60)
    assert database.stop()
    stopped = time.monotonic()
    statuses = []
    while time.monotonic() - stopped < OUTAGE_S:  # the outage itself
        statuses.append(httpx.get(f"{up.api}/health", timeout=10).status_code)
        time.sleep(0.5)
    database.start()
    back_s = time.time()
    assert set(statuses) == {503}, statuses
    print(f"measured: {len(statuses)} /health answers during the outage, all 503")
    wait_until(
        lambda: httpx.get(f"{up.api}/health", timeout=10).status_code == 200,
        30,
        "the API healthy again",
        up.log,
    )
    print(f"measured: /health 200 again {time.time() - back_s:.1f} s after the database")
    # The outage's bars are made from the journal once the sinks get through: at least
    # OUTAGE_S - 1 of each ticker start in these OUTAGE_S - 1 seconds of 1 s bars.
    outage_bars = (
        "SELECT count(*) FROM bars WHERE time BETWEEN to_timestamp(%s) AND to_timestamp(%s)"
    )
    wait_until(
        lambda: up.scalar(outage_bars, back_s - OUTAGE_S, back_s - BAR_S) >= 3 * (OUTAGE_S - 1),
        60,
        "the bars of the outage",
        up.log,
    )
    print(f"measured: the outage's bars written {time.time() - back_s:.1f} s after it")
    up.wait_for_bars_after(back_s + BAR_S, 3, 90)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_feed_killed_with_sigkill_comes_back_its_gap_is_backfilled_and_a_stale_alert(
    db: str, tmp_path: Path
) -> None:
    env = {
        "SENTINEL_SYMBOLS": SYMBOLS,
        "SENTINEL_CALENDAR_OVERRIDE": "24/7",
        "SENTINEL_STALE_AFTER_S": "1.5",
        # The feed stays down at least 3 s: longer than the stale limit.
        "SENTINEL_RESTART_BACKOFF_S": "3",
        **BAR,
    }
    with live_stack(tmp_path, env, db) as up:
        up.wait_for_bars_after(0, 2, 60)
        killed_s = up.kill("feed")
        up.wait_for_bars_after(killed_s + 5, 2, 60)
        alerts = "SELECT count(DISTINCT symbol) FROM alerts WHERE kind = 'stale_feed'"
        wait_until(lambda: up.scalar(alerts) == 3, 30, "a stale alert per ticker", up.log)
        revised = "SELECT count(DISTINCT symbol) FROM bars WHERE revision > 0"
        wait_until(lambda: up.scalar(revised) == 3, 60, "the gap's bars revised", up.log)
        status = "SELECT sum(backfilled_trades) FROM feed_status"
        wait_until(lambda: up.scalar(status) > 0, 30, "feed_status says so", up.log)
        up.stop()
    feed_log = (tmp_path / "home" / "logs" / "feed.log").read_text()
    assert feed_log.count("connected to ws://") >= 2, "connected again"
    assert feed_log.count("subscribed NVDA") >= 2, "subscribed again"
    stale = up.scalar(
        "SELECT count(*) FROM alerts WHERE kind = 'stale_feed' AND time > to_timestamp(%s)",
        killed_s - 2,
    )
    assert stale == 3, "one alert per ticker, for the gap"
    gaps = up.scalar("SELECT min(value) * 1000 FROM alerts WHERE kind = 'stale_feed'")
    print(f"measured: the feed was silent for at least {gaps / 1000:.1f} s")
    # The restarted feed fetched the gap from the simulator's REST routes: its trades
    # revised (or made) the gap's bars, so no bar is missing and every trade is in one.
    assert "backfill: gap" in feed_log
    backfilled = up.scalar("SELECT count(*) FROM ticks WHERE source = 'finnhub_tick'")
    assert backfilled > 0
    assert backfilled == up.scalar("SELECT sum(backfilled_trades) FROM feed_status")
    assert_nothing_lost(up.dsn, revised=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_hostile_feed_never_stops_the_dataflow_and_every_trade_is_accounted_for(
    db: str, tmp_path: Path
) -> None:
    # 150 rounds (7.5 s; it was 300): each of the 23 classes of bad input is sent 6 or 7
    # times, and the trade stamped 50 s ahead 3 times, with 25 rounds after each.
    with HostileFeed(rounds=150) as feed:
        env = {
            "SENTINEL_SYMBOLS": SYMBOLS,
            "SENTINEL_SIMULATE": "false",
            "SENTINEL_FEED_URL": f"ws://127.0.0.1:{feed.port}",
            # It trades at any hour: its implausible prices must reach the price band,
            # which trades outside the session never do (they stay out of bars).
            "SENTINEL_CALENDAR_OVERRIDE": "24/7",
        }
        with live_stack(tmp_path, env, db) as up:
            dataflow = up.child("dataflow")
            assert feed.done.wait(120), "the hostile feed sent everything"
            sent = feed.sent
            good, bad = sum(sent.ticks.values()), sum(sent.rejects.values())

            def stored() -> bool:
                ticks = up.scalar("SELECT count(*) FROM ticks")
                return ticks >= good and up.scalar("SELECT count(*) FROM ticks_rejected") >= bad

            wait_until(stored, 60, f"{good} ticks and {bad} rejects", up.log)
            assert up.child("dataflow") == dataflow, "the dataflow never stopped"
            up.stop()
    assert "restart" not in up.text(), up.text()[-3000:]
    with psycopg.connect(db) as conn:
        ticks: dict[str, int] = dict(
            conn.execute("SELECT symbol, count(*) FROM ticks GROUP BY 1").fetchall()
        )
        reasons: dict[str, int] = dict(
            conn.execute("SELECT reason, count(*) FROM ticks_rejected GROUP BY 1").fetchall()
        )
        unsafe = conn.execute(
            "SELECT count(*) FROM ticks_rejected WHERE reason IS NULL OR detail IS NULL"
        ).fetchone()
    print(f"measured: {dict(sent.ticks)} trades and {dict(sent.rejects)} rejects sent")
    assert ticks == dict(sent.ticks), "every good trade is stored, once"
    assert reasons == dict(sent.rejects), "every bad one, with its reason"
    assert unsafe == (0,)
