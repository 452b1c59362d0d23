"""Parse and validate raw feed messages into ticks; everything refused becomes a Reject.

Pure functions over one :class:`~dataflows.records.RawBatch` at a time. Every reason a
message or trade can be refused has a name (``REASONS``) so that the dead-letter table
can be grouped by it.

No input raises out of :func:`parse_batch`: any text, however long, deep, or strange
(NUL, lone surrogates), and any cell values in a :class:`~dataflows.records.RowBlock`
end as ticks or rejects, and every text field of both can be stored by PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from dataflows.config import ParseConfig  # re-exported: the step and its configuration
from dataflows.records import (
    BACKFILL_SOURCES,
    US,
    RawBatch,
    Reject,
    RowBlock,
    Tick,
    Ticks,
    pg_safe,
    pg_text,
)
from dataflows.times import to_epoch_us

REASONS = (
    "malformed_json",  # not JSON at all, or nested too deep to read
    "malformed_message",  # JSON but not an object, `data` not a list; not text; ragged rows
    "unknown_type",  # a message type we do not handle (or none)
    "feed_error",  # the feed itself reported an error
    "malformed_trade",  # a trade entry that is not an object
    "missing_field",  # a required field is absent or empty
    "bad_symbol",  # the symbol is not a string of 1 to 32 characters
    "non_numeric",  # price, size or time is not a number
    "non_finite",  # NaN or infinity
    "non_positive_price",
    "negative_size",
    "bad_time",  # a time that cannot be read as one
    "implausible_time",  # too far from the stream's clock
    "late",  # its bar closed longer ago than the revision window (decided in dataflows.bars)
    "too_large",  # over ParseConfig.max_message_chars, or more trades than seqs can number
    "bad_text",  # a symbol or condition PostgreSQL cannot store (NUL, a lone surrogate)
    "out_of_range",  # price above ParseConfig.max_price or size above max_size
    "not_subscribed",  # a live feed's trade in a symbol the feed is not subscribed to
    "implausible_price",  # far outside the band of the symbol's recent prices (dataflows.bars)
)
# Trade index bits inside a tick's seq for messages that carry several trades.
TRADE_INDEX_BITS = 10


def arrival_us(seq: int) -> int:
    """When a live trade arrived: its message's seq is the arrival time in microseconds
    (bumped to be unique), shifted left by the trade index bits."""
    return seq >> TRADE_INDEX_BITS


_MAX_TRADES = 1 << TRADE_INDEX_BITS  # more in one message would share seqs with the next
_MAX_SYMBOL = 32
_MAX_PAYLOAD = 65_536  # characters of a reject's payload kept in ticks_rejected
_MAX_DETAIL = 1_000
_NUMBER = (int, float)
_FIELDS = ("s", "p", "t", "v")
_BIG = float(np.finfo(np.float64).max)
_TIME_TYPES = (str, float, dt.date, np.datetime64)


class TickChunk(NamedTuple):
    """Ticks of one symbol from one batch: the unit that flows to the bars step."""

    source: str
    clock_us: int
    ticks: list[Tick]


@dataclass
class Parsed:
    """What one batch yields: ticks by symbol and rejects, plus feed bookkeeping."""

    source: str
    clock_us: int
    by_symbol: dict[str, list[Tick]] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    subscribed: tuple[str, ...] | None = None

    def chunks(self) -> list[tuple[str, TickChunk]]:
        return [(s, TickChunk(self.source, self.clock_us, t)) for s, t in self.by_symbol.items()]

    def last_seen(self) -> dict[str, int]:
        """The newest tick time of each symbol in this batch."""
        return {s: max(t.time_us for t in ticks) for s, ticks in self.by_symbol.items()}


_DEFAULT = ParseConfig()


def parse_batch(batch: RawBatch, config: ParseConfig = _DEFAULT) -> Parsed:
    ctx = _Ctx(batch, config)
    blocks = []
    for seq, payload in batch.messages:
        if not isinstance(payload, RowBlock):
            _parse_message(ctx, seq, payload)
        elif _block_fits(ctx, seq, payload):
            blocks.append(payload)
    if blocks:
        # One vectorized pass over all of them: a symbol filter can split a file's rows
        # into many small blocks.
        _parse_rows(ctx, *_concat(blocks))
    return Parsed(batch.source, batch.clock_us, dict(ctx.by_symbol), ctx.rejects, batch.subscribed)


class _Ctx:
    def __init__(self, batch: RawBatch, config: ParseConfig) -> None:
        self.source = batch.source
        self.clock_us = batch.clock_us
        # A backfilled trade says where it came from (ticks.source); others leave it NULL.
        self.tick_source = batch.source if batch.source in BACKFILL_SOURCES else None
        self.lo_us = batch.clock_us - int(config.max_past_s * US)
        self.hi_us = batch.clock_us + int(config.max_future_s * US)
        self.max_price = config.max_price
        self.max_size = config.max_size
        self.max_chars = config.max_message_chars
        subscribed = batch.subscribed
        self.allowed = (
            None if subscribed is None else frozenset(s for s in subscribed if isinstance(s, str))
        )
        self.ok_symbols: set[str] = set()  # passed every symbol check in this batch
        self.by_symbol: defaultdict[str, list[Tick]] = defaultdict(Ticks)
        self.rejects: list[Reject] = []

    def reject(self, seq: int, symbol: object, reason: str, detail: str, payload: str) -> None:
        """Refuse with every text field storable; the symbol only if it could be one."""
        sym = symbol if isinstance(symbol, str) and 0 < len(symbol) <= _MAX_SYMBOL else None
        sym = None if sym is None else pg_text(sym)
        detail, payload = pg_text(detail, _MAX_DETAIL), pg_text(payload, _MAX_PAYLOAD)
        self.rejects.append(Reject(self.clock_us, self.source, seq, sym, reason, detail, payload))

    def symbol_problem(self, symbol: object) -> tuple[str, str] | None:
        """Why ticks cannot carry this symbol, or None (then it is remembered as good)."""
        if not isinstance(symbol, str) or not 0 < len(symbol) <= _MAX_SYMBOL:
            return "bad_symbol", f"symbol {_show(symbol)}"
        if not pg_safe(symbol):
            return "bad_text", f"symbol {_show(symbol)}: NUL or a lone surrogate"
        if self.allowed is not None and symbol not in self.allowed:
            return "not_subscribed", f"symbol {_show(symbol)} is not subscribed"
        self.ok_symbols.add(symbol)
        return None

    def symbol_ok(self, symbol: str) -> bool:
        return self.symbol_problem(symbol) is None


# -- Finnhub websocket messages ---------------------------------------------------------


def _parse_message(ctx: _Ctx, seq: int, text: object) -> None:
    # A refused message takes its first trade's seq: no reject shares a seq with another.
    first = seq << TRADE_INDEX_BITS
    if not isinstance(text, str):
        if not isinstance(text, bytes | bytearray):
            detail = f"payload is a {type(text).__name__}, not text"
            ctx.reject(first, None, "malformed_message", detail, _show(text, _MAX_PAYLOAD))
            return
        text = bytes(text).decode("utf-8", "surrogateescape")  # bad bytes: bad_text later
    if len(text) > ctx.max_chars:
        detail = f"{len(text):,} characters, more than {ctx.max_chars:,}"
        ctx.reject(first, None, "too_large", detail, text)
        return
    if not _parse_typed(ctx, first, text):
        _parse_json(ctx, first, text)


def _parse_json(ctx: _Ctx, first: int, text: str) -> None:
    """The general path: any JSON, every field checked and every refusal named."""
    try:
        msg = json.loads(text)
    except RecursionError:
        ctx.reject(first, None, "malformed_json", "nested too deep to read", text)
        return
    except ValueError as exc:  # not JSON, or an integer beyond Python's digit limit
        ctx.reject(first, None, "malformed_json", str(exc), text)
        return
    data = _trades(ctx, first, msg, text)
    if data is not None:
        _parse_trades(ctx, first, data, text)


class _Trade(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    s: str
    p: int | float
    t: int
    v: int | float
    c: list[str] | None = None


class _TradeMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    type: str
    data: list[_Trade]


# Stricter than json.loads (no NaN, no lone surrogates, no unknown keys, strict types):
# whatever it decodes, json.loads reads as the same values.
_TYPED = msgspec.json.Decoder(_TradeMessage)
_new_tick = tuple.__new__  # Tick(...) minus its Python-level __new__: pass all 8 fields


def _parse_typed(ctx: _Ctx, first: int, text: str) -> bool:
    """The fast path for a trade message whose every trade is well-formed and passes.
    False (nothing done) for anything else: the general path then names the reasons."""
    try:
        msg = _TYPED.decode(text)
    except Exception:  # not of the schema, lone surrogates, too deep: the general path
        return False
    data = msg.data
    if msg.type != "trade" or len(data) > _MAX_TRADES:
        return False
    lo, hi, max_p, max_v = ctx.lo_us, ctx.hi_us, ctx.max_price, ctx.max_size
    ok, symbol_ok, source = ctx.ok_symbols, ctx.symbol_ok, ctx.tick_source
    ticks = []
    seq = first
    for trade in data:
        s, p, v, c = trade.s, trade.p, trade.v, trade.c
        us = trade.t * 1000
        # Integers too large for a float compare exactly, and fail here.
        if not (0 < p <= max_p and 0 <= v <= max_v and lo <= us <= hi) or not (
            s in ok or symbol_ok(s)
        ):
            return False
        cond = None
        if c:
            cond = ",".join(c)
            if not cond.isascii() or "\x00" in cond:
                return False
        ticks.append(_new_tick(Tick, (us, s, float(p), float(v), seq, cond, False, source)))
        seq += 1
    by_symbol = ctx.by_symbol
    for tick in ticks:
        by_symbol[tick.symbol].append(tick)
    return True


def _trades(ctx: _Ctx, seq: int, msg: object, text: str) -> list[Any] | None:
    """The trade entries of a trade message; None for a ping or a refused message."""
    if not isinstance(msg, dict):
        ctx.reject(seq, None, "malformed_message", "message is not a JSON object", text)
        return None
    kind = msg.get("type")
    if kind == "ping":
        return None
    if kind == "error":
        error = msg.get("msg", "")
        ctx.reject(seq, None, "feed_error", error if isinstance(error, str) else _show(error), text)
        return None
    if kind != "trade":
        ctx.reject(seq, None, "unknown_type", f"message type {_show(kind)}", text)
        return None
    data = msg.get("data")
    if not isinstance(data, list):
        ctx.reject(seq, None, "malformed_message", "trade message without a `data` list", text)
        return None
    if len(data) > _MAX_TRADES:
        detail = f"{len(data):,} trades in one message, at most {_MAX_TRADES:,}"
        ctx.reject(seq, None, "too_large", detail, text)
        return None
    return data


def _parse_trades(ctx: _Ctx, base: int, data: list[Any], text: str) -> None:
    lo, hi, max_p, max_v = ctx.lo_us, ctx.hi_us, ctx.max_price, ctx.max_size
    ok, symbol_ok, by_symbol = ctx.ok_symbols, ctx.symbol_ok, ctx.by_symbol
    source = ctx.tick_source
    for i, trade in enumerate(data):
        # Fast path for the common, well-formed trade; anything unusual (a missing or
        # mistyped field, NaN, inf, a bool, a value out of range, text PostgreSQL cannot
        # store) takes the full checks below, which name the reason. Integers compare
        # exactly with floats, so a huge one cannot overflow here.
        if type(trade) is dict:
            s: Any = trade.get("s")
            p: Any = trade.get("p")
            t: Any = trade.get("t")
            v: Any = trade.get("v")
            if (
                type(s) is str
                and (s in ok or symbol_ok(s))
                and type(p) in _NUMBER
                and type(v) in _NUMBER
                and type(t) is int
                and 0 < p <= max_p
                and 0 <= v <= max_v
                and lo <= t * 1000 <= hi
            ):
                c = trade.get("c")
                try:
                    cond = ",".join(c) if type(c) is list and c else None
                except TypeError:  # a condition that is not a string: the full checks
                    pass
                else:
                    if cond is None or (cond.isascii() and "\x00" not in cond):
                        by_symbol[s].append(
                            Tick(t * 1000, s, float(p), float(v), base + i, cond, False, source)
                        )
                        continue
        _parse_trade(ctx, base + i, trade, text)


def _parse_trade(ctx: _Ctx, seq: int, trade: Any, text: str) -> None:
    if not isinstance(trade, dict):
        detail = "trade entry is not an object"
        ctx.reject(seq, None, "malformed_trade", detail, _dump(trade, text))
        return
    symbol: Any = trade.get("s")
    missing = [k for k in _FIELDS if trade.get(k) in (None, "")]
    if missing:
        detail = f"missing {', '.join(missing)}"
        ctx.reject(seq, symbol, "missing_field", detail, _dump(trade, text))
        return
    problem = _trade_problem(ctx, trade)
    if problem is not None:
        reason, detail = problem
        ctx.reject(
            seq, None if reason == "bad_symbol" else symbol, reason, detail, _dump(trade, text)
        )
        return
    time_us = int(trade["t"]) * 1000
    if not ctx.lo_us <= time_us <= ctx.hi_us:
        detail = f"time {_seconds(time_us - ctx.clock_us)} from the stream clock"
        ctx.reject(seq, symbol, "implausible_time", detail, _dump(trade, text))
        return
    price, size = float(trade["p"]), float(trade["v"])
    tick = Tick(
        time_us, symbol, price, size, seq, _conditions(trade.get("c")), False, ctx.tick_source
    )
    ctx.by_symbol[symbol].append(tick)


def _trade_problem(ctx: _Ctx, trade: dict[str, Any]) -> tuple[str, str] | None:
    """The first reason a trade with all its fields is refused, time window aside."""
    problem = ctx.symbol_problem(trade["s"])
    if problem is not None:
        return problem
    conditions = _conditions(trade.get("c"))
    if conditions is not None and not pg_safe(conditions):
        return "bad_text", "conditions: NUL or a lone surrogate"
    price, size = trade["p"], trade["v"]
    for name, value in (("price", price), ("size", size), ("time", trade["t"])):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "non_numeric", f"{name} {_show(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return "non_finite", f"{name} {value!r}"
    return _check_values(ctx, price, size)


def _check_values(ctx: _Ctx, price: float, size: float) -> tuple[str, str] | None:
    if price <= 0:
        return "non_positive_price", f"price {_show(price)}"
    if size < 0:
        return "negative_size", f"size {_show(size)}"
    if price > ctx.max_price:
        return "out_of_range", f"price {_show(price)} above {ctx.max_price:g}"
    if size > ctx.max_size:
        return "out_of_range", f"size {_show(size)} above {ctx.max_size:g}"
    return None


def _conditions(c: object) -> str | None:
    if not isinstance(c, list) or not c:
        return None
    return ",".join(_condition(x) for x in c)


def _condition(x: object) -> str:
    if isinstance(x, str):
        return x
    return _dump(x) if isinstance(x, list | dict) else str(x)


def _seconds(us: int) -> str:
    s = us / US if abs(us) < 1e300 else (math.inf if us > 0 else -math.inf)
    return f"{s:+.3f} s" if abs(s) < 1e9 else f"{s:+.3g} s"


def _show(value: object, limit: int = 60) -> str:
    """A short repr of an input value, for a detail or a last-resort payload."""
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]
    if isinstance(value, int) and value.bit_length() > 128:  # str() may refuse it
        return f"<an integer of {math.floor(value.bit_length() * math.log10(2)) + 1} digits>"
    try:
        text = repr(value)
    except Exception:  # too deep, or an object whose repr fails
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _dump(obj: object, fallback: str | None = None) -> str:
    """JSON for a reject's payload (``ensure_ascii``: always storable); if ``obj`` has
    none (too deep, integers beyond the digit limit, objects), ``fallback`` or a repr."""
    try:
        return json.dumps(obj, allow_nan=True, default=str)
    except Exception:
        return fallback if fallback is not None else _show(obj, _MAX_PAYLOAD)


# -- replay file rows (vectorized) ------------------------------------------------------


def _block_fits(ctx: _Ctx, seq: int, block: RowBlock) -> bool:
    """Are the block's columns sequences of one length? If not, it is refused whole."""
    try:
        lengths = [len(block.time), len(block.symbol), len(block.price)]
        if block.size is not None:
            lengths.append(len(block.size))
    except TypeError:
        detail = "row block with a column that is not a sequence"
    else:
        if len(set(lengths)) == 1 and isinstance(block.first_seq, int | np.integer):
            return True
        detail = f"row block with columns of lengths {lengths}, first_seq {_show(block.first_seq)}"
    ctx.reject(seq, None, "malformed_message", detail, _show(block, _MAX_PAYLOAD))
    return False


