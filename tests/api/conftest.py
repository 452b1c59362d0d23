"""API test fixtures: a database filled by a real simulated run of the dataflow (shared by
a module's read-only tests), and clients for apps built with explicit settings."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main
from fastapi import FastAPI
from psycopg.rows import dict_row

from api.main import create_app
from connectors.simulator import SimulatorSource, Spike
from dataflows.analysis import CheckpointConfig
from dataflows.bars import BarConfig
from dataflows.parse import ParseConfig
from dataflows.records import US
from dataflows.ticks import FlowConfig, build_flow
from sentinel.flows import timescale_sinks
from sentinel.settings import Settings
from tests.conftest import scratch_db

with warnings.catch_warnings():  # starlette's notice about httpx; the client works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

API_KEY = "test-key-0123456789"
SYMBOLS = ("AAPL", "MSFT")
SIM_START = datetime(2024, 3, 4, 14, 0, tzinfo=UTC)
SIM_SECONDS = 1800
BAR_SECONDS = 5
# The clock the apps under test see: 10 s after the simulated data ends.
NOW = SIM_START + timedelta(seconds=SIM_SECONDS + 10)


def fixed_clock() -> datetime:
    return NOW


def settings(**overrides: Any) -> Settings:
    """Settings that ignore the environment's `.env` file; ``overrides`` win."""
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def query(dsn: str, text: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(text, params or None)
        return cur.fetchall()


def execute(dsn: str, text: str, *params: Any) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(text, params or None)


def simulate(dsn: str) -> None:
    """Thirty minutes of AAPL and MSFT trades through the real dataflow and sinks, with a
    volatility spike on AAPL (alerts) and checkpoints every 10 minutes."""
    start_us = int(SIM_START.timestamp()) * US
    source = SimulatorSource(
        list(SYMBOLS),
        seed=11,
        start_us=start_us,
        duration_s=SIM_SECONDS,
        spikes=[Spike("AAPL", start_us + 900 * US, 300 * US, 4.0)],
    )
    config = FlowConfig(
        parse=ParseConfig(max_future_s=3600, max_past_s=3600),
        bars=BarConfig(BAR_SECONDS, 0),
        checkpoints=CheckpointConfig(600),
        live=False,
    )
    run_main(build_flow(source, timescale_sinks(dsn), config))


def add_status_rows(dsn: str) -> None:
    """What a live dataflow would add: tickers, a feed's status, one more sink partition
    (worker 99) and a few rejected ticks in the last hour (and one older)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO tickers (symbol, active) VALUES ('AAPL', TRUE), ('MSFT', TRUE), "
            "('TSLA', FALSE)"
        )
        conn.execute(
            """INSERT INTO feed_status (source, url, connected, subscribed, last_message_at,
                                        reconnects, silent_reconnects, backfilled_trades,
                                        last_backfill_at, last_backfill, updated_at)
               VALUES ('finnhub', 'ws://127.0.0.1:8765', TRUE, '{AAPL,MSFT}', %s, 2, 1, 37,
                       %s, 'gap 14:00:00.000-14:00:30.000 UTC: 37 trades', %s)
               ON CONFLICT (source) DO NOTHING""",
            [NOW - timedelta(seconds=1), NOW - timedelta(seconds=2), NOW],
        )
        conn.execute(
            """INSERT INTO sink_status (table_name, worker, rows_written, rows_skipped, retries)
               VALUES ('ticks', 99, 12345, 10, 3)
               ON CONFLICT (table_name, worker) DO NOTHING"""
        )
        rejects = [
            (NOW - timedelta(minutes=5), 1, "malformed_json"),
            (NOW - timedelta(minutes=4), 2, "malformed_json"),
            (NOW - timedelta(minutes=3), 3, "non_positive_price"),
            (NOW - timedelta(hours=2), 4, "malformed_json"),  # outside the last hour
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ticks_rejected (received_at, source, seq, reason, payload) "
                "VALUES (%s, 'test', %s, %s, '{}')",
                rejects,
            )


@pytest.fixture(scope="module")
def filled_db(server_dsn: str, template_db: str) -> Iterator[str]:
    """A database filled by a simulated run; tests that read from it must not write."""
    with scratch_db(server_dsn, template_db) as dsn:
        simulate(dsn)
        add_status_rows(dsn)
        yield dsn


@pytest.fixture(scope="module")
def client(filled_db: str) -> Iterator[TestClient]:
    """An open API (no key) on the filled database, with the fixed clock."""
    with client_for(filled_db) as c:
        yield c


def app_for(dsn: str, **overrides: Any) -> FastAPI:
    """An app on ``dsn`` with these settings and the fixed clock."""
    return create_app(settings(**overrides), dsn=dsn, clock=fixed_clock)


def client_for(dsn: str, **overrides: Any) -> TestClient:
    """A client for an app on ``dsn`` with these settings; use as a context manager."""
    return TestClient(app_for(dsn, **overrides))
