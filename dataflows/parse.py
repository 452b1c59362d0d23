"""Parse and validate raw feed messages into ticks; everything refused becomes a Reject.

Pure functions over one :class:`~dataflows.records.RawBatch` at a time. Every reason a
message or trade can be refused has a name (``REASONS``) so that the dead-letter table
can be grouped by it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from dataflows.records import US, RawBatch, Reject, RowBlock, Tick

REASONS = (
    "malformed_json",  # not JSON at all
    "malformed_message",  # JSON, but not an object, or `data` not a list
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
    "late",  # older than the bars' late-tick allowance (decided in dataflows.bars)
)
# Trade index bits inside a tick's seq for messages that carry several trades.
TRADE_INDEX_BITS = 10
_MAX_SYMBOL = 32
_NUMBER = (int, float)
_INF = math.inf


@dataclass(frozen=True)
class ParseConfig:
    """How far (seconds) a tick's time may be from the stream's clock."""

    max_future_s: float = 60.0
    max_past_s: float = 86_400.0


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


def parse_batch(batch: RawBatch, config: ParseConfig = ParseConfig()) -> Parsed:
    by_symbol: defaultdict[str, list[Tick]] = defaultdict(list)
    rejects: list[Reject] = []
    lo = batch.clock_us - int(config.max_past_s * US)
    hi = batch.clock_us + int(config.max_future_s * US)
    ctx = _Ctx(batch.source, batch.clock_us, lo, hi, by_symbol, rejects)
    blocks = []
    for seq, payload in batch.messages:
        if isinstance(payload, RowBlock):
            blocks.append(payload)
        else:
            _parse_message(ctx, seq, payload)
    if blocks:
        # One vectorized pass over all of them: a symbol filter can split a file's rows
        # into many small blocks.
        _parse_rows(ctx, *_concat(blocks))
    return Parsed(batch.source, batch.clock_us, dict(by_symbol), rejects, batch.subscribed)


@dataclass
class _Ctx:
    source: str
    clock_us: int
    lo_us: int
    hi_us: int
    by_symbol: defaultdict[str, list[Tick]]
    rejects: list[Reject]

    def reject(self, seq: int, symbol: object, reason: str, detail: str, payload: str) -> None:
        sym = symbol if isinstance(symbol, str) and symbol else None
        self.rejects.append(Reject(self.clock_us, self.source, seq, sym, reason, detail, payload))


# -- Finnhub websocket messages ---------------------------------------------------------


def _parse_message(ctx: _Ctx, seq: int, text: str) -> None:
    try:
        msg = json.loads(text)
    except (ValueError, TypeError) as exc:
        ctx.reject(seq, None, "malformed_json", str(exc), str(text))
        return
    if not isinstance(msg, dict):
        ctx.reject(seq, None, "malformed_message", "message is not a JSON object", text)
        return
    kind = msg.get("type")
    if kind == "ping":
        return
    if kind == "error":
        ctx.reject(seq, None, "feed_error", str(msg.get("msg", "")), text)
        return
    if kind != "trade":
        ctx.reject(seq, None, "unknown_type", f"message type {kind!r}", text)
        return
    data = msg.get("data")
    if not isinstance(data, list):
        ctx.reject(seq, None, "malformed_message", "trade message without a `data` list", text)
        return
    base = seq << TRADE_INDEX_BITS
    lo, hi, by_symbol = ctx.lo_us, ctx.hi_us, ctx.by_symbol
    for i, trade in enumerate(data):
        # Fast path for the common, well-formed trade; anything unusual (a missing or
        # mistyped field, NaN, inf, a bool, a bad value) takes the full checks below,
        # which name the reason.
        if type(trade) is dict:
            s: Any = trade.get("s")
            p: Any = trade.get("p")
            t: Any = trade.get("t")
            v: Any = trade.get("v")
            if (
                type(s) is str
                and 0 < len(s) <= _MAX_SYMBOL
                and type(p) in _NUMBER
                and type(v) in _NUMBER
                and type(t) is int
                and 0 < p < _INF
                and 0 <= v < _INF
                and lo <= t * 1000 <= hi
            ):
                c = trade.get("c")
                cond = ",".join(map(str, c)) if type(c) is list and c else None
                by_symbol[s].append(Tick(t * 1000, s, float(p), float(v), base + i, cond))
                continue
        _parse_trade(ctx, base + i, trade)


def _parse_trade(ctx: _Ctx, seq: int, trade: Any) -> None:
    if not isinstance(trade, dict):
        ctx.reject(seq, None, "malformed_trade", "trade entry is not an object", _dump(trade))
        return
    missing = [k for k in ("s", "p", "t", "v") if trade.get(k) in (None, "")]
    symbol = trade.get("s")
    if missing:
        ctx.reject(seq, symbol, "missing_field", f"missing {', '.join(missing)}", _dump(trade))
        return
    if not isinstance(symbol, str) or len(symbol) > _MAX_SYMBOL:
        ctx.reject(seq, None, "bad_symbol", f"symbol {symbol!r}", _dump(trade))
        return
    price, size, t_ms = trade["p"], trade["v"], trade["t"]
    for name, value in (("price", price), ("size", size), ("time", t_ms)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            ctx.reject(seq, symbol, "non_numeric", f"{name} {value!r}", _dump(trade))
            return
        if not math.isfinite(value):
            ctx.reject(seq, symbol, "non_finite", f"{name} {value!r}", _dump(trade))
            return
    reason = _check_values(price, size)
    if reason:
        ctx.reject(seq, symbol, reason[0], reason[1], _dump(trade))
        return
    time_us = int(t_ms) * 1000
    if not ctx.lo_us <= time_us <= ctx.hi_us:
        detail = f"time {time_us / US - ctx.clock_us / US:+.3f} s from the stream clock"
        ctx.reject(seq, symbol, "implausible_time", detail, _dump(trade))
        return
    cond = trade.get("c")
    conditions = ",".join(map(str, cond)) if isinstance(cond, list) and cond else None
    ctx.by_symbol[symbol].append(Tick(time_us, symbol, float(price), float(size), seq, conditions))


def _check_values(price: float, size: float) -> tuple[str, str] | None:
    if price <= 0:
        return "non_positive_price", f"price {price!r}"
    if size < 0:
        return "negative_size", f"size {size!r}"
    return None


def _dump(obj: Any) -> str:
    try:
        return json.dumps(obj, allow_nan=True, default=str)
    except (TypeError, ValueError):
        return repr(obj)


# -- replay file rows (vectorized) ------------------------------------------------------


def _concat(blocks: list[RowBlock]) -> tuple[RowBlock, list[int]]:
    """All blocks as one (first_seq unused), with each row's own seq."""
    if len(blocks) == 1:
        b = blocks[0]
        return b, list(range(b.first_seq, b.first_seq + len(b.time)))
    seqs = [b.first_seq + i for b in blocks for i in range(len(b.time))]
    sizes = (
        None if any(b.size is None for b in blocks) else [v for b in blocks for v in b.size or []]
    )
    merged = RowBlock(
        blocks[0].first_seq,
        [v for b in blocks for v in b.time],
        [v for b in blocks for v in b.symbol],
        [v for b in blocks for v in b.price],
        sizes,
    )
    return merged, seqs