def _concat(blocks: list[RowBlock]) -> tuple[RowBlock, list[int]]:
    """All blocks as one (first_seq unused), with each row's own seq."""
    if len(blocks) == 1:
        b = blocks[0]
        return b, list(range(b.first_seq, b.first_seq + len(b.time)))
    seqs = [b.first_seq + i for b in blocks for i in range(len(b.time))]
    sizes = (
        None if any(b.size is None for b in blocks) else [v for b in blocks for v in b.size or []]
    )
    given = [_given_times(b) for b in blocks]
    times = None if any(g is None for g in given) else [g for g in given if g is not None]
    merged = RowBlock(
        blocks[0].first_seq,
        [v for b in blocks for v in b.time],
        [v for b in blocks for v in b.symbol],
        [v for b in blocks for v in b.price],
        sizes,
        None if times is None else np.concatenate([us for us, _ in times]).tolist(),
        None if times is None else np.concatenate([ok for _, ok in times]).tolist(),
    )
    return merged, seqs


def _given_times(block: RowBlock) -> tuple[np.ndarray, np.ndarray] | None:
    """The times the source already read, if it handed on a usable column of them."""
    if block.time_us is None or block.time_ok is None:
        return None
    try:
        us = np.asarray(block.time_us, dtype=np.int64)
        ok = np.asarray(block.time_ok, dtype=np.bool_)
    except Exception:  # not integers: read the times again
        return None
    n = len(block.time)
    return (us, ok) if us.shape == ok.shape == (n,) else None


