"""Every class of bad input is refused with its reason; the good trades around it pass."""

from __future__ import annotations

import json

import pytest

from dataflows.parse import REASONS, TRADE_INDEX_BITS, ParseConfig, parse_batch
from dataflows.records import RawBatch

CLOCK_MS = 1_700_000_000_000
CLOCK_US = CLOCK_MS * 1000


def trade(s: object = "AAPL", p: object = 190.5, t: object = CLOCK_MS, v: object = 100) -> dict:
    return {"s": s, "p": p, "t": t, "v": v, "c": ["1"]}


def message(*trades: object) -> str:
    return json.dumps({"type": "trade", "data": list(trades)})


BAD_MESSAGES = {
    "malformed_json": '{"type": "trade", "data": [',
    "malformed_message": "[1, 2, 3]",
    "unknown_type": json.dumps({"type": "news", "data": []}),
    "feed_error": json.dumps({"type": "error", "msg": "Invalid symbol"}),
}
BAD_TRADES = {
    "malformed_trade": "not a trade",
    "missing_field": {"s": "AAPL", "p": 1.0, "v": 1},  # no t
    "bad_symbol": trade(s=12345),
    "non_numeric": trade(p="190.5"),
    "non_finite": trade(p=float("nan")),
    "non_positive_price": trade(p=0),
    "negative_size": trade(v=-5),
    "implausible_time": trade(t=CLOCK_MS + 3_600_000),
}


def test_each_bad_input_is_rejected_with_its_reason_and_good_trades_survive() -> None:
    messages: list[tuple[int, str]] = []
    seq = 0
    for text in BAD_MESSAGES.values():
        messages.append((seq, text))
        seq += 1
        messages.append((seq, message(trade(p=100.0 + seq, t=CLOCK_MS + seq))))
        seq += 1
    for bad in BAD_TRADES.values():
        good_before = trade(p=200.0 + seq, t=CLOCK_MS + seq)
        good_after = trade(s="MSFT", p=300.0 + seq, t=CLOCK_MS + seq)
        # json.dumps writes NaN as the bare token NaN, as some feeds really do.
        messages.append((seq, message(good_before, bad, good_after)))
        seq += 1
    messages.append((seq, json.dumps({"type": "ping"})))

    parsed = parse_batch(RawBatch("finnhub", CLOCK_US, messages))

    reasons = [r.reason for r in parsed.rejects]
    assert sorted(reasons) == sorted([*BAD_MESSAGES, *BAD_TRADES])
    assert set(reasons) <= set(REASONS)
    ticks = [t for ts in parsed.by_symbol.values() for t in ts]
    assert len(ticks) == len(BAD_MESSAGES) + 2 * len(BAD_TRADES)
    for r in parsed.rejects:
        assert r.source == "finnhub"
        assert r.received_us == CLOCK_US
        assert r.payload
    by_reason = {r.reason: r for r in parsed.rejects}
    assert by_reason["malformed_json"].payload == BAD_MESSAGES["malformed_json"]
    assert json.loads(by_reason["negative_size"].payload)["v"] == -5
    assert by_reason["missing_field"].detail == "missing t"


def test_ticks_carry_exact_values_and_unique_seqs() -> None:
    text = message(trade(p=190.25, v=3, t=CLOCK_MS + 7), trade(p=190.5, v=1, t=CLOCK_MS + 7))
    parsed = parse_batch(RawBatch("finnhub", CLOCK_US, [(42, text)]))
    ticks = parsed.by_symbol["AAPL"]
    assert [(t.time_us, t.price, t.size, t.conditions) for t in ticks] == [
        (CLOCK_US + 7000, 190.25, 3.0, "1"),
        (CLOCK_US + 7000, 190.5, 1.0, "1"),
    ]
    assert [t.seq for t in ticks] == [42 << TRADE_INDEX_BITS, (42 << TRADE_INDEX_BITS) + 1]


@pytest.mark.parametrize(
    ("offset_s", "ok"), [(-86_399, True), (-86_401, False), (59, True), (61, False)]
)
def test_plausibility_window(offset_s: int, ok: bool) -> None:
    text = message(trade(t=CLOCK_MS + offset_s * 1000))
    parsed = parse_batch(RawBatch("finnhub", CLOCK_US, [(0, text)]), ParseConfig())
    assert bool(parsed.by_symbol) is ok
    assert [r.reason for r in parsed.rejects] == ([] if ok else ["implausible_time"])
