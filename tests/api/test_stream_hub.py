"""The /stream hub without a server: payload parsing, filtering, slow clients."""

from __future__ import annotations

import asyncio
import json

from api.stream import Event, StreamHub, parse_payload


def test_payloads_become_events_with_utc_times() -> None:
    bar = parse_payload(
        json.dumps(
            {"kind": "bar", "symbol": "AAPL", "time": "2024-03-04T09:00:00-05:00", "close": 1.5}
        )
    )
    assert bar == Event(
        "bar",
        "AAPL",
        {"kind": "bar", "symbol": "AAPL", "time": "2024-03-04T14:00:00Z", "close": 1.5},
    )
    alert = parse_payload(
        json.dumps(
            {
                "kind": "price_jump",
                "severity": "warning",
                "symbol": "MSFT",
                "time": "2024-03-04T14:00:00+00:00",
            }
        )
    )
    assert alert is not None
    assert (alert.kind, alert.data["kind"]) == ("alert", "price_jump")
    assert parse_payload("not json") is None
    assert parse_payload("[1, 2]") is None
    assert bar.sse() == f"event: bar\ndata: {json.dumps(bar.data, separators=(',', ':'))}\n\n"


def test_the_hub_filters_and_a_slow_client_loses_its_oldest_events() -> None:
    async def scenario() -> None:
        hub = StreamHub("unused", queue_size=2)
        with hub.subscribe({"AAPL"}, {"bar"}) as only_aapl_bars, hub.subscribe() as everything:
            assert hub.subscribers == 2
            for i in range(3):
                hub.publish(Event("bar", "AAPL", {"i": i}))
            hub.publish(Event("alert", "AAPL", {"i": 9}))
            hub.publish(Event("bar", "MSFT", {"i": 10}))
            assert [only_aapl_bars.queue.get_nowait().data["i"] for _ in range(2)] == [1, 2]
            assert only_aapl_bars.dropped == 1
            assert [everything.queue.get_nowait().data["i"] for _ in range(2)] == [9, 10]
            assert everything.dropped == 3
        assert hub.subscribers == 0

    asyncio.run(scenario())
