"""Bad request bodies, on every route that takes one, against a real server: each gets its
4xx and a JSON message, never a 500, and the keep-alive connection stays usable.

The body-size limit is checked the same way, both for a declared ``Content-Length`` and
for a chunked body (an httpx generator body is sent with ``Transfer-Encoding: chunked``).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import BaseRoute

from api.body import MAX_DEPTH, JsonBodyRoute
from api.main import create_app
from api.serve import serve_in_thread
from tests.api.conftest import app_for, client_for, execute, query
from tests.api.conftest import settings as app_settings
from tests.conftest import scratch_db

MiB = 1024 * 1024
JSON = {"content-type": "application/json"}
TICKERS, WEBHOOK = "/tickers", "/alerts/notifications"
TICKER = "/tickers/AAPL"  # PATCH /tickers/{symbol}
# Every route that takes a body: (method, a path of it, its route's path).
BODY_ROUTES = (
    ("POST", TICKERS, TICKERS),
    ("PATCH", TICKER, "/tickers/{symbol}"),
    ("POST", WEBHOOK, WEBHOOK),
)
SENT_TO = [(method, path) for method, path, _ in BODY_ROUTES]


@pytest.fixture(scope="module")
def writable_db(server_dsn: str, template_db: str) -> Iterator[str]:
    with scratch_db(server_dsn, template_db) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def base_url(writable_db: str) -> Iterator[str]:
    """A real uvicorn server, default limits (1 MiB bodies)."""
    with serve_in_thread(app_for(writable_db)) as url:
        yield url


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=20) as client:
        yield client


def local_port(r: httpx.Response) -> int:
    """The client's port of the connection the response came on."""
    port: int = r.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


