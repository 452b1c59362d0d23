"""Property-based fuzzing of the parse step: no input raises, every trade entry and every
file row is accounted for exactly once, and everything emitted is storable and in range.

The last tests write what the parser made of hostile input into the real TimescaleDB.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from typing import Any
from unittest import mock

import numpy as np
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.timescale import TICKS, TICKS_REJECTED, write_rows
from dataflows import parse as parse_module
from dataflows.parse import TRADE_INDEX_BITS, ParseConfig, Parsed, parse_batch
from dataflows.records import RawBatch, RowBlock
from dataflows.times import to_epoch_us
from tests.dataflows.test_parse import CLOCK_MS, CLOCK_US, SUBSCRIBED, assert_storable

CONFIG = ParseConfig()
FUZZ = settings(max_examples=250, deadline=None)
FUZZ_HEAVY = settings(max_examples=200, deadline=None)  # bigger inputs, each slower

# Any character at all: NUL, controls, lone surrogates, astral planes.
chars = st.characters()
texts = st.text(chars, max_size=40)
# Short strings dense in what PostgreSQL refuses, so that some are symbol-sized.
nasty_texts = st.text(st.sampled_from("A\x00\ud800\udfffé😀"), min_size=1, max_size=6)
huge_ints = st.integers(min_value=10**300, max_value=10**500) | st.integers(
    min_value=-(10**500), max_value=-(10**300)
)
numbers = (
    st.integers()
    | huge_ints
    | st.floats()  # NaN, infinities, 1e308, -0.0
    | st.floats(min_value=1e-3, max_value=2e9)
    | st.booleans()
)
json_scalars = st.none() | numbers | texts
any_json = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=8,
)
odd = (
    json_scalars
    | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, True])
    | st.lists(json_scalars, max_size=2)
    | st.dictionaries(texts, json_scalars, max_size=2)
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Good three times in four: hostile values then sit among trades that pass."""
    # Not one_of(good, good, good, bad): one_of flattens nested alternatives, and the
    # many branches of `bad` would outweigh the good.
    return st.integers(0, 3).flatmap(lambda k: good if k else bad)


symbols = mostly(
    st.sampled_from(SUBSCRIBED),
    st.sampled_from(["NOPE", "", " ", "A" * 33]) | nasty_texts | texts | odd,
)
prices = mostly(st.floats(min_value=0.01, max_value=1e4) | st.integers(1, 10**4), odd)
sizes = mostly(st.floats(min_value=0, max_value=1e6) | st.integers(0, 10**6), odd)
times = mostly(
    st.integers(min_value=CLOCK_MS - 10**7, max_value=CLOCK_MS + 50_000),
    st.integers(min_value=CLOCK_MS - 10**9, max_value=CLOCK_MS + 10**6)
    | st.floats(min_value=CLOCK_MS - 1e8, max_value=CLOCK_MS + 1e5)
    | odd,
)
conditions = mostly(
    st.lists(st.sampled_from(["1", "12", "@", "ü"]), max_size=3),
    st.lists(nasty_texts | texts | json_scalars, max_size=3) | odd,
)
trade_shaped = st.fixed_dictionaries(
    {"s": symbols, "p": prices, "t": times, "v": sizes},
    optional={"c": conditions, "x": any_json},
)
trade_entries = mostly(trade_shaped, any_json)


def trade_message(entries: list[Any], ascii_only: bool) -> str:
    return json.dumps({"type": "trade", "data": entries}, ensure_ascii=ascii_only)


def parse(messages: Sequence[tuple[int, Any]], subscribed: bool = True) -> Parsed:
    batch = RawBatch("fuzz", CLOCK_US, messages, SUBSCRIBED if subscribed else None)
    parsed = parse_batch(batch, CONFIG)
    assert_storable(parsed)
    assert_ticks_in_range(parsed, subscribed)
    return parsed


def assert_ticks_in_range(parsed: Parsed, subscribed: bool) -> None:
    lo = CLOCK_US - int(CONFIG.max_past_s * 1e6)
    hi = CLOCK_US + int(CONFIG.max_future_s * 1e6)
    for symbol, ticks in parsed.by_symbol.items():
        assert 0 < len(symbol) <= 32
        assert not subscribed or symbol in SUBSCRIBED
        for t in ticks:
            assert t.symbol == symbol
            assert type(t.price) is float
            assert math.isfinite(t.price)
            assert 0 < t.price <= CONFIG.max_price
            assert type(t.size) is float
            assert math.isfinite(t.size)
            assert 0 <= t.size <= CONFIG.max_size
            assert type(t.time_us) is int
            assert lo <= t.time_us <= hi


def seqs_of(parsed: Parsed) -> list[int]:
    """The seq of every tick and every reject: each one unique, or a row was lost."""
    return [t.seq for ts in parsed.by_symbol.values() for t in ts] + [r.seq for r in parsed.rejects]


