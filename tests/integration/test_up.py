"""`sentinel up` (what `make run` runs): bars and metrics grow within seconds."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from tests.integration.procs import running, wait_until
from tests.integration.stack import up_env
from timescale.embedded import _pid_alive


@pytest.mark.slow
def test_up_shows_bars_and_metrics_growing(db: str, tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    env = up_env(tmp_path, db, "1s")
    # Status lines come 5 and 10 s after start-up: 15 s leave 5 s for the checks below
    # before it exits by itself (it was 25 s, and 40 s before that).
    with running(["-m", "sentinel", "up", "--duration", "15"], env, log) as proc:
        lines: list[tuple[int, int]] = []

        def grown() -> bool:
            text = log.read_text(errors="replace")
            found = re.findall(r"bars ([\d,]+)\s+bar_metrics ([\d,]+)", text)
            lines[:] = [(int(b.replace(",", "")), int(m.replace(",", ""))) for b, m in found]
            return len(lines) >= 2 and lines[-1][0] > lines[0][0] > 0

        wait_until(grown, 35, "growing bar counts in the status lines", log)
        text = log.read_text()
        assert "Stock Sentinel is up" in text
        # Whatever the hour, the market's state is told and the demo trades 24/7.
        assert re.search(r"XNYS is (open|closed) \(.*\); the demo runs its symbols 24/7", text)
        api = re.search(r"api\s+(http://\S+)", text)
        assert api, text
        import httpx

        health = httpx.get(f"{api.group(1)}/health", timeout=10)
        assert health.status_code == 200
        assert httpx.get(f"{api.group(1)}/docs", timeout=10).status_code == 200
        assert lines[-1][1] > lines[0][1] > 0, "metrics grow with the bars"
        proc.wait(60)
    assert proc.returncode == 0, log.read_text()[-2000:]
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(DISTINCT symbol) FROM bars").fetchone()
        # Forecasts are written with the bar they follow: the newest forecast of each
        # symbol was made at its newest bar, for every model.
        lag = conn.execute(
            """SELECT b.symbol, b.last_bar, f.model, f.last_made
               FROM (SELECT symbol, max(time) AS last_bar FROM bars GROUP BY 1) b
               LEFT JOIN (SELECT symbol, model, max(made_at) AS last_made FROM forecasts
                          GROUP BY 1, 2) f USING (symbol)"""
        ).fetchall()
    assert row is not None
    assert row[0] == 5, "every default ticker has bars"
    assert {r[0] for r in lag} == {r[0] for r in lag if r[2] is not None}, "forecasts for all"
    assert all(r[1] == r[3] for r in lag), lag
    assert {r[2] for r in lag} >= {"har", "ewma", "linear", "zero"}


@pytest.mark.slow
def test_ctrl_c_stops_the_feed_and_the_dataflow(db: str, tmp_path: Path) -> None:
    import os
    import signal
    import socket

    log = tmp_path / "up.log"
    env = up_env(tmp_path, db, "1s")
    port = int(env["SENTINEL_SIM_PORT"])
    with running(["-m", "sentinel", "up"], env, log) as proc:
        wait_until(lambda: "Stock Sentinel is up" in log.read_text(), 60, "start-up", log)
        children = [int(p) for p in os.popen(f"pgrep -P {proc.pid}").read().split()]
        assert len(children) == 5, "the simulator, the feed, the dataflow, the archiver, the API"
        for pid in children:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert b"SENTINEL_CALENDAR_OVERRIDE=24/7" in environ, "every child runs the 24/7 demo"
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(60)
    assert "stopped the API, the feed, the dataflow and the archiver" in log.read_text()
    for pid in children:
        assert not _pid_alive(pid), f"child {pid} is still running"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the simulator no longer listens"
