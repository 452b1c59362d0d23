"""Every class of bad request gets its status and a JSON message that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.errors import error_response
from tests.api.conftest import TestClient


def days(start: str, end: str, **more: str) -> dict[str, str]:
    """Query parameters of a range from ``start``'s midnight (UTC) to ``end``'s."""
    return {"start": f"{start}T00:00:00Z", "end": f"{end}T00:00:00Z", **more}


BAD_GETS = [
    # (path, params, status, words the message must contain)
    ("/bars/AA$PL", {}, 422, "bad symbol 'AA$PL'"),
    ("/bars/" + "A" * 33, {}, 422, "bad symbol"),
    ("/metrics/-AAPL", {}, 422, "bad symbol"),
    ("/bars/AAPL", {"start": "yesterday"}, 422, "query parameter 'start': bad time 'yesterday'"),
    ("/bars/AAPL", {"end": "2024-13-01T00:00:00Z"}, 422, "query parameter 'end': bad time"),
    ("/bars/AAPL", days("2024-03-05", "2024-03-04"), 422, "is after end"),
    (
        "/bars/AAPL",
        days("2020-01-01", "2024-03-04", interval="1h"),
        422,
        "range of 36,576 buckets of 3600 s is too large for re-bucketed rows (at most 10,000)",
    ),
    ("/bars/AAPL", {"limit": 10_001}, 422, "limit 10001 is too large (at most 10000)"),
    ("/metrics/AAPL", {"limit": 0}, 422, "query parameter 'limit'"),
    ("/bars/AAPL", {"limit": "many"}, 422, "query parameter 'limit'"),
    ("/bars/AAPL", {"interval": "7x"}, 422, "query parameter 'interval'"),
    ("/bars/AAPL", {"interval": "40d"}, 422, "bad interval '40d': must be 1 s to 31 days"),
    ("/bars/AAPL", {"order": "sideways"}, 422, "query parameter 'order'"),
    ("/forecasts/AAPL", {"target": "price"}, 422, "query parameter 'target'"),
    ("/alerts", {"since": "not a time"}, 422, "bad time"),
    ("/alerts", {"limit": 20_000}, 422, "limit 20000 is too large"),
    ("/stream", {"kinds": "bar,tick"}, 422, "bad kind 'tick'"),
    ("/stream", {"symbols": "AAPL,B$D"}, 422, "bad symbol 'B$D' in 'symbols'"),
    ("/bars/ZZZZ", {}, 404, "unknown symbol 'ZZZZ': no ticker and no bars"),
    ("/metrics/ZZZZ", {}, 404, "unknown symbol 'ZZZZ'"),
    ("/forecasts/ZZZZ", {}, 404, "unknown symbol 'ZZZZ'"),
    ("/models/ZZZZ", {}, 404, "unknown symbol 'ZZZZ'"),
    ("/nowhere", {}, 404, "Not Found"),
]


@pytest.mark.parametrize(("path", "params", "status", "words"), BAD_GETS)
def test_bad_reads(
    client: TestClient, path: str, params: dict[str, Any], status: int, words: str
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert words in body["error"], body["error"]


@pytest.mark.parametrize(
    ("json", "content", "words"),
    [
        ({"symbol": "NO SPACES"}, None, "body field 'symbol': bad symbol 'NO SPACES'"),
        ({"symbol": ""}, None, "body field 'symbol'"),
        ({}, None, "body field 'symbol': Field required"),
        ({"symbol": "AAPL", "extra": 1}, None, "body field 'extra'"),
        (None, b"{not json", "JSON decode error"),
    ],
)
def test_bad_ticker_bodies(
    client: TestClient, json: Any, content: bytes | None, words: str
) -> None:
    headers = {"content-type": "application/json"}
    r = client.post("/tickers", json=json, content=content, headers=headers)
    assert r.status_code == 422, r.text
    assert words in r.json()["error"]


def test_a_ticker_without_data_is_not_an_error(client: TestClient) -> None:
    for path in ("/bars/TSLA", "/metrics/TSLA", "/forecasts/TSLA", "/models/TSLA"):
        r = client.get(path)
        assert r.status_code == 200, path
    assert client.get("/bars/TSLA").json()["bars"] == []


def test_ranges_are_bounded_by_rows_not_by_time(filled_db: str) -> None:
    from tests.api.conftest import client_for

    whole_day = {"start": "2024-03-04T00:00:00Z", "end": "2024-03-05T00:00:00Z"}
    with client_for(filled_db, api_max_limit=50) as c:
        assert c.get("/bars/AAPL", params={"limit": 51}).json()["error"] == (
            "limit 51 is too large (at most 50)"
        )
        # 30 minutes of 5 s bars: 360 rows, more than 50
        for path in ("/bars/AAPL", "/metrics/AAPL", "/forecasts/AAPL"):
            r = c.get(path, params=whole_day)
            assert r.status_code == 422, path
            assert r.json()["error"].startswith("the range holds more than 50 rows"), path
        # the same range with a limit: its first rows; a range of fewer rows: all of them
        r = c.get("/bars/AAPL", params={**whole_day, "limit": 7, "order": "asc"})
        assert [b["time"] for b in r.json()["bars"]][:2] == [
            "2024-03-04T14:00:00Z",
            "2024-03-04T14:00:05Z",
        ]
        assert r.json()["count"] == 7
        minute = {"start": "2024-03-04T14:10:00Z", "end": "2024-03-04T14:11:00Z"}
        assert c.get("/bars/AAPL", params=minute).json()["count"] == 12
        # a year of raw rows is no longer refused for its length
        year = {"start": "2023-06-01T00:00:00Z", "end": "2024-06-01T00:00:00Z", "limit": 5}
        assert c.get("/bars/AAPL", params=year).json()["count"] == 5
        assert c.get("/bars/AAPL").json()["count"] == 50, "the default limit is capped too"
        r = c.get("/bars/AAPL", params={"interval": "1s", **whole_day})
        assert r.status_code == 422
        assert "86,400 buckets" in r.json()["error"]


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_the_error_renderer_escapes_what_it_echoes() -> None:
    detail = {
        "surrogate": "a\ud800b",
        "nul": "a\x00b",
        "nan": float("nan"),
        "inf": [float("-inf")],
        "huge": 10**5000,
        "bytes": b"\xff",
        ("a", 1): "a tuple key",
        "long": "x" * 100_000,
    }
    r = error_response(422, "bad \udfff input", detail)
    body = json.loads(bytes(r.body))
    assert body["error"] == "bad \\udfff input"
    assert body["detail"]["surrogate"] == "a\\ud800b"
    assert body["detail"]["nul"] == "a\x00b", "JSON escapes it"
    assert (body["detail"]["nan"], body["detail"]["inf"]) == ("nan", ["-inf"])
    assert body["detail"]["huge"] == "<an integer of 16610 bits>"
    assert body["detail"]["bytes"] == "b'\\xff'"
    assert body["detail"]["('a', 1)"] == "a tuple key"
    assert len(body["detail"]["long"]) == 2001


def test_the_error_renderer_answers_even_when_rendering_fails() -> None:
    r = error_response(422, "bad", {"x": _Unprintable()})
    assert r.status_code == 422
    assert json.loads(bytes(r.body)) == {"error": "Unprocessable Entity", "detail": None}


def test_a_long_bad_body_gets_a_short_message(client: TestClient) -> None:
    r = client.post("/tickers", json={"symbol": "A" * 100_000})
    assert r.status_code == 422
    assert "body field 'symbol': bad symbol 'AAAA" in r.json()["error"]
    assert len(r.content) < 1000

    r = client.post("/tickers", json={"symbol": "AAPL", **{f"k{i}": i for i in range(500)}})
    assert r.status_code == 422
    assert r.json()["error"].endswith("; and 490 more")
    assert len(r.json()["detail"]) == 10
