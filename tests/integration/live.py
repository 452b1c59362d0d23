"""The live pipeline's processes as the live tests run them: ``sentinel simulate`` on a
free local port, then the feed (into the journal) and the dataflow (reading it), with
1 s bars, following the ``tickers`` table (AAPL to begin with)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.integration.procs import running
from timescale.embedded import free_port


@dataclass(frozen=True)
class LiveSetup:
    sim_args: list[str]  # `python` arguments of the simulated feed server
    env: dict[str, str]  # the environment of every process


def live_setup(db: str, home: Path) -> LiveSetup:
    """The simulator's arguments and the processes' environment on ``db`` (the journal
    and the recovery state under ``home``); AAPL is added to ``tickers``."""
    port = free_port()
    env = {
        "DATABASE_URL": db,
        "SENTINEL_FEED_URL": f"ws://127.0.0.1:{port}",
        "SENTINEL_BAR": "1s",
        "SENTINEL_LATE_ALLOWANCE_S": "0.5",
        "SENTINEL_SYMBOLS": "AAPL",
        "SENTINEL_HOME": str(home),
        # The simulator trades at any hour: sessions must not depend on when tests run.
        "SENTINEL_CALENDAR_OVERRIDE": "24/7",
    }
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO tickers (symbol) VALUES ('AAPL')")
    sim_args = ["-m", "sentinel", "simulate", "--port", str(port), "--rate", "40"]
    return LiveSetup(sim_args, env)


@contextlib.contextmanager
def feed_and_dataflow(env: dict[str, str], feed_log: Path, flow_log: Path) -> Iterator[None]:
    """The feed and the dataflow processes, stopped on exit."""
    with (
        running(["-m", "sentinel", "feed"], env, feed_log),
        running(["-m", "sentinel", "dataflow"], env, flow_log),
    ):
        yield