def _parse_rows(ctx: _Ctx, block: RowBlock, seqs: list[int]) -> None:
    n = len(block.time)
    times, time_ok = _given_times(block) or _epoch_us(block.time)
    prices = _floats(block.price)
    sizes = np.zeros(n) if block.size is None else _floats(block.size)
    symbols = _symbols(block.symbol)
    reasons = _row_reasons(ctx, block, symbols, times, time_ok, prices, sizes)
    by_symbol = ctx.by_symbol
    rows = zip(seqs, reasons, symbols, times.tolist(), prices.tolist(), sizes.tolist(), strict=True)
    for i, (seq, reason, sym, us, price, size) in enumerate(rows):
        if reason is None:
            by_symbol[sym].append(_new_tick(Tick, (us, sym, price, size, seq, None, False, None)))
        else:
            payload = _row_payload(block, i)
            ctx.reject(seq, block.symbol[i], reason[0], reason[1], payload)


def _symbols(raw: Sequence[object]) -> list[str]:
    """Each cell as a symbol (stripped, upper case), "" if it is not text."""
    done: dict[str, str] = {}  # symbols repeat: normalize each distinct one once
    out = []
    for s in raw:
        if type(s) is str:
            sym = done.get(s)
            if sym is None:
                sym = done[s] = s.strip().upper()
        else:
            sym = s.strip().upper() if isinstance(s, str) else ""
        out.append(sym)
    return out