@FUZZ
@given(st.lists(st.text(chars, max_size=300), max_size=5))
def test_any_text_is_parsed_or_refused(texts_: list[str]) -> None:
    parse(list(enumerate(texts_)))


@FUZZ
@given(
    st.lists(st.binary(max_size=300), max_size=5), st.sampled_from(["replace", "surrogateescape"])
)
def test_any_bytes_decoded_either_way_are_parsed_or_refused(
    blobs: list[bytes], errors: str
) -> None:
    parse([(i, b.decode("utf-8", errors)) for i, b in enumerate(blobs)])


@FUZZ
@given(any_json, st.booleans())
def test_any_json_message_is_parsed_or_refused(msg: Any, ascii_only: bool) -> None:
    parsed = parse([(0, json.dumps(msg, ensure_ascii=ascii_only))])
    trade = isinstance(msg, dict) and msg.get("type") == "trade"
    data = msg.get("data") if trade else None
    if isinstance(data, list) and data:
        assert len(seqs_of(parsed)) == len(data)
    else:
        assert len(seqs_of(parsed)) <= 1


@FUZZ_HEAVY
@given(
    st.lists(st.lists(trade_entries, max_size=6), min_size=1, max_size=4),
    st.booleans(),
    st.booleans(),
)
def test_every_trade_entry_becomes_exactly_one_tick_or_reject(
    messages: list[list[Any]], ascii_only: bool, subscribed: bool
) -> None:
    texts_ = [(i, trade_message(entries, ascii_only)) for i, entries in enumerate(messages)]
    parsed = parse(texts_, subscribed)

    expected = [(i << TRADE_INDEX_BITS) + j for i, e in enumerate(messages) for j in range(len(e))]
    assert sorted(seqs_of(parsed)) == expected


@FUZZ
@given(st.lists(trade_entries, max_size=6), st.integers(min_value=0, max_value=400))
def test_mutated_messages_are_parsed_or_refused(entries: list[Any], cut: int) -> None:
    """Truncated and spliced texts of real-looking messages: the typical torn frame."""
    text = trade_message(entries, ascii_only=False)
    parse([(0, text[:cut]), (1, text[cut:] + text[:cut]), (2, text.replace('"', "\x00", 1))])


clean_trades = st.fixed_dictionaries(  # what the typed path takes: most of a real feed
    {
        "s": st.sampled_from(SUBSCRIBED),
        "p": st.floats(min_value=0.01, max_value=1e4) | st.integers(1, 10**4),
        "t": st.integers(min_value=CLOCK_MS - 10**7, max_value=CLOCK_MS + 50_000),
        "v": st.floats(min_value=0, max_value=1e6) | st.integers(0, 10**6),
    },
    optional={"c": st.none() | st.lists(st.sampled_from(["1", "12", "@"]), max_size=3)},
)


def json_object(pairs: list[tuple[str, Any]], ascii_only: bool) -> str:
    """An object written key by key, so that a key may come twice (the last one counts)."""
    items = (json.dumps(k, ensure_ascii=ascii_only) + ":" + v for k, v in pairs)
    return "{" + ",".join(items) + "}"


@st.composite
def finnhub_texts(draw: st.DrawFn) -> str:
    """Finnhub-like message texts: mostly well-formed, near misses of every kind."""
    ascii_only = draw(st.booleans())

    def value(v: Any) -> str:
        return json.dumps(v, ensure_ascii=ascii_only)

    def entry() -> str:
        fields = draw(mostly(clean_trades, trade_entries))
        if not isinstance(fields, dict):
            return value(fields)
        pairs = [(k, value(v)) for k, v in fields.items()]
        if draw(st.integers(0, 9)) == 0:  # a key again, with another value
            pairs.append((draw(st.sampled_from("spvtcx")), value(draw(odd))))
        return json_object(draw(st.permutations(pairs)), ascii_only)

    data = "[" + ",".join(entry() for _ in range(draw(st.integers(0, 4)))) + "]"
    kind = mostly(st.just("trade"), st.sampled_from(["ping", "error", "news", ""]) | odd)
    pairs = [("type", value(draw(kind))), ("data", data)]
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(st.sampled_from(["type", "data", "msg"])), value(draw(any_json))))
    return json_object(draw(st.permutations(pairs)), ascii_only)


@FUZZ_HEAVY
@given(st.lists(finnhub_texts(), min_size=1, max_size=4), st.booleans())
def test_the_typed_path_and_the_general_path_agree(texts_: list[str], subscribed: bool) -> None:
    messages = list(enumerate(texts_))
    parsed = parse(messages, subscribed)
    with mock.patch.object(parse_module, "_parse_typed", return_value=False):
        general = parse(messages, subscribed)
    assert parsed == general


