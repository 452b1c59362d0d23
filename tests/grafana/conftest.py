"""A database filled by a real simulated run, shared by the dashboard and alert tests.

Twenty minutes of simulated trades for three tickers (with a volatility spike injected
into AAPL) go through the production dataflow into a fresh migrated database, ending
about now, so that ranges like "last hour" hold them. A second, tiny run feeds malformed
messages and late trades through the same flow, for the dead-letter panels. The status
tables the live feed and the API fill (feed_status, alert_notifications) get one row
each, written the way their owners write them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from bytewax.testing import TestingSource, run_main
from psycopg import sql

from connectors.simulator import SimulatorSource, Spike
from connectors.timescale import SPECS
from dataflows.analysis import CheckpointConfig
from dataflows.bars import BarConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, RawBatch
from dataflows.ticks import FlowConfig, build_flow
from sentinel.pipeline import timescale_sinks
from tests.conftest import with_dbname

SYMBOLS = ("AAPL", "MSFT", "NVDA")
INACTIVE = "INTC"
BAR_S = 5
RUN_S = 20 * 60


@dataclass(frozen=True)
class FilledDb:
    dsn: str
    now: datetime  # the end of the simulated run
    ready: datetime  # "now" for a dashboard looking at it: 5 s after the run's end
    symbols: tuple[str, ...]


def _flow_config() -> FlowConfig:
    return FlowConfig(
        parse=ParseConfig(max_future_s=60, max_past_s=7200),
        bars=BarConfig(bar_seconds=BAR_S, allowance_s=1.0),
        checkpoints=CheckpointConfig(every_s=300, clock="event"),
        live=False,
    )


def _simulate(dsn: str, start_us: int) -> None:
    spike = Spike("AAPL", start_us + 12 * 60 * US, 4 * 60 * US, 5.0)
    source = SimulatorSource(
        list(SYMBOLS), seed=11, start_us=start_us, duration_s=RUN_S, paced=False,
        rates=dict.fromkeys(SYMBOLS, 8.0), spikes=[spike],
    )  # fmt: skip
    run_main(build_flow(source, timescale_sinks(dsn), _flow_config()))


def _dead_letters(dsn: str, end_us: int) -> None:
    """Malformed messages spread over the hour, and late trades, through the real flow."""

    def trade(t_us: int, price: float) -> str:
        return json.dumps({"type": "trade", "data": [{"s": "AMZN", "p": price, "t": t_us // 1000,
                                                      "v": 10}]})  # fmt: skip

    batches = []
    for minutes_ago in (50, 40, 30, 4, 3, 2, 1):
        clock = end_us - minutes_ago * 60 * US
        messages: list[tuple[int, str]] = [(i, "not json") for i in range(3)]
        messages.append((3, '{"type": "trade", "data": [{"s": "AMZN", "p": -1, "t": 1}]}'))
        batches.append(RawBatch("finnhub", clock, messages))
    t0 = end_us - 30 * US
    late = [
        (100, trade(t0, 180.0)),
        (101, trade(t0 + 10 * US, 181.0)),
        (102, trade(t0 + 2 * US, 179.0)),
    ]
    batches.append(RawBatch("finnhub", t0 + 10 * US, late))
    run_main(build_flow(TestingSource(batches), timescale_sinks(dsn, report_status=False),
                        _flow_config()))  # fmt: skip


def _status_rows(dsn: str, end: datetime) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """INSERT INTO feed_status (source, url, connected, subscribed, last_message_at,
                   reconnects, last_error, updated_at)
               VALUES ('finnhub', 'ws://simulator:8765', true, %s, %s, 1, NULL, %s)""",
            [list(SYMBOLS), end - timedelta(seconds=1), end],
        )
        payload = {"status": "firing", "alerts": [{"labels": {"rule_uid": "sentinel-stale-feed"}}]}
        conn.execute(
            """INSERT INTO alert_notifications (received_at, status, rule_uid, title, message,
                   payload) VALUES (%s, 'firing', 'sentinel-stale-feed',
                   '[FIRING:1] Stale feed during market hours', 'AAPL: no trades', %s)""",
            [end - timedelta(minutes=5), json.dumps(payload)],
        )


def _wait_for_sink_status(dsn: str, timeout_s: float = 30.0) -> None:
    """Wait until ``sink_status`` holds every sink's final counters.

    A background thread publishes them (``SinkStatusReporter``, a pass every ~2 s) and
    may still be writing after ``run_main`` has returned; each write moves
    ``updated_at``. Once every table's ``rows_written`` equals the rows it holds (a
    fresh database: nothing skipped), the final counters are stored and nothing updates
    them again, so a dashboard range ending after this sees every row."""
    checks = sql.SQL(", ").join(
        sql.SQL(
            "(SELECT count(*) FROM {table}) = (SELECT coalesce(sum(rows_written), 0) "
            "FROM sink_status WHERE table_name = {name})"
        ).format(table=sql.Identifier(table), name=sql.Literal(table))
        for table in SPECS
    )
    query = sql.SQL("SELECT ARRAY[{}]").format(checks)
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(query).fetchone()
            done = dict(zip(SPECS, row[0] if row else [], strict=True))
            if all(done.values()):
                return
            if time.monotonic() > deadline:
                behind = sorted(t for t, ok in done.items() if not ok)
                raise AssertionError(f"sink_status never caught up for {behind}")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def filled_db(server_dsn: str, template_db: str) -> Iterator[FilledDb]:
    name = f"t_grafana_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    dsn = with_dbname(server_dsn, name)
    end_us = (time.time_ns() // 1000) // (BAR_S * US) * (BAR_S * US)
    start_us = end_us - RUN_S * US
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO tickers (symbol, active) SELECT unnest(%s::text[]), true",
            [list(SYMBOLS)],
        )
        conn.execute("INSERT INTO tickers (symbol, active) VALUES (%s, false)", [INACTIVE])
    try:
        _simulate(dsn, start_us)
        _wait_for_sink_status(dsn)  # before _dead_letters adds rows it does not report
        _dead_letters(dsn, end_us)
        end = datetime.fromtimestamp(end_us / US, tz=timezone.utc)
        _status_rows(dsn, end)
        # However long the run took on a loaded machine, the dashboard looks at it 5 s
        # after its end: the sinks' status is dated then too.
        with psycopg.connect(dsn) as conn:
            conn.execute("UPDATE sink_status SET updated_at = %s", [end])
        yield FilledDb(dsn, end, end + timedelta(seconds=5), SYMBOLS)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
