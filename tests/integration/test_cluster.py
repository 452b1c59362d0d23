"""A Bytewax cluster of two processes writes the same rows as one process.

The same prepared ticks (8 symbols) go through the bench flow twice: in this process
with one worker, and as a cluster of two ``python -m bytewax.run`` processes on
127.0.0.1, each into its own clean database. Every table the flow writes must hold the
same rows: models, metrics and alerts are keyed by symbol, so they move with the
symbol's partition and do not depend on where it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.run import cli_main
from psycopg import sql

from dataflows.bars import BarConfig
from dataflows.parse import ParseConfig
from dataflows.ticks import FlowConfig
from sentinel.bench import make_batches, run_cluster
from sentinel.flows import SINK_TABLES, bench_flow, write_prepared
from tests.conftest import scratch_db

CONFIG = FlowConfig(
    parse=ParseConfig(max_future_s=86_400, max_past_s=86_400),
    bars=BarConfig(bar_seconds=1, allowance_s=0.5),
    live=False,
)


def rows(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with psycopg.connect(dsn) as conn:
        for table in sorted(set(SINK_TABLES.values())):
            query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))
            out[table] = sorted(conn.execute(query).fetchall(), key=repr)
    return out


@pytest.mark.slow
def test_two_processes_write_the_same_rows_as_one(
    server_dsn: str, template_db: str, tmp_path: Path
) -> None:
    batches, n = make_batches(8_000, seed=7)
    with scratch_db(server_dsn, template_db) as one, scratch_db(server_dsn, template_db) as two:
        cli_main(bench_flow(batches, one, CONFIG))
        prepared = write_prepared(tmp_path / "run.pickle", batches, two, CONFIG, partitions=2)
        run_cluster(prepared, 2, timeout_s=50)
        expected, got = rows(one), rows(two)
    assert len(expected["ticks"]) == n
    assert {r[1] for r in expected["bars"]} == {
        "AAPL",
        "MSFT",
        "NVDA",
        "AMZN",
        "TSLA",
        "GOOGL",
        "META",
        "SPY",
    }
    assert expected["forecasts"]
    assert expected["model_scores"]
    assert expected["bar_metrics"]
    for table in expected:
        assert got[table] == expected[table], table


def _bars(db: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM bars").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_up_runs_a_cluster_and_restarts_it_whole(db: str, tmp_path: Path) -> None:
    """`sentinel up --processes 2`: two dataflow processes; one killed, both restart, and
    bars keep coming."""
    import os
    import signal

    from tests.integration.procs import descendants, running, wait_until
    from tests.integration.stack import up_env

    log = tmp_path / "up.log"
    env = up_env(tmp_path, db, "1s")
    with running(["-m", "sentinel", "up", "--processes", "2", "--duration", "55"], env, log) as up:

        def dataflow(index: int) -> int | None:
            for pid in descendants(up.pid):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"dataflow" in argv and argv[argv.index(b"-i") + 1] == str(index).encode():
                    return pid
            return None

        wait_until(lambda: _bars(db) > 0, 30, "bars from the cluster", log)
        # printed once the API is up too, which may come after the first bars
        wait_until(lambda: "a cluster of 2 processes" in log.read_text(), 30, "the banner", log)
        killed, survivor = dataflow(1), dataflow(0)
        assert killed is not None
        assert survivor is not None
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: "dataflow-1 restarted" in log.read_text(), 10, "the cluster restarted", log
        )
        text = " ".join(log.read_text().split())  # rich wraps long lines
        assert "restarting the whole dataflow cluster (2 processes)" in text
        assert "dataflow-0 restarted" in text, "the process that did not die restarts too"
        assert dataflow(0) not in (None, survivor)
        before = _bars(db)
        wait_until(lambda: _bars(db) > before + 10, 25, "bars after the restart", log)
        up.send_signal(signal.SIGINT)
        up.wait(30)
    assert up.returncode in (0, 130), log.read_text()[-2000:]