def _row_reasons(
    ctx: _Ctx,
    block: RowBlock,
    symbols: list[str],
    times: np.ndarray,
    time_ok: np.ndarray,
    prices: np.ndarray,
    sizes: np.ndarray,
) -> list[tuple[str, str] | None]:
    """The first reason each row is refused, or None; checks run vectorized per column."""
    # Symbols repeat: check each distinct one once.
    problems = {
        s: ("missing_field", "missing symbol") if not s else ctx.symbol_problem(s)
        for s in set(symbols)
    }
    out = [problems[s] for s in symbols]

    def mark(mask: np.ndarray, reason: str, detail: str) -> None:
        for i in np.flatnonzero(mask):
            if out[i] is None:
                out[i] = (reason, detail)

    mark(~time_ok, "bad_time", "time is not a timestamp")
    for name, arr, raw in (("price", prices, block.price), ("size", sizes, block.size)):
        if raw is None:
            continue
        missing, nan_text = _why_nan(raw, arr)
        mark(missing, "missing_field", f"missing {name}")
        mark(np.isnan(arr) & ~nan_text, "non_numeric", f"{name} is not a number")
        mark(nan_text | np.isinf(arr), "non_finite", f"{name} is NaN or infinite")
    mark(prices <= 0, "non_positive_price", "price <= 0")
    mark(sizes < 0, "negative_size", "size < 0")
    mark(prices > ctx.max_price, "out_of_range", f"price above {ctx.max_price:g}")
    mark(sizes > ctx.max_size, "out_of_range", f"size above {ctx.max_size:g}")
    mark(
        time_ok & ((times < ctx.lo_us) | (times > ctx.hi_us)),
        "implausible_time",
        "time too far from the stream clock",
    )
    return out


