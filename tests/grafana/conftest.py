"""A database filled by a real simulated run, shared by the dashboard and alert tests.

Twenty minutes of simulated trades for three tickers (with a volatility spike injected
into AAPL) go through the production dataflow into a fresh migrated database, ending
about now, so that ranges like "last hour" hold them. A second, tiny run feeds malformed
messages and late trades through the same flow, for the dead-letter panels. A third run
is a live feed that sends no trades for some tickers, so the dataflow itself raises
their stale_feed alerts. The status tables the live feed and the API fill (feed_status,
alert_notifications) get one row each, written the way their owners write them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import exchange_calendars as xcals
import pandas as pd
import psycopg
import pytest
from bytewax.testing import TestingSource, run_main
from psycopg import sql

from connectors.simulator import SimulatorSource, Spike
from connectors.timescale import SPECS
from dataflows.analysis import CheckpointConfig
from dataflows.bars import BarConfig
from dataflows.config import SessionConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, RawBatch
from dataflows.ticks import FlowConfig, build_flow
from sentinel.flows import timescale_sinks
from tests.conftest import scratch_db

SYMBOLS = ("AAPL", "MSFT", "NVDA")
INACTIVE = "INTC"
BAR_S = 5
RUN_S = 20 * 60
# The stale-feed run's live feed, subscribed to tickers it never sends a trade for: MSFT
# (which trades all along in the simulated run) and the inactive INTC from STALE_LEAD_S
# before the end, NVDA from the end (after its last simulated trade) until STALE_TAIL_S
# past it. The dataflow alerts each stale_after_s after it first saw it subscribed.
STALE_LEAD_S = 10 * 60
STALE_TAIL_S = 3 * 60
STALE_EARLY = ("MSFT", INACTIVE)
STALE_LATE = "NVDA"
# The session-close run: its last minutes of trading and a few minutes after the close.
CLOSE_LEAD_S = 10 * 60
CLOSE_TAIL_S = 3 * 60


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
        list(SYMBOLS),
        seed=11,
        start_us=start_us,
        duration_s=RUN_S,
        paced=False,
        rates=dict.fromkeys(SYMBOLS, 8.0),
        spikes=[spike],
    )
    run_main(build_flow(source, timescale_sinks(dsn), _flow_config()))


def _dead_letters(dsn: str, end_us: int) -> None:
    """Malformed messages spread over the hour, and late trades, through the real flow."""

    def trade(t_us: int, price: float) -> str:
        data = {"s": "AMZN", "p": price, "t": t_us // 1000, "v": 10}
        return json.dumps({"type": "trade", "data": [data]})

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
        # Its bar closed longer ago than the revision window (300 s): a `late` reject.
        (102, trade(t0 - 400 * US, 179.0)),
    ]
    batches.append(RawBatch("finnhub", t0 + 10 * US, late))
    _run_batches(dsn, batches, _flow_config())


def _stale_feeds(dsn: str, end_us: int) -> None:
    """A live feed's heartbeats (a batch every 5 s, no trades) through the real flow: the
    dataflow's stale check raises the stale_feed alerts. The flow has no calendars (every
    market always open), so the alerts do not depend on when the tests run."""
    batches = []
    for clock in range(end_us - STALE_LEAD_S * US, end_us + STALE_TAIL_S * US + 1, 5 * US):
        subscribed = STALE_EARLY if clock < end_us else (*STALE_EARLY, STALE_LATE)
        batches.append(RawBatch("finnhub", clock, [], subscribed))
    _run_batches(dsn, batches, _flow_config())


def last_close_before(t: datetime) -> datetime:
    """The latest XNYS session close at least 2 hours before ``t``."""
    close = xcals.get_calendar("XNYS").previous_close(pd.Timestamp(t) - pd.Timedelta(hours=2))
    return close.to_pydatetime()


def _session_close(dsn: str, before: datetime) -> None:
    """The last minutes of the latest XNYS session ended well before the simulated run,
    and a few after its close, through the flow with market calendars: the dataflow
    writes the session's close event and each ticker's daily summary."""
    close_us = int(last_close_before(before).timestamp()) * US
    source = SimulatorSource(
        list(SYMBOLS),
        seed=5,
        start_us=close_us - CLOSE_LEAD_S * US,
        duration_s=CLOSE_LEAD_S + CLOSE_TAIL_S,
        paced=False,
        rates=dict.fromkeys(SYMBOLS, 8.0),
        calendar="XNYS",
    )
    config = replace(_flow_config(), sessions=SessionConfig(default="XNYS"))
    run_main(build_flow(source, timescale_sinks(dsn, report_status=False), config))


def _run_batches(dsn: str, batches: list[RawBatch], config: FlowConfig) -> None:
    sinks = timescale_sinks(dsn, report_status=False)
    run_main(build_flow(TestingSource(batches), sinks, config))


def _status_rows(dsn: str, end: datetime) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """INSERT INTO feed_status (source, url, connected, subscribed, last_message_at,
                   last_trade_at, reconnects, last_error, updated_at)
               VALUES ('finnhub', 'ws://simulator:8765', true, %s, %s, %s, 1, NULL, %s)""",
            [list(SYMBOLS), end - timedelta(seconds=1), end - timedelta(seconds=1), end],
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
    # One migrated database for the session, filled once and dropped at its end.
    with scratch_db(server_dsn, template_db) as dsn:
        end_us = (time.time_ns() // 1000) // (BAR_S * US) * (BAR_S * US)
        start_us = end_us - RUN_S * US
        with psycopg.connect(dsn) as conn:
            conn.execute(
                "INSERT INTO tickers (symbol, active) SELECT unnest(%s::text[]), true",
                [list(SYMBOLS)],
            )
            conn.execute("INSERT INTO tickers (symbol, active) VALUES (%s, false)", [INACTIVE])
        _simulate(dsn, start_us)
        _wait_for_sink_status(dsn)  # before _dead_letters adds rows it does not report
        _dead_letters(dsn, end_us)
        _stale_feeds(dsn, end_us)
        _session_close(dsn, datetime.fromtimestamp(start_us / US, tz=timezone.utc))
        end = datetime.fromtimestamp(end_us / US, tz=timezone.utc)
        _status_rows(dsn, end)
        # However long the run took on a loaded machine, the dashboard looks at it 5 s
        # after its end: the sinks' status is dated then too.
        with psycopg.connect(dsn) as conn:
            conn.execute("UPDATE sink_status SET updated_at = %s", [end])
        yield FilledDb(dsn, end, end + timedelta(seconds=5), SYMBOLS)
