"""Every class of bad input is refused with its reason; the good trades around it pass."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from dataflows import parse as parse_module
from dataflows.parse import REASONS, TRADE_INDEX_BITS, ParseConfig, Parsed, parse_batch
from dataflows.records import RawBatch, RowBlock, pg_safe, pg_text

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


# -- hostile input: each class that once crashed the pipeline, between good trades ------

SUBSCRIBED = ("AAPL", "MSFT")


def assert_storable(parsed: Parsed) -> None:
    """Every text field of every tick and reject can go into a PostgreSQL text column."""
    for r in parsed.rejects:
        for text in (r.source, r.reason, r.detail, r.payload, r.symbol or ""):
            assert pg_safe(text), (r.reason, text[:80])
        assert r.reason in REASONS
    for symbol, ticks in parsed.by_symbol.items():
        assert pg_safe(symbol)
        assert all(t.conditions is None or pg_safe(t.conditions) for t in ticks)


def deep(n: int) -> str:
    return '{"type": "trade", "data": ' + "[" * n + "]" * n + "}"


HOSTILE_MESSAGES = {  # name: (text, reason)
    "nested_5000_deep": (deep(5000), "malformed_json"),
    "nul_in_non_json_text": ("connection reset\x00\x00", "malformed_json"),
    "lone_surrogate_in_non_json_text": ("\ud800 not json", "malformed_json"),
    "raw_nul_in_a_json_string": ('{"type": "trade", "data": [{"s": "A\x00"}]}', "malformed_json"),
    "too_large": (message(trade()) + " " * 1_000_000, "too_large"),
    "too_many_trades": (message(*[trade()] * 1025), "too_large"),
}
HOSTILE_TRADES = {  # name: (trade, reason)
    "int_price_400_digits": (trade(p=10**400), "out_of_range"),
    "int_size_400_digits": (trade(v=10**400), "out_of_range"),
    "int_time_400_digits": (trade(t=10**400), "implausible_time"),
    "negative_int_time_400_digits": (trade(t=-(10**400)), "implausible_time"),
    "negative_int_price_400_digits": (trade(p=-(10**400)), "non_positive_price"),
    "price_1e308": (trade(p=1e308), "out_of_range"),
    "size_1e300": (trade(v=1e300), "out_of_range"),
    "bool_price": (trade(p=True), "non_numeric"),
    "escaped_nul_in_symbol": (trade(s="AA\x00PL"), "bad_text"),  # json.dumps writes \u0000
    "escaped_lone_surrogate_in_symbol": (trade(s="\ud800"), "bad_text"),
    "nul_in_condition": ({**trade(), "c": ["1", "\x00"]}, "bad_text"),
    "lone_surrogate_in_condition": ({**trade(), "c": ["\udfff"]}, "bad_text"),
    "unsubscribed_symbol": (trade(s="NOPE"), "not_subscribed"),
}


def between_good_trades(bad: list[tuple[int, str]]) -> tuple[RawBatch, int]:
    """``bad`` messages after, between and before good ones; the batch and its good count."""
    goods = [trade(s=s, p=100.0 + i, t=CLOCK_MS + i) for i, s in enumerate(SUBSCRIBED * 3)]
    messages = [(1000, message(goods[0], goods[1])), *bad, (2000, message(*goods[2:]))]
    return RawBatch("finnhub", CLOCK_US, messages, SUBSCRIBED), len(goods)


@pytest.mark.parametrize("name", HOSTILE_MESSAGES)
def test_a_hostile_message_is_refused_and_the_good_trades_around_it_pass(name: str) -> None:
    text, reason = HOSTILE_MESSAGES[name]
    batch, good = between_good_trades([(7, text)])

    parsed = parse_batch(batch)

    assert sum(map(len, parsed.by_symbol.values())) == good
    assert [(r.reason, r.seq) for r in parsed.rejects] == [(reason, 7 << TRADE_INDEX_BITS)]
    assert_storable(parsed)
    assert len(parsed.rejects[0].payload) < 70_000, "long payloads are cut"


@pytest.mark.parametrize("name", HOSTILE_TRADES)
def test_a_hostile_trade_is_refused_and_the_good_trades_around_it_pass(name: str) -> None:
    bad, reason = HOSTILE_TRADES[name]
    for text in (
        message(trade(), bad, trade()),
        json.dumps({"type": "trade", "data": [trade(), bad, trade()]}, ensure_ascii=False),
    ):
        # ensure_ascii=False writes NUL as \u0000 still, but a lone surrogate raw.
        batch, good = between_good_trades([(7, text)])

        parsed = parse_batch(batch)

        assert sum(map(len, parsed.by_symbol.values())) == good + 2
        assert [(r.reason, r.seq) for r in parsed.rejects] == [
            (reason, (7 << TRADE_INDEX_BITS) + 1)
        ]
        assert_storable(parsed)


def test_a_rejected_symbol_is_stored_escaped_and_the_payload_keeps_what_came() -> None:
    batch, _ = between_good_trades([(7, message(trade(s="AA\x00PL")))])
    (r,) = parse_batch(batch).rejects
    assert (r.reason, r.symbol) == ("bad_text", "AA\\u0000PL")
    assert json.loads(r.payload)["s"] == "AA\x00PL"
    assert "symbol" in r.detail

    raw = "\ud800 \x00 not json"
    batch, _ = between_good_trades([(8, raw)])
    (r,) = parse_batch(batch).rejects
    assert r.payload == "\\ud800 \\u0000 not json"


def test_deep_nesting_says_so() -> None:
    batch, _ = between_good_trades([(7, deep(5000))])
    (r,) = parse_batch(batch).rejects
    assert "too deep" in r.detail


def test_without_a_subscription_list_every_symbol_is_taken() -> None:
    batch = RawBatch("replay", CLOCK_US, [(0, message(trade(s="NOPE"), trade()))])
    parsed = parse_batch(batch)
    assert sorted(parsed.by_symbol) == ["AAPL", "NOPE"]
    assert parsed.rejects == []


def test_limits_are_configurable() -> None:
    config = ParseConfig(max_price=500.0, max_size=10.0, max_message_chars=400)
    text = message(trade(p=500.0, v=10), trade(p=500.5), trade(v=10.5))
    parsed = parse_batch(RawBatch("f", CLOCK_US, [(0, text), (1, "x" * 401)]), config)
    assert [t.price for t in parsed.by_symbol["AAPL"]] == [500.0]
    assert [r.reason for r in parsed.rejects] == ["out_of_range", "out_of_range", "too_large"]
    with pytest.raises(ValueError, match="max_price"):
        ParseConfig(max_price=float("inf"))


def test_non_text_payloads() -> None:
    good = message(trade()).encode()
    batch = RawBatch("f", CLOCK_US, [(0, good), (1, b"\xff\xfe"), (2, None)])  # type: ignore[list-item]
    parsed = parse_batch(batch)
    assert len(parsed.by_symbol["AAPL"]) == 1
    assert [r.reason for r in parsed.rejects] == ["malformed_json", "malformed_message"]
    assert parsed.rejects[0].payload == "\\udcff\\udcfe"  # the bytes, still recognisable
    assert_storable(parsed)


def test_conditions_that_are_not_strings_are_kept_as_text() -> None:
    text = message({**trade(), "c": [1, 12]}, {**trade(), "c": ["ü", "1"]})
    ticks = parse_batch(RawBatch("f", CLOCK_US, [(0, text)])).by_symbol["AAPL"]
    assert [t.conditions for t in ticks] == ["1,12", "ü,1"]


def test_hostile_replay_rows_are_refused_row_by_row() -> None:
    rows = [  # (time, symbol, price, size, reason or None)
        (CLOCK_MS / 1000, "aapl", "190.5", 10, None),
        (10**400, "AAPL", 1.0, 1, "bad_time"),
        (CLOCK_MS / 1000, "AA\x00PL", 1.0, 1, "bad_text"),
        (CLOCK_MS / 1000, "\udc80", 1.0, 1, "bad_text"),
        (CLOCK_MS / 1000, "AAPL", 10**400, 1, "out_of_range"),
        (CLOCK_MS / 1000, "AAPL", 1e308, 1, "out_of_range"),
        (CLOCK_MS / 1000, "AAPL", True, 1, "non_numeric"),
        (CLOCK_MS / 1000, "AAPL", 1.0, -(10**400), "negative_size"),
        (CLOCK_MS / 1000, "AAPL", {"p": 1}, 1, "non_numeric"),
        (CLOCK_MS / 1000, ["AAPL"], 1.0, 1, "missing_field"),
        (CLOCK_MS / 1000, "MSFT", 2.0, 3.0, None),
    ]
    block = RowBlock(50, *map(list, zip(*[r[:4] for r in rows], strict=True)))
    ragged = RowBlock(90, [1, 2], ["AAPL"], [1.0, 2.0], None)
    parsed = parse_batch(RawBatch("file", CLOCK_US, [(50, block), (90, ragged)]))

    ticks = [t for ts in parsed.by_symbol.values() for t in ts]
    assert [(t.symbol, t.price, t.seq) for t in ticks] == [("AAPL", 190.5, 50), ("MSFT", 2.0, 60)]
    got = {r.seq: r.reason for r in parsed.rejects}
    want = {50 + i: r[4] for i, r in enumerate(rows) if r[4] is not None}
    assert got == {**want, 90: "malformed_message"}
    assert_storable(parsed)


def test_a_well_formed_trade_message_takes_the_typed_path_alone() -> None:
    text = json.dumps({"data": [trade(), {**trade(s="MSFT"), "c": None}], "type": "trade"})
    with mock.patch.object(parse_module, "_parse_json", side_effect=AssertionError):
        parsed = parse_batch(RawBatch("finnhub", CLOCK_US, [(3, text)], SUBSCRIBED))
    assert [(s, t.seq, t.conditions) for s, ts in parsed.by_symbol.items() for t in ts] == [
        ("AAPL", 3 << TRADE_INDEX_BITS, "1"),
        ("MSFT", (3 << TRADE_INDEX_BITS) + 1, None),
    ]


def test_times_read_by_the_source_are_not_read_again() -> None:
    times = [CLOCK_MS + 1, "not read", CLOCK_MS + 3]
    valid = [True, False, True]
    block = RowBlock(0, times, ["AAPL"] * 3, [1.0] * 3, None, [CLOCK_US + 5, 0, 7], valid)
    parsed = parse_batch(RawBatch("file", CLOCK_US, [(0, block)]))
    assert [t.time_us for t in parsed.by_symbol["AAPL"]] == [CLOCK_US + 5]
    assert [(r.seq, r.reason) for r in parsed.rejects] == [(1, "bad_time"), (2, "implausible_time")]
    # Unusable times handed on (the wrong length, not integers) are read again.
    for us, ok in (([1], [True]), (["x"] * 3, [True] * 3)):
        block = RowBlock(0, times, ["AAPL"] * 3, [1.0] * 3, None, us, ok)  # type: ignore[arg-type]
        parsed = parse_batch(RawBatch("file", CLOCK_US, [(0, block)]))
        assert [t.time_us for t in parsed.by_symbol["AAPL"]] == [CLOCK_US + 1000, CLOCK_US + 3000]


def test_pg_text_escapes_only_what_postgresql_cannot_store() -> None:
    clean = "AAPL, 1.5, café ☕ \t\n"
    assert pg_text(clean) is clean
    assert pg_safe(clean)
    assert pg_text("a\x00b") == "a\\u0000b"
    assert pg_text("a\ud800b\udfff") == "a\\ud800b\\udfff"
    assert pg_text("é\x00\ud83d") == "é\\u0000\\ud83d"
    assert not pg_safe("a\x00")
    assert not pg_safe("\ud800")
    cut = pg_text("x" * 100_000, max_chars=65_536)
    assert cut.startswith("x" * 65_536)
    assert cut.endswith("[cut: 100,000 characters in all]")
    for s in ("a\x00b", "\ud800", "é\x00\ud83d", "x" * 10):
        assert pg_safe(pg_text(s))
        pg_text(s).encode("utf-8")