def assert_error(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert words in body["error"], body["error"]


def assert_still_usable(http: httpx.Client, bad: httpx.Response) -> None:
    """A good request after the bad one goes over the same connection."""
    assert bad.headers.get("connection") != "close"
    good = http.get("/tickers")
    assert good.status_code == 200, good.text
    assert local_port(good) == local_port(bad), "the keep-alive connection was dropped"


def stored(dsn: str) -> tuple[int, int]:
    """Rows in `tickers` and `alert_notifications`."""
    (row,) = query(
        dsn,
        "SELECT (SELECT count(*) FROM tickers) AS t, "
        "(SELECT count(*) FROM alert_notifications) AS n",
    )
    return row["t"], row["n"]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def webhook(**fields: Any) -> dict[str, Any]:
    return {"status": "firing", **fields}


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # ASCII: NUL and lone surrogates travel as escapes


class BadBody(NamedTuple):
    """A body a route must refuse, with the status and words its message must contain."""

    path: str
    body: bytes
    words: str
    status: int = 422
    content_type: str | None = "application/json"
    method: str = "POST"


def not_json(
    path: str, content_type: str | None, words: str, body: bytes = b'{"symbol": "AAPL"}'
) -> BadBody:
    return BadBody(path, body, words, 415, content_type)


FORM = "application/x-www-form-urlencoded"
NUMBER_LIMIT = "is not accepted: a number may take at most 100 characters written out"
DEEPEST_FIELD = "x" + ".0" * (MAX_DEPTH - 1)
BAD_BODIES = [
    BadBody(
        TICKERS,
        b'{"symbol": "\\ud800"}',
        "body field 'symbol': contains a lone surrogate ('\\ud800' at position 0)",
    ),
    BadBody(
        TICKERS,
        b'{"symbol": "AA\\u0000PL"}',
        "body field 'symbol': contains a NUL character (at position 2)",
    ),
    BadBody(
        WEBHOOK,
        dumps(webhook(alerts=[{"labels": {"alertname": "x\udfff"}}])),
        "body field 'alerts.0.labels.alertname': contains a lone surrogate",
    ),
    BadBody(
        WEBHOOK,
        dumps(webhook(extra={"deep": ["ok", "nul\x00"]})),
        "body field 'extra.deep.1': contains a NUL character",
    ),
    BadBody(
        WEBHOOK,
        dumps(webhook(extra={"bad\ud800key": 1})),
        "body field 'extra': key contains a lone surrogate",
    ),
    BadBody(
        TICKERS,
        b'{"symbol": "\xff\xfe"}',
        "request body: not valid UTF-8 (byte 0xff at offset 12)",
    ),
    BadBody(
        WEBHOOK,
        b'{"status": "\xed\xa0\x80"}',  # a surrogate, UTF-8'd
        "request body: not valid UTF-8 (byte 0xed at offset 12)",
    ),
    BadBody(TICKERS, b"{not json", "request body: JSON decode error"),
    BadBody(WEBHOOK, b"", "request body: Field required"),
    not_json(
        TICKERS,
        "text/plain",
        "request body must be JSON: send Content-Type: application/json (got 'text/plain')",
    ),
    not_json(WEBHOOK, FORM, "request body must be JSON", body=b"status=firing"),
    not_json(TICKERS, None, "(none was sent)"),
    BadBody(TICKERS, nested(100_000), f"request body: nested deeper than {MAX_DEPTH} levels"),
    BadBody(
        WEBHOOK,
        dumps(webhook(x=json.loads(nested(MAX_DEPTH)))),
        f"body field '{DEEPEST_FIELD}': nested deeper than {MAX_DEPTH} levels",
    ),
    BadBody(TICKERS, b'{"symbol": 1' + b"0" * 5000 + b"}", "request body: number '1000"),
    BadBody(WEBHOOK, b'{"status": "firing", "x": 1e999}', f"number '1e999' {NUMBER_LIMIT}"),
    BadBody(WEBHOOK, b'{"status": "firing", "x": 1e100}', "number '1e100'"),
    BadBody(WEBHOOK, b'{"status": "firing", "x": 1e-99}', "number '1e-99'"),
    BadBody(WEBHOOK, b'{"status": "firing", "x": NaN}', "number 'NaN'"),
    BadBody(TICKERS, b'{"symbol": -Infinity}', "number '-Infinity'"),
    BadBody(
        TICKER,
        b'{"calendar": "X\\ud800"}',
        "body field 'calendar': contains a lone surrogate ('\\ud800' at position 1)",
        method="PATCH",
    ),
    BadBody(
        TICKER,
        b'{"calendar": "XN\\u0000YS"}',
        "body field 'calendar': contains a NUL character (at position 2)",
        method="PATCH",
    ),
    BadBody(TICKER, b'{"active": tru', "request body: JSON decode error", method="PATCH"),
    BadBody(TICKER, b"", "request body: Field required", method="PATCH"),
    BadBody(TICKER, b'{"active": 1e999}', f"number '1e999' {NUMBER_LIMIT}", method="PATCH"),
    BadBody(TICKER, nested(100), "nested deeper than", method="PATCH"),
    BadBody(TICKER, b"active=true", "request body must be JSON", 415, FORM, "PATCH"),
]


@pytest.mark.parametrize(
    BadBody._fields,
    BAD_BODIES,
    ids=[f"{i}-{case.method}-{case.path}-{case.status}" for i, case in enumerate(BAD_BODIES)],
)
def test_a_bad_body_gets_a_4xx_with_a_message_and_the_connection_survives(
    http: httpx.Client,
    writable_db: str,
    path: str,
    body: bytes,
    content_type: str | None,
    status: int,
    words: str,
    method: str,
) -> None:
    before = stored(writable_db)
    warm = http.get("/tickers")  # the connection the bad request must not break
    assert warm.status_code == 200
    headers = {"content-type": content_type} if content_type else {}
    r = http.request(method, path, content=body, headers=headers)
    assert_error(r, status, words)
    assert_still_usable(http, r)
    assert stored(writable_db) == before


STORED_X = "SELECT payload->'x' AS x FROM alert_notifications WHERE id = %s"


def test_nesting_and_numbers_up_to_the_limits_are_accepted(
    http: httpx.Client, writable_db: str
) -> None:
    deepest = webhook(x=json.loads(nested(MAX_DEPTH - 1)))  # the object is one level
    r = http.post(WEBHOOK, content=dumps(deepest), headers=JSON)
    assert r.status_code == 201, r.text
    numbers = b'{"status": "firing", "x": [1e99, -1e98, 1e-98, 1' + b"0" * 99 + b"]}"
    r = http.post(WEBHOOK, content=numbers, headers=JSON)
    assert r.status_code == 201, r.text
    (row,) = query(writable_db, STORED_X, r.json()["ids"][0])
    assert row["x"] == [10**99, -(10**98), pytest.approx(1e-98), 10**99]
    execute(writable_db, "DELETE FROM alert_notifications")


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (router := getattr(route, "original_router", None)) is not None:
            yield from api_routes(router.routes)  # FastAPI's included routers


def test_every_route_with_a_body_checks_it() -> None:
    app = create_app(app_settings())
    with_body = [r for r in api_routes(app.routes) if r.body_field is not None]
    found = {(m, r.path) for r in with_body for m in r.methods or ()}
    assert found == {(m, route) for m, _, route in BODY_ROUTES}, "test every route with a body"
    assert all(isinstance(r, JsonBodyRoute) for r in with_body)
    operations = app.openapi()["paths"]
    for method, _, route in BODY_ROUTES:
        documented = operations[route][method.lower()]["responses"]
        assert {"413", "415", "422"} <= set(documented)


# -- the body-size limit -------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid webhook body of exactly ``size`` bytes (JSON allows trailing spaces)."""
    body = dumps(webhook(alerts=[]))
    return body + b" " * (size - len(body))


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def test_a_body_at_the_limit_is_accepted(http: httpx.Client, writable_db: str) -> None:
    r = http.post(WEBHOOK, content=padded(MiB), headers=JSON)
    assert r.status_code == 201, r.text
    r = http.post(WEBHOOK, content=chunks(padded(MiB)), headers=JSON)
    assert r.status_code == 201, r.text
    execute(writable_db, "DELETE FROM alert_notifications")


@pytest.mark.parametrize(("method", "path"), SENT_TO)
@pytest.mark.parametrize("size", [MiB + 1, 10 * MiB])
def test_a_declared_length_over_the_limit_is_413(
    http: httpx.Client, writable_db: str, method: str, path: str, size: int
) -> None:
    r = http.request(method, path, content=padded(size), headers=JSON)
    assert_error(r, 413, f"request body too large: the limit is {MiB} bytes")
    assert_still_usable(http, r)
    assert stored(writable_db) == (0, 0)


@pytest.mark.parametrize(("method", "path"), SENT_TO)
@pytest.mark.parametrize("size", [MiB + 1, 10 * MiB])
def test_a_chunked_body_over_the_limit_is_413(
    http: httpx.Client, writable_db: str, method: str, path: str, size: int
) -> None:
    sent = []

    def body() -> Iterator[bytes]:
        for chunk in chunks(padded(size)):
            sent.append(len(chunk))
            yield chunk

    r = http.request(method, path, content=body(), headers=JSON)
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in r.request.headers
    assert_error(r, 413, f"request body too large: the limit is {MiB} bytes")
    assert sum(sent) == size
    assert_still_usable(http, r)
    assert stored(writable_db) == (0, 0)


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    base_url: str,
) -> None:
    url = urlsplit(base_url)
    head = (
        f"POST {WEBHOOK} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {100 * 1024 * MiB}\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode())  # and not a byte of the 100 GiB
        answer = b""
        while not answer.endswith(b"}"):  # the JSON body ends the answer
            data = sock.recv(65536)
            assert data, f"connection closed after {answer!r}"
            answer += data
    assert answer.startswith(b"HTTP/1.1 413 ")
    error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert error == f"request body too large: the limit is {MiB} bytes"


def test_the_limit_is_a_setting(writable_db: str) -> None:
    with client_for(writable_db, api_max_body_bytes=100) as c:
        assert c.post(WEBHOOK, content=padded(100), headers=JSON).status_code == 201
        r = c.post(WEBHOOK, content=padded(101), headers=JSON)
        assert r.status_code == 413
        assert r.json()["error"] == "request body too large: the limit is 100 bytes"
        r = c.post(WEBHOOK, content=chunks(padded(101), 10), headers=JSON)
        assert r.status_code == 413, "no Content-Length: counted as it arrives"
    execute(writable_db, "DELETE FROM alert_notifications")


# -- anything goes in, nothing 5xx comes out --------------------------------------------------

TEXT = st.text(st.characters() | st.characters(categories=["Cs"]) | st.just("\x00"), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=16,
)
ALERT_FIELDS = ("labels", "annotations", "status", "generatorURL")
ANY_ALERT = st.fixed_dictionaries({}, optional=dict.fromkeys(ALERT_FIELDS, JSON_VALUES))
WEBHOOKS = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved"]) | JSON_VALUES},
    optional={
        "alerts": st.lists(ANY_ALERT | JSON_VALUES, max_size=3) | JSON_VALUES,
        "title": JSON_VALUES,
        "message": JSON_VALUES,
        "extra": JSON_VALUES,
    },
)
PATCHES = st.fixed_dictionaries({}, optional={"calendar": JSON_VALUES, "active": JSON_VALUES})
BODIES = st.one_of(
    st.tuples(
        st.just("POST"),
        st.just(TICKERS),
        st.fixed_dictionaries({"symbol": JSON_VALUES}, optional={"calendar": JSON_VALUES})
        | JSON_VALUES,
    ),
    st.tuples(st.just("PATCH"), st.just(TICKER), PATCHES | JSON_VALUES),
    st.tuples(st.just("POST"), st.just(WEBHOOK), WEBHOOKS | JSON_VALUES),
)
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "application/x+json", ""])
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(case=BODIES)
def test_any_json_value_gets_an_answer_below_500(http: httpx.Client, case: Any) -> None:
    method, path, value = case
    # NaN, Infinity, escapes and all
    r = http.request(method, path, content=dumps(value), headers=JSON)
    assert r.status_code < 500, r.text
    r.json()


@PROPERTY
@given(
    route=st.sampled_from(SENT_TO),
    body=TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=64),
    content_type=CONTENT_TYPES,
)
def test_any_bytes_get_an_answer_below_500(
    http: httpx.Client, route: tuple[str, str], body: bytes, content_type: str
) -> None:
    method, path = route
    r = http.request(method, path, content=body, headers={"content-type": content_type})
    assert r.status_code < 500, r.text
    r.json()
