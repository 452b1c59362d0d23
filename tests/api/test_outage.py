"""Database down: 503 with a message, /metrics still answers, and the API recovers by
itself when the database returns."""

from __future__ import annotations

import time

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.api.conftest import client_for
from tests.api.proxy import TcpProxy
from timescale.embedded import free_port


def test_nothing_listening_is_503_with_a_message() -> None:
    dsn = f"postgresql://sentinel@127.0.0.1:{free_port()}/sentinel"
    with client_for(dsn, api_db_timeout_s=0.5) as c:
        for path in ("/health", "/tickers", "/bars/AAPL", "/forecasts/AAPL"):
            r = c.get(path)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"].startswith("database unavailable"), r.json()
        r = c.post("/tickers", json={"symbol": "AAPL"})
        assert r.status_code == 503
        # Bad input is still a 422: requests are checked before the database is asked.
        for path, params in [
            ("/bars/AAPL", {"limit": 0}),
            ("/bars/A$", {}),
            ("/forecasts/AAPL", {"limit": 10**6}),
            ("/alerts", {"since": "x"}),
        ]:
            assert c.get(path, params=params).status_code == 422, path
        metrics = c.get("/metrics")
        assert metrics.status_code == 200
        assert "sentinel_database_up 0.0" in metrics.text


@pytest.mark.timeout(90)
def test_an_outage_is_503_and_the_api_recovers(db: str) -> None:
    params = conninfo_to_dict(db)
    host = str(params.get("host") or "")
    if not host or host.startswith("/"):
        pytest.skip("the test server is not reachable over TCP")
    proxy = TcpProxy(host, int(params.get("port") or 5432))
    proxy.start()
    try:
        via_proxy = make_conninfo(db, host="127.0.0.1", port=str(proxy.port))
        with client_for(via_proxy, api_db_timeout_s=1) as c:
            assert c.get("/tickers").status_code == 200
            assert c.get("/health").json()["database"]["reachable"] is True

            proxy.cut()
            for path in ("/tickers", "/health"):
                r = c.get(path)
                assert r.status_code == 503, r.text
                assert r.json()["error"].startswith("database unavailable")
                assert r.json()["detail"] == {"retry": True}

            proxy.start()
            deadline = time.monotonic() + 45
            while (status := c.get("/tickers").status_code) != 200:
                assert status == 503
                assert time.monotonic() < deadline, "the API did not recover"
                time.sleep(0.25)
            assert c.post("/tickers", json={"symbol": "AAPL"}).status_code == 201
            assert c.get("/health").status_code == 200
    finally:
        proxy.cut()