cells = (
    json_scalars
    | st.lists(json_scalars, max_size=2)
    | st.datetimes()
    | st.dates()
    | st.decimals()  # sNaN too
    | st.fractions()
    | st.complex_numbers()
    | st.binary(max_size=8)
    | st.just(object())
)
row_times = mostly(st.integers(min_value=CLOCK_MS - 10**7, max_value=CLOCK_MS), cells)
row_symbols = mostly(st.sampled_from(["aapl", " MSFT "]), nasty_texts | texts | cells)
row_numbers = mostly(
    st.floats(min_value=0.01, max_value=1e4) | st.from_regex(r"\A[0-9]{1,4}\.[0-9]{2}\Z"), cells
)


@st.composite
def row_blocks(draw: st.DrawFn, first_seq: int) -> RowBlock:
    n = draw(st.integers(min_value=0, max_value=6))

    def column(cell: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(cell, min_size=n, max_size=n))

    size = None if draw(st.booleans()) else column(row_numbers)
    return RowBlock(first_seq, column(row_times), column(row_symbols), column(row_numbers), size)


@FUZZ_HEAVY
@given(st.data())
def test_every_replay_row_becomes_exactly_one_tick_or_reject(data: st.DataObject) -> None:
    blocks = [data.draw(row_blocks(k * 100)) for k in range(data.draw(st.integers(1, 3)))]
    parsed = parse([(b.first_seq, b) for b in blocks], subscribed=False)

    expected = [b.first_seq + i for b in blocks for i in range(len(b.time))]
    assert sorted(seqs_of(parsed)) == expected


@FUZZ_HEAVY
@given(st.data())
def test_times_handed_on_by_the_source_change_nothing(data: st.DataObject) -> None:
    blocks = [data.draw(row_blocks(k * 100)) for k in range(data.draw(st.integers(1, 3)))]
    given_times = [
        b._replace(time_us=us.tolist(), time_ok=ok.tolist())
        for b in blocks
        for us, ok in [times_of(b)]
    ]
    read_here = parse([(b.first_seq, b) for b in blocks], subscribed=False)
    handed_on = parse([(b.first_seq, b) for b in given_times], subscribed=False)
    assert handed_on == read_here


def times_of(block: RowBlock) -> tuple[np.ndarray, np.ndarray]:
    """What the replay source does: its own reading of the block's times."""
    try:
        return to_epoch_us(block.time)
    except Exception:  # a cell it cannot take: leave the parse step to read them
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_)


# -- into the real database -------------------------------------------------------------

NASTY = [
    "\x00",
    "AA\x00PL",
    "\ud800",
    "\udfff\ud800",
    "\udcff",  # an undecodable byte, surrogate-escaped
    "\\u0000",
    "\\",
    "\t\n\r\x0b\x0c\x1b",
    "\ufeff\ufffe\uffff",
    "\U0010ffff",
    "😀",
    "'; DROP TABLE ticks; --",
    "é" * 40,
    "A" * 33,
]
batch_numbers = itertools.count()


def hostile_messages(strings: list[str], k: int) -> list[tuple[int, str]]:
    """Every string as a raw text, a symbol, a condition and a price; good trades around."""
    good = [{"s": "AAPL", "p": 100.0 + i, "t": CLOCK_MS + i, "v": 1} for i in range(3)]
    entries: list[Any] = [*good]
    for s in strings:
        entries += [{**good[0], "s": s}, {**good[1], "c": [s, "1"]}, {**good[2], "p": s}]
    out = [(k << 20, trade_message(entries[:1000], ascii_only=False))]
    out += [((k << 20) + 1 + i, s) for i, s in enumerate(strings)]
    return out


def store(db: str, parsed: Parsed) -> None:
    ticks = [t for ts in parsed.by_symbol.values() for t in ts]
    assert write_rows(db, TICKS, ticks).rows_written == len(ticks)
    assert write_rows(db, TICKS_REJECTED, parsed.rejects).rows_written == len(parsed.rejects)
    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT seq, symbol, detail, payload FROM ticks_rejected WHERE source = %s",
            [parsed.source],
        ).fetchall()
    assert sorted(stored) == sorted((r.seq, r.symbol, r.detail, r.payload) for r in parsed.rejects)


def test_hostile_strings_are_stored_as_ticks_or_rejects(db: str) -> None:
    parsed = parse_batch(RawBatch("nasty", CLOCK_US, hostile_messages(NASTY, 0)))
    assert parsed.by_symbol["AAPL"], "the good trades around them"
    store(db, parsed)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.text(chars, max_size=40), min_size=1, max_size=8))
def test_fuzzed_strings_are_stored_as_ticks_or_rejects(db: str, strings: list[str]) -> None:
    k = next(batch_numbers) + 1  # distinct seqs and sources: one database for all examples
    parsed = parse_batch(RawBatch(f"fuzz{k}", CLOCK_US, hostile_messages(strings, k)))
    store(db, parsed)
