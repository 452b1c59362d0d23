"""Mutating endpoints: tickers and Grafana notifications, the API key, read keys, CORS."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.api.conftest import API_KEY, client_for, execute, query

KEY = {"X-API-Key": API_KEY}


def test_ticker_lifecycle(db: str) -> None:
    execute(db, "INSERT INTO bars VALUES ('2024-03-04T14:00:00Z', 'NVDA', 1, 1, 1, 1, 1, 1, 1, 5)")
    with client_for(db, api_key=API_KEY) as c, psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN sentinel_tickers")

        r = c.post("/tickers", json={"symbol": "nvda"}, headers=KEY)
        assert r.status_code == 201, r.text
        assert r.json()["symbol"] == "NVDA"
        assert r.json()["active"] is True
        row = query(db, "SELECT * FROM tickers")
        assert [(t["symbol"], t["active"]) for t in row] == [("NVDA", True)]
        assert r.json()["added_at"].endswith("Z")

        again = c.post("/tickers", json={"symbol": "NVDA"}, headers=KEY)
        assert again.status_code == 200
        assert again.json() == r.json(), "idempotent, untouched"

        gone = c.delete("/tickers/nvda", headers=KEY)
        assert gone.status_code == 200
        assert gone.json()["active"] is False
        assert query(db, "SELECT active FROM tickers")[0]["active"] is False
        assert query(db, "SELECT count(*) AS n FROM bars")[0]["n"] == 1, "history is kept"
        assert c.delete("/tickers/NVDA", headers=KEY).status_code == 200, "deleting twice is fine"

        back = c.post("/tickers", json={"symbol": "NVDA"}, headers=KEY)
        assert back.status_code == 200
        assert back.json()["active"] is True, "re-activated"
        assert back.json()["added_at"] == r.json()["added_at"]

        missing = c.delete("/tickers/NOPE", headers=KEY)
        assert missing.status_code == 404
        assert missing.json()["error"] == "unknown ticker 'NOPE'"

        # What the live source follows: insert, deactivate, re-activate, not the no-op.
        notes = [n.payload for n in listener.notifies(timeout=1, stop_after=4)]
        assert notes == ["NVDA:INSERT", "NVDA:UPDATE", "NVDA:UPDATE", "NVDA:UPDATE"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/tickers", {"symbol": "AAPL"}),
        ("DELETE", "/tickers/AAPL", None),
        ("POST", "/alerts/notifications", {"status": "firing", "alerts": []}),
    ],
)
def test_mutations_need_the_api_key(db: str, method: str, path: str, body: Any) -> None:
    execute(db, "INSERT INTO tickers (symbol) VALUES ('AAPL')")
    with client_for(db, api_key=API_KEY) as c:
        r = c.request(method, path, json=body)
        assert r.status_code == 401
        assert r.json()["error"] == "API key required: send it in the X-API-Key header"
        r = c.request(method, path, json=body, headers={"X-API-Key": "wrong-key-123"})
        assert r.status_code == 403
        assert r.json()["error"] == "API key not valid"
        assert query(db, "SELECT active FROM tickers")[0]["active"] is True
        assert query(db, "SELECT count(*) AS n FROM alert_notifications")[0]["n"] == 0
        r = c.request(method, path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code < 300, r.text
        assert c.get("/tickers").status_code == 200, "reads stay open"


def test_without_a_configured_key_mutations_are_open(db: str) -> None:
    with client_for(db) as c:
        assert c.post("/tickers", json={"symbol": "AAPL"}).status_code == 201


def test_reads_can_require_the_key(db: str) -> None:
    with client_for(db, api_key=API_KEY, api_read_key_required=True) as c:
        for path in ("/tickers", "/alerts", "/bars/AAPL", "/metrics", "/stream"):
            assert c.get(path).status_code == 401, path
        assert c.get("/tickers", headers=KEY).status_code == 200
        assert c.get("/health").status_code == 200, "health stays open for probes"
        assert c.get("/openapi.json").status_code == 200


def test_cors_origins_are_configurable(db: str) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key",
    }
    with client_for(db, cors_origins="http://localhost:3000, https://grafana.example") as c:
        r = c.options("/tickers", headers={"Origin": "https://grafana.example", **preflight})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://grafana.example"
        r = c.get("/tickers", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    with client_for(db) as c:
        r = c.get("/tickers", headers={"Origin": "https://grafana.example"})
        assert "access-control-allow-origin" not in r.headers, "no CORS unless configured"


GRAFANA_PAYLOAD: dict[str, Any] = {
    "receiver": "sentinel-api",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "Feed stale",
                "__alert_rule_uid__": "sentinel-feed-stale",
                "severity": "critical",
            },
            "annotations": {"summary": "No ticks for 60 s", "description": "AAPL is quiet"},
            "startsAt": "2024-03-04T14:30:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana/alerting/grafana/sentinel-feed-stale/view",
            "fingerprint": "abc123",
            "values": {"A": 61.5},
        },
        {
            "status": "resolved",
            "labels": {"alertname": "Sink retries"},
            "annotations": {},
            "startsAt": "2024-03-04T14:00:00Z",
            "endsAt": "2024-03-04T14:20:00Z",
            "generatorURL": "http://grafana/alerting/grafana/sentinel-sink-retries/view?orgId=1",
            "fingerprint": "def456",
        },
    ],
    "groupLabels": {"alertname": "Feed stale"},
    "commonLabels": {},
    "externalURL": "http://grafana/",
    "version": "1",
    "groupKey": '{}:{alertname="Feed stale"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1, RESOLVED:1]",
    "state": "alerting",
    "message": "Grafana says hello",
}


def test_grafana_notifications_are_stored_one_row_per_alert(db: str) -> None:
    with client_for(db, api_key=API_KEY) as c:
        r = c.post("/alerts/notifications", json=GRAFANA_PAYLOAD, headers=KEY)
        assert r.status_code == 201, r.text
        assert r.json()["stored"] == 2
        rows = query(db, "SELECT * FROM alert_notifications ORDER BY id")
        assert [row["id"] for row in rows] == r.json()["ids"]
        first, second = rows
        assert (first["status"], first["rule_uid"], first["title"], first["message"]) == (
            "firing",
            "sentinel-feed-stale",
            "No ticks for 60 s",
            "AAPL is quiet",
        )
        assert (second["status"], second["rule_uid"], second["title"], second["message"]) == (
            "resolved",
            "sentinel-sink-retries",
            "Sink retries",
            "Grafana says hello",
        )
        assert first["payload"]["alert"] == GRAFANA_PAYLOAD["alerts"][0], "kept as sent"
        assert first["payload"]["receiver"] == "sentinel-api"
        assert first["payload"]["truncatedAlerts"] == 0, "unknown fields are kept"
        assert "alerts" not in first["payload"]

        empty = {"status": "resolved", "alerts": [], "title": "test", "message": "ping"}
        assert c.post("/alerts/notifications", json=empty, headers=KEY).json()["stored"] == 1

        listed = c.get("/alerts/notifications").json()
        assert [n["id"] for n in listed] == [3, 2, 1]
        assert listed[0]["title"] == "test"
        assert [
            n["id"] for n in c.get("/alerts/notifications", params={"status": "firing"}).json()
        ] == [1]

        bad = c.post("/alerts/notifications", json={"alerts": "nope"}, headers=KEY)
        assert bad.status_code == 422
        assert "body field 'status': Field required" in bad.json()["error"]


@pytest.mark.parametrize(
    ("payload", "field", "what"),
    [
        ({"status": "firing", "title": "nul\u0000here"}, "title", "a NUL character"),
        (
            {"status": "firing", "alerts": [{"labels": {"alertname": "bad\ud800surrogate"}}]},
            "alerts.0.labels.alertname",
            "a lone surrogate ('\\ud800' at position 3)",
        ),
        (
            {"status": "firing", "alerts": [{"annotations": {"x\u0000": "y"}}]},
            "alerts.0.annotations",
            "key contains a NUL character",
        ),
    ],
)
def test_a_notification_with_characters_postgres_refuses_is_refused(
    db: str, payload: dict[str, Any], field: str, what: str
) -> None:
    with client_for(db) as c:
        body = json.dumps(payload)  # ASCII: NUL and the lone surrogate travel as escapes
        r = c.post(
            "/alerts/notifications", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, r.text
        assert f"body field '{field}': " in r.json()["error"]
        assert what in r.json()["error"]
    assert query(db, "SELECT count(*) AS n FROM alert_notifications")[0]["n"] == 0