def _parse_rows(ctx: _Ctx, block: RowBlock, seqs: list[int]) -> None:
    from connectors.replay import to_epoch_us

    n = len(block.time)
    times, time_ok = to_epoch_us(block.time)
    price_raw = pd.to_numeric(pd.Series(block.price, dtype=object), errors="coerce")
    prices = price_raw.to_numpy(dtype=np.float64, na_value=np.nan)
    if block.size is None:
        sizes = np.zeros(n)
    else:
        size_series = pd.Series(block.size, dtype=object)
        sizes = pd.to_numeric(size_series, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    symbols = block.symbol
    reasons = _row_reasons(ctx, block, times, time_ok, prices, sizes)
    for i in range(n):
        seq = seqs[i]
        reason = reasons[i]
        if reason is not None:
            payload = _row_payload(block, i)
            ctx.reject(seq, symbols[i], reason[0], reason[1], payload)
            continue
        sym = str(symbols[i]).strip().upper()
        ctx.by_symbol[sym].append(
            Tick(int(times[i]), sym, float(prices[i]), float(sizes[i]), seq, None)
        )


def _row_reasons(
    ctx: _Ctx,
    block: RowBlock,
    times: np.ndarray,
    time_ok: np.ndarray,
    prices: np.ndarray,
    sizes: np.ndarray,
) -> list[tuple[str, str] | None]:
    """The first reason each row is refused, or None; checks run vectorized per column."""
    n = len(times)
    out: list[tuple[str, str] | None] = [None] * n

    def mark(mask: np.ndarray, reason: str, detail: str) -> None:
        for i in np.flatnonzero(mask):
            if out[i] is None:
                out[i] = (reason, detail)

    mark(
        np.array([not (isinstance(s, str) and s.strip()) for s in block.symbol], dtype=bool),
        "missing_field",
        "missing symbol",
    )
    mark(
        np.array([isinstance(s, str) and len(s) > _MAX_SYMBOL for s in block.symbol], dtype=bool),
        "bad_symbol",
        "symbol longer than 32 characters",
    )
    mark(~time_ok, "bad_time", "time is not a timestamp")
    for name, arr, raw in (("price", prices, block.price), ("size", sizes, block.size)):
        if raw is None:
            continue
        missing = np.array([v is None or (isinstance(v, str) and not v.strip()) for v in raw])
        mark(missing, "missing_field", f"missing {name}")
        non_finite = np.isnan(arr) & np.array([_numeric_text(v) for v in raw], dtype=bool)
        mark(np.isnan(arr) & ~non_finite, "non_numeric", f"{name} is not a number")
        mark(non_finite | np.isinf(arr), "non_finite", f"{name} is NaN or infinite")
    mark(prices <= 0, "non_positive_price", "price <= 0")
    mark(sizes < 0, "negative_size", "size < 0")
    mark(time_ok & ((times < ctx.lo_us) | (times > ctx.hi_us)), "implausible_time",
         "time too far from the stream clock")  # fmt: skip
    return out


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
