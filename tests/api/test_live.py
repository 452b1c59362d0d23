"""The API with the real live pipeline: `sentinel simulate`, the feed process (into the
journal) and the dataflow (reading it) in their own processes. A ticker added through
POST /tickers gets bars through the running dataflow, and /stream delivers them as they
are written."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from api.serve import serve_in_thread
from tests.api.conftest import API_KEY, query, settings
from tests.integration.live import feed_and_dataflow, live_setup
from tests.integration.procs import start, stop, wait_until

Events = list[tuple[float, dict[str, Any]]]
"""Server-sent events as they arrive: (``time.monotonic()``, data)."""


def collect_events(url: str, events: Events, ready: threading.Event, done: threading.Event) -> None:
    """Read server-sent events into ``events`` (arrival time, data) until ``done``."""
    try:
        with httpx.stream("GET", url, timeout=httpx.Timeout(5.0, read=None)) as r:
            for line in r.iter_lines():
                if line == ": connected":
                    ready.set()
                elif line.startswith("data: "):
                    events.append((time.monotonic(), json.loads(line.removeprefix("data: "))))
                if done.is_set():
                    return
    except httpx.HTTPError:
        if not done.is_set():  # the server cuts the stream when it stops: that is expected
            raise


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_ticker_added_through_the_api_gets_bars(db: str, tmp_path: Path) -> None:
    live = live_setup(db, tmp_path / "home")
    feed_log, flow_log = tmp_path / "feed.log", tmp_path / "flow.log"
    sim = start(live.sim_args, live.env, tmp_path / "sim.log")
    app = create_app(settings(api_key=API_KEY), dsn=db)
    events: Events = []
    ready, done = threading.Event(), threading.Event()
    try:
        with (
            feed_and_dataflow(live.env, feed_log, flow_log),
            serve_in_thread(app) as base,
            httpx.Client(base_url=base, timeout=10) as http,
        ):
            bars = "SELECT count(*) AS n FROM bars WHERE symbol = %s"
            wait_until(lambda: query(db, bars, "AAPL")[0]["n"] >= 2, 60, "AAPL bars", flow_log)
            assert http.get("/bars/MSFT").status_code == 404

            reader = threading.Thread(
                target=collect_events,
                args=(f"{base}/stream?symbols=MSFT&kinds=bar", events, ready, done),
                daemon=True,
            )
            reader.start()
            assert ready.wait(10), "the stream did not open"

            r = http.post("/tickers", json={"symbol": "MSFT"}, headers={"X-API-Key": API_KEY})
            assert r.status_code == 201, r.text

            def msft_bars() -> bool:
                got = http.get("/bars/MSFT", params={"order": "asc"})
                return got.status_code == 200 and got.json()["count"] >= 3

            wait_until(msft_bars, 30, "MSFT bars through the API", flow_log)
            wait_until(lambda: len(events) >= 3, 5, "MSFT bars on /stream")
            stored = {b["time"]: b for b in http.get("/bars/MSFT").json()["bars"]}
            for _, data in events:
                assert data["symbol"] == "MSFT"
                assert {k: data[k] for k in ("open", "close", "volume", "trades")} == {
                    k: stored[data["time"]][k] for k in ("open", "close", "volume", "trades")
                }
            # One bar a second: the stream delivers them as they come, about 1 s apart.
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(events)]
            assert max(gaps) < 3.0, gaps
            done.set()  # before the server stops and cuts the stream
    finally:
        done.set()
        stop(sim)