def _why_nan(raw: Sequence[object], arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a column read as NaN, was the cell missing (None, blank) or a NaN itself?
    Only NaN cells are looked at: a missing cell always reads as NaN."""
    missing = np.zeros(len(arr), dtype=np.bool_)
    nan_text = np.zeros(len(arr), dtype=np.bool_)
    for i in np.flatnonzero(np.isnan(arr)).tolist():
        v = raw[i]
        missing[i] = v is None or (isinstance(v, str) and not v.strip())
        nan_text[i] = _numeric_text(v)
    return missing, nan_text


def _floats(raw: Sequence[object]) -> np.ndarray:
    """A column as float64, NaN where a cell is not a number (a bool is not one)."""
    cells = np.fromiter(raw, dtype=object, count=len(raw))
    if infer_dtype(cells, skipna=True) not in ("floating", "string", "empty"):
        cells = np.fromiter(map(_number_cell, cells), dtype=object, count=len(cells))
    series = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce")
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _number_cell(v: Any) -> object:
    """A cell as something ``pd.to_numeric`` reads without raising: text or a float.
    An integer beyond a float's range becomes the largest float of its sign, so the
    range checks still refuse it for what it is."""
    if v is None or isinstance(v, str | bytes | float):
        return v
    if not _real(v):
        return math.nan
    try:
        return float(v)
    except OverflowError:
        return _BIG if v > 0 else -_BIG
    except (ValueError, ArithmeticError):  # a signalling Decimal NaN
        return math.nan


def _real(v: object) -> bool:
    """A real number, bools aside (Python's, numpy's, Decimal, Fraction)?"""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _epoch_us(values: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    try:
        return to_epoch_us(values)
    except Exception:  # a cell it cannot take (an integer beyond any float, ...)
        pass
    cells = [v if isinstance(v, _TIME_TYPES) or _small_int(v) else None for v in values]
    try:
        return to_epoch_us(cells)
    except Exception:
        return np.zeros(len(cells), dtype=np.int64), np.zeros(len(cells), dtype=np.bool_)


def _small_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and -(2**62) < v < 2**62


def _numeric_text(value: object) -> bool:
    """Is this a spelled-out NaN/inf (a number, just not a finite one)?"""
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in {"nan", "+nan", "-nan"}


def _row_payload(block: RowBlock, i: int) -> str:
    row = {"time": block.time[i], "symbol": block.symbol[i], "price": block.price[i]}
    if block.size is not None:
        row["size"] = block.size[i]
    return _dump(row)
