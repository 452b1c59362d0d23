"""Grafana notifications are stored bounded: at most so many alerts per call, at most so
many bytes per row, and listed a bounded number at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from api.notifications import MARK, NotificationRow, notification_rows
from tests.api.conftest import client_for, query

KiB = 1024
LIMIT = 64 * KiB  # the default api_notification_max_bytes
STORED_SIZE = """SELECT id, octet_length(payload::text) + coalesce(octet_length(title), 0)
                        + coalesce(octet_length(message), 0) AS bytes,
                        payload, title, message
                 FROM alert_notifications ORDER BY id"""


def size(row: NotificationRow) -> int:
    """Bytes of its JSON text with the numbers written out as jsonb writes them."""
    text = json.dumps(row.as_json(), ensure_ascii=False)
    return len(text.encode()) + sum(
        len(format(Decimal(repr(x)), "f")) - len(repr(x)) for x in floats(row.as_json())
    )


def floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from floats(item)


def alert(i: int, **fields: Any) -> dict[str, Any]:
    return {"status": "firing", "labels": {"alertname": f"rule {i}"}, **fields}


# -- the rules, without a database ---------------------------------------------------------


def test_a_small_notification_is_stored_as_it_came() -> None:
    payload = {"status": "firing", "title": "t", "alerts": [alert(1), alert(2)]}
    rows = notification_rows(payload, max_alerts=100, max_bytes=LIMIT)
    assert [r.payload for r in rows] == [
        {"status": "firing", "title": "t", "alert": alert(1)},
        {"status": "firing", "title": "t", "alert": alert(2)},
    ]
    assert all("_truncated" not in r.payload for r in rows)


def test_alerts_beyond_the_maximum_are_counted_not_stored() -> None:
    payload = {"status": "firing", "truncatedAlerts": 7, "alerts": [alert(i) for i in range(30)]}
    rows = notification_rows(payload, max_alerts=20, max_bytes=LIMIT)
    assert [r.title for r in rows] == [f"rule {i}" for i in range(20)]
    assert {r.payload["truncatedAlerts"] for r in rows} == {7 + 10}


def test_long_strings_are_cut_to_fit_and_the_payload_says_so() -> None:
    big = "x" * 500_000
    payload = {
        "status": "firing",
        "message": big,  # in the envelope: repeated in every row
        "alerts": [alert(1, annotations={"description": "d" * 200_000}), alert(2)],
    }
    rows = notification_rows(payload, max_alerts=100, max_bytes=LIMIT)
    assert len(rows) == 2
    for row in rows:
        assert size(row) <= LIMIT
        assert row.payload["_truncated"]["strings_cut_to"] > 1000, "cut no more than needed"
        assert row.payload["message"].endswith(MARK)
    first, second = rows
    assert str(first.message).startswith("ddd")
    assert str(first.message).endswith(MARK)
    assert str(second.message).startswith("xxx")
    assert first.payload["alert"]["labels"] == {"alertname": "rule 1"}, "short strings kept"
    assert first.title == "rule 1"


def test_numbers_count_as_jsonb_writes_them() -> None:
    payload = {"status": "firing", "values": [1e99] * 2000}  # 11 kB as sent, 200 kB stored
    assert size(NotificationRow("firing", None, None, None, payload)) > LIMIT
    (row,) = notification_rows(payload, max_alerts=100, max_bytes=LIMIT)
    assert row.payload == {"_truncated": {"strings_cut_to": 0}}, "no string to cut: a stub"
    assert row.status == "firing"


def test_a_payload_too_big_for_cutting_strings_becomes_a_stub() -> None:
    many = {f"k{i}": "v" for i in range(10_000)}
    envelope = {"status": "firing", "title": "T" * 10_000, **many}
    (row,) = notification_rows(envelope, max_alerts=100, max_bytes=LIMIT)
    assert row.payload == {"_truncated": {"strings_cut_to": 0}}
    assert row.title == "T" * 10_000, "the envelope was cut, the row's title fits"

    one = {
        "status": "firing",
        "alerts": [alert(1, labels=many, annotations={"summary": "S" * 10_000})],
    }
    (row,) = notification_rows(one, max_alerts=100, max_bytes=LIMIT)
    assert row.payload == {"_truncated": {"strings_cut_to": 0}}
    assert row.title == "S" * 64 + MARK
    assert size(row) <= LIMIT


# What a body that passed the JSON checks can hold: no lone surrogates (api.body refuses
# them; recent Hypothesis versions generate them now and then).
CHARS = st.characters(exclude_categories=["Cs"])
TEXT = st.text(CHARS, max_size=300) | st.builds(lambda n, c: c * n, st.integers(0, 20_000), CHARS)
KEYS = st.text(CHARS, max_size=8)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | FINITE | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)
ALERT = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved"])},
    optional={
        "labels": st.dictionaries(KEYS, TEXT),
        "annotations": st.dictionaries(KEYS, TEXT),
        "extra": JSON,
    },
)
ALERTS = st.lists(ALERT, max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    envelope=st.dictionaries(KEYS, JSON, max_size=6),
    alerts=ALERTS,
    max_alerts=st.integers(1, 10),
    max_bytes=st.integers(1024, 32 * KiB),
)
def test_every_row_fits(
    envelope: dict[str, Any], alerts: list[dict[str, Any]], max_alerts: int, max_bytes: int
) -> None:
    payload = {**envelope, "status": "firing", "alerts": alerts}
    rows = notification_rows(payload, max_alerts, max_bytes)
    assert len(rows) == max(1, min(len(alerts), max_alerts))
    for row in rows:
        assert size(row) <= max_bytes
    untouched = notification_rows(payload, max_alerts, max_bytes=10**9)
    for row, whole in zip(rows, untouched, strict=True):
        assert (row == whole) == ("_truncated" not in row.payload)


# -- through the API ---------------------------------------------------------------------


def test_a_huge_notification_is_refused_and_a_large_one_stored_bounded(db: str) -> None:
    with client_for(db) as c:
        ten_mb = {"status": "firing", "message": "x" * 10_000_000, "alerts": [alert(1)]}
        r = c.post("/alerts/notifications", json=ten_mb)
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "request body too large: the limit is 1048576 bytes"
        assert query(db, "SELECT count(*) AS n FROM alert_notifications")[0]["n"] == 0

        large = {
            "status": "firing",
            "message": "y" * 900_000,
            "alerts": [alert(i) for i in range(3)],
        }
        r = c.post("/alerts/notifications", json=large)
        assert r.status_code == 201, r.text
        assert r.json() == {"stored": 3, "ids": [1, 2, 3], "alerts_left_out": 0}
        rows = query(db, STORED_SIZE)
        assert all(row["bytes"] <= LIMIT for row in rows), [row["bytes"] for row in rows]
        assert all(row["payload"]["_truncated"]["strings_cut_to"] > 10_000 for row in rows)
        assert [row["title"] for row in rows] == ["rule 0", "rule 1", "rule 2"]

        listed = c.get("/alerts/notifications")
        assert listed.status_code == 200
        assert len(listed.content) < 3 * (LIMIT + 1024)


def test_alerts_over_the_maximum_and_the_listing_limit(db: str) -> None:
    with client_for(db, api_notification_max_alerts=60) as c:
        many = {"status": "firing", "alerts": [alert(i) for i in range(70)]}
        for _ in range(2):
            r = c.post("/alerts/notifications", json=many)
            assert r.status_code == 201, r.text
            assert (r.json()["stored"], r.json()["alerts_left_out"]) == (60, 10)
        rows = query(db, "SELECT payload FROM alert_notifications")
        assert len(rows) == 120
        assert {row["payload"]["truncatedAlerts"] for row in rows} == {10}

        assert len(c.get("/alerts/notifications").json()) == 100, "100 by default"
        assert len(c.get("/alerts/notifications", params={"limit": 1000}).json()) == 120
        r = c.get("/alerts/notifications", params={"limit": 1001})
        assert r.status_code == 422
        assert (
            "query parameter 'limit': Input should be less than or equal to 1000"
            in (r.json()["error"])
        )
        schema = c.get("/openapi.json").json()["paths"]
        (limit,) = [
            p for p in schema["/alerts/notifications"]["get"]["parameters"] if p["name"] == "limit"
        ]
        assert {"type": "integer", "minimum": 1, "maximum": 1000}.items() <= (
            limit["schema"]["anyOf"][0].items()
        )
