"""A deterministic market simulator: per-symbol trade streams, as Finnhub would send them.

Each symbol's trades follow a small but realistic model, generated in event time:

- arrivals are Poisson with a per-symbol rate (a few trades a second by default), faster
  in the turbulent regime;
- the log price is a random walk whose volatility is itself random (a mean-reverting
  log-volatility process), switches between a calm and a turbulent regime (a two-state
  Markov chain, so volatility spikes really happen), and jumps now and then (compound
  Poisson);
- sizes are heavy-tailed (Pareto), whole shares, at least one;
- prices start from a realistic level for well-known tickers and from a stable
  hash-derived level otherwise, and are rounded to cents;
- a symbol may follow a market calendar (:class:`MarketHours`): full rate in the regular
  session, a tenth of it (``SimParams.extended_rate``) in the extended hours around it,
  flagged with Finnhub's Form T condition, and nothing at night, at weekends and on
  holidays; its price then moves in trading time (volatility scales with the rate), so
  a closed night adds no variance. Without a calendar a symbol trades around the clock.

A symbol's stream depends only on ``(seed, symbol, start time, calendar)``: its random numbers come
from its own numpy ``Generator`` seeded by the seed, a stable hash of the symbol and the
time it was added, and it is generated in fixed blocks of event time, so neither the
other symbols nor the way :meth:`TickGenerator.advance` is called change it.

:class:`SimulatorSource` wraps the generator as a Bytewax source emitting
:class:`~dataflows.records.RawBatch` records of Finnhub trade messages, as fast as
possible (a replay of simulated history) or paced by the wall clock (a live feed).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from typing_extensions import override

from dataflows.records import US, RawBatch, RowBlock, wall_clock_us
from dataflows.sessions import ALWAYS, market_calendar, normalize

__all__ = [
    "EXTENDED_HOURS_CONDITION",
    "ODD_LOT_CONDITION",
    "MarketHours",
    "SimParams",
    "SimulatorSource",
    "Spike",
    "TickGenerator",
    "Trade",
    "finnhub_trade_message",
    "market_hours",
    "start_price",
    "trade_json",
    "wall_clock_us",
]

TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
STEP_US = US  # volatility, regime and intensity are constant over one step
# A symbol's stream is generated one block of steps at a time, long enough to hold a few
# hundred trades (numpy pays per call) and no longer (nobody waits for a busy symbol).
MIN_BLOCK_STEPS = 1
MAX_BLOCK_STEPS = 3600
BLOCK_TRADES = 500
# At most this many trades per message: the parser numbers a message's trades with 10 bits.
MAX_MESSAGE_TRADES = 1000

# Rough price levels and relative volatilities of well-known tickers.
KNOWN_SYMBOLS: Mapping[str, tuple[float, float]] = {
    "AAPL": (190.0, 1.0),
    "MSFT": (415.0, 0.9),
    "NVDA": (120.0, 1.8),
    "AMZN": (185.0, 1.2),
    "GOOGL": (170.0, 1.1),
    "GOOG": (172.0, 1.1),
    "META": (500.0, 1.4),
    "TSLA": (240.0, 2.0),
    "AMD": (160.0, 1.7),
    "NFLX": (650.0, 1.3),
    "INTC": (30.0, 1.3),
    "JPM": (200.0, 0.8),
    "BRK.B": (410.0, 0.6),
    "V": (275.0, 0.7),
    "XOM": (115.0, 0.9),
    "SPY": (520.0, 0.5),
    "QQQ": (445.0, 0.6),
    "IWM": (205.0, 0.7),
    "DIA": (390.0, 0.5),
}

# Finnhub's US trade condition codes, as its websocket sends them: every trade carries
# "1"; a trade under a round lot of 100 shares adds "12" (odd lot); a trade outside the
# regular session adds "24" (Form T, extended hours) before it, e.g. ["1", "24", "12"].
ODD_LOT_CONDITION = "12"
EXTENDED_HOURS_CONDITION = "24"
_REGULAR = ("1",)
_ODD_LOT = ("1", ODD_LOT_CONDITION)
_EXTENDED = ("1", EXTENDED_HOURS_CONDITION)
_EXTENDED_ODD_LOT = ("1", EXTENDED_HOURS_CONDITION, ODD_LOT_CONDITION)


class Trade(NamedTuple):
    """One simulated trade, with Finnhub's fields: ``time_ms`` is epoch milliseconds."""

    symbol: str
    price: float
    time_ms: int
    volume: int
    conditions: tuple[str, ...] | None


class Spike(NamedTuple):
    """An injected volatility spike: every price move of ``symbol`` (diffusion and jumps)
    from ``start_us`` for ``duration_us`` is multiplied by ``factor``. It changes no random
    draw, so the same seed with and without the spike gives the same trades outside it."""

    symbol: str
    start_us: int
    duration_us: int
    factor: float


@dataclass(frozen=True)
class SimParams:
    """The simulator's model. Rates are per second, volatilities per unit of log price.

    ``annual_vol`` is the calm-regime volatility annualized over trading time (252 days
    of 6.5 hours); a symbol from :data:`KNOWN_SYMBOLS` scales it by its own factor.
    ``calm_mean_s``/``turbulent_mean_s`` are the mean regime durations (``math.inf`` for
    calm only); the turbulent regime multiplies volatility, trade rate and jump rate by
    ``turbulent_vol``, ``turbulent_rate`` and ``turbulent_jumps``. Jumps add a normal
    log-price move of std ``jump_std``. Sizes are ``floor(size_scale * X)``, X Pareto with
    index ``size_alpha``, capped at ``max_size``. A symbol on a market calendar trades at
    ``extended_rate`` times its rate in extended hours (and its price moves as slowly).
    """

    rate: float = 4.0
    annual_vol: float = 0.35
    vol_of_vol: float = 0.3
    vol_halflife_s: float = 300.0
    calm_mean_s: float = 1200.0
    turbulent_mean_s: float = 120.0
    turbulent_vol: float = 3.0
    turbulent_rate: float = 2.0
    jumps_per_hour: float = 2.0
    turbulent_jumps: float = 5.0
    jump_std: float = 0.004
    # 1 - (100 / 50) ** -1.1: 53% of trades are odd lots (under 100 shares), about the
    # share of US equity trades since 2022 (it was 92% at 10, and under the tape's rules
    # odd lots set no prices: a fifth of 1 s bars had none).
    size_scale: float = 50.0
    size_alpha: float = 1.1
    max_size: int = 500_000
    extended_rate: float = 0.1

    def __post_init__(self) -> None:
        if self.calm_mean_s <= 0 or self.turbulent_mean_s <= 0 or self.vol_halflife_s <= 0:
            raise ValueError("regime durations and the volatility half-life must be positive")
        if self.rate < 0 or self.size_alpha <= 0 or self.size_scale < 1:
            raise ValueError("rate must be >= 0, size_alpha > 0 and size_scale >= 1")
        if not 0.0 <= self.extended_rate <= 1.0:
            raise ValueError("extended_rate must be in [0, 1]")


def stable_hash(symbol: str) -> int:
    """A 64-bit hash of ``symbol`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "big")


def start_price(symbol: str) -> float:
    """A plausible starting price: from :data:`KNOWN_SYMBOLS`, else hash-derived in
    [$5, $500), log-uniformly."""
    known = KNOWN_SYMBOLS.get(symbol)
    if known is not None:
        return known[0]
    u = (stable_hash(symbol) >> 11) / float(1 << 53)
    return round(5.0 * 100.0**u, 2)


def _vol_scale(symbol: str) -> float:
    known = KNOWN_SYMBOLS.get(symbol)
    return 1.0 if known is None else known[1]


# -- market hours ------------------------------------------------------------------------

PRE_MARKET_FROM = time(4, 0)  # local time, as US exchanges run it
AFTER_HOURS_UNTIL = time(20, 0)
CLOSED, EXTENDED, REGULAR = 0, 1, 2
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class MarketHours:
    """When a calendar's market trades: its regular sessions (from
    :func:`dataflows.sessions.market_calendar`, holidays and early closes included) and
    the extended hours around each, pre-market from 04:00 local time to the open and
    after hours from the close to 20:00 local time (US hours; other markets get the same
    local hours), as arrays of microseconds.

    >>> nyse = market_hours("XNYS")
    >>> t = 1_720_008_000_000_000  # 2024-07-03 08:00 New York
    >>> [int(x) for x in nyse.phase([t, t + 6 * 3600 * US, t + 14 * 3600 * US])]
    [1, 1, 0]
    >>> nyse.status(t)
    'XNYS is closed (pre-market; opens Wed 2024-07-03 09:30 America/New_York)'
    """

    def __init__(self, calendar: str) -> None:
        cal = market_calendar(calendar)
        self.name, self.tz = cal.name, cal.tz
        self.opens, self.closes = cal.opens, cal.closes
        zone = ZoneInfo(cal.tz)

        def local_us(day: date, at: time) -> int:
            return (datetime.combine(day, at, zone) - _EPOCH) // timedelta(microseconds=1)

        pre = np.array([local_us(d, PRE_MARKET_FROM) for d in cal.dates], dtype=np.int64)
        post = np.array([local_us(d, AFTER_HOURS_UNTIL) for d in cal.dates], dtype=np.int64)
        self.pre_opens = np.minimum(pre, self.opens)
        self.post_closes = np.maximum(post, self.closes)

    def __repr__(self) -> str:
        return f"market_hours({self.name!r})"

    def phase(self, times_us: Sequence[int] | np.ndarray) -> np.ndarray:
        """Per time: :data:`REGULAR`, :data:`EXTENDED` or :data:`CLOSED` (int8)."""
        t = np.asarray(times_us, dtype=np.int64)
        i = np.searchsorted(self.closes, t, side="right")  # the session closing after t
        if t.size and (i.max() >= len(self.closes) or t.min() < self.pre_opens[0]):
            raise ValueError(f"a time outside the {self.name} calendar's years")
        out = np.zeros(t.shape, dtype=np.int8)
        out[t >= self.pre_opens[i]] = EXTENDED
        out[t >= self.opens[i]] = REGULAR
        after = (i > 0) & (t < self.post_closes[np.maximum(i - 1, 0)]) & (out == CLOSED)
        out[after] = EXTENDED
        return out

    def activity(self, times_us: Sequence[int] | np.ndarray, extended_rate: float) -> np.ndarray:
        """Per time, the share of the full trade rate: 1, ``extended_rate`` or 0."""
        return np.array([0.0, extended_rate, 1.0])[self.phase(times_us)]

    def status(self, t_us: int) -> str:
        """One line for people: open or closed at ``t_us``, and until when."""
        i = int(np.searchsorted(self.closes, t_us, side="right"))
        phase = int(self.phase([t_us])[0])
        if phase == REGULAR:
            return f"{self.name} is open (closes {self._local(int(self.closes[i]))})"
        opens = self._local(int(self.opens[i]))
        if phase == CLOSED:
            return f"{self.name} is closed (opens {opens})"
        part = "pre-market" if t_us >= self.pre_opens[i] else "after hours"
        return f"{self.name} is closed ({part}; opens {opens})"

    def _local(self, t_us: int) -> str:
        local = datetime.fromtimestamp(t_us / US, tz=ZoneInfo(self.tz))
        return f"{local:%a %Y-%m-%d %H:%M} {self.tz}"


@functools.cache
def market_hours(calendar: str) -> MarketHours:
    """The market hours of ``calendar`` (loaded once per process)."""
    name = normalize(calendar)
    if name != calendar:
        return market_hours(name)
    return MarketHours(name)


def _calendar_or_none(calendar: str | None) -> str | None:
    """A calendar to follow, or None for a market that never closes."""
    if calendar is None:
        return None
    name = normalize(calendar)
    return None if name == ALWAYS else name


@dataclass
class _SymbolState:
    """One symbol's process, generated up to ``t_us`` (a block boundary); the trades of
    the last block not yet handed out wait in ``pending``. A symbol on a ``calendar``
    moves in trading time: ``busy_s`` is the trading time elapsed by ``t_us`` (a second
    of the regular session counts one, of extended hours ``extended_rate``, closed none)."""

    symbol: str
    rng: np.random.Generator
    rate: float
    sigma_s: float  # calm per-second volatility
    block_steps: int
    t_us: int
    last_trade_us: int
    log_price: float  # at the last trade, plus the jumps since
    log_vol: float  # deviation of log-volatility from its mean
    turbulent: bool = False
    pending: list[Trade] = field(default_factory=list)
    calendar: str | None = None  # None: trades around the clock
    busy_s: float = 0.0
    last_trade_busy_s: float = 0.0


class TickGenerator:
    """Trades for a set of symbols, in event time.

    >>> gen = TickGenerator(["AAPL", "MSFT"], seed=7, start_us=1_700_000_000_000_000)
    >>> trades = gen.advance(1_700_000_010_000_000)
    >>> trades == sorted(trades, key=lambda t: (t.time_ms, t.symbol))
    True
    >>> {t.symbol for t in trades} == {"AAPL", "MSFT"}
    True

    ``calendars`` puts symbols on market calendars (``exchange_calendars`` codes) and
    ``calendar`` every other symbol, added now or later; a symbol on none (or on
    ``24/7``) trades around the clock. The state pickles (Bytewax snapshots it).
    """

    def __init__(
        self,
        symbols: Iterable[str],
        seed: int,
        start_us: int,
        *,
        params: SimParams | None = None,
        rates: Mapping[str, float] | None = None,
        spikes: Sequence[Spike] = (),
        calendar: str | None = None,
        calendars: Mapping[str, str] | None = None,
    ) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.params = params or SimParams()
        self.spikes = tuple(Spike(*s) for s in spikes)
        self.calendar = _calendar_or_none(calendar)
        self.calendars = {s: _calendar_or_none(c) for s, c in (calendars or {}).items()}
        self._now_us = start_us
        self._states: dict[str, _SymbolState] = {}
        for symbol in symbols:
            self.add_symbol(symbol, rate=(rates or {}).get(symbol))

    @property
    def now_us(self) -> int:
        """How far the stream has been handed out: every trade before it was returned."""
        return self._now_us

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._states)

    def calendar_of(self, symbol: str) -> str | None:
        """The calendar ``symbol`` follows (None: around the clock)."""
        state = self._states.get(symbol)
        if state is not None:
            return state.calendar
        return self.calendars.get(symbol, self.calendar)

    def add_symbol(
        self, symbol: str, rate: float | None = None, start_us: int | None = None
    ) -> None:
        """Start simulating ``symbol`` from ``start_us`` (default, and at the earliest:
        now), on its calendar. No-op if present."""
        if symbol in self._states:
            return
        calendar = self.calendar_of(symbol)
        start = self._now_us if start_us is None else start_us
        if start < self._now_us:
            raise ValueError(f"cannot start {symbol} at {start}, before now ({self._now_us})")
        entropy = [self.seed, stable_hash(symbol), start & 0xFFFF_FFFF_FFFF_FFFF]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
        p = self.params
        self._states[symbol] = _SymbolState(
            symbol=symbol,
            rng=rng,
            rate=p.rate if rate is None else rate,
            sigma_s=p.annual_vol * _vol_scale(symbol) / math.sqrt(TRADING_SECONDS_PER_YEAR),
            block_steps=_block_steps(p.rate if rate is None else rate),
            t_us=start,
            last_trade_us=start,
            log_price=math.log(start_price(symbol)),
            log_vol=float(rng.normal(0.0, p.vol_of_vol)),
            calendar=calendar,
        )
        if calendar is not None:
            market_hours(calendar).phase([start])  # fail now on a start it cannot follow

    def remove_symbol(self, symbol: str) -> None:
        """Stop simulating ``symbol``; no-op if absent."""
        self._states.pop(symbol, None)

    def advance(self, until_us: int) -> list[Trade]:
        """Every trade from the previous call up to ``until_us`` (exclusive, judged on
        the trade's millisecond), sorted by time then symbol."""
        if until_us <= self._now_us:
            return []
        self._now_us = until_us
        cutoff_ms = -(-until_us // 1000)
        out: list[Trade] = []
        for state in self._states.values():
            while state.t_us < until_us:
                state.pending.extend(_generate_block(state, self.params, self.spikes))
            k = bisect_left(state.pending, cutoff_ms, key=itemgetter(2))
            if k:
                out.extend(state.pending[:k])
                del state.pending[:k]
        if len(self._states) > 1:
            out.sort(key=itemgetter(2, 0))
        return out


def _block_steps(rate: float) -> int:
    if rate <= 0:
        return MAX_BLOCK_STEPS
    return min(MAX_BLOCK_STEPS, max(MIN_BLOCK_STEPS, math.ceil(BLOCK_TRADES / rate)))


def _regime_path(state: _SymbolState, p: SimParams, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step of the next block: log-volatility deviation and turbulence flag."""
    rng = state.rng
    z = rng.standard_normal(steps).tolist()
    u = rng.random(steps).tolist()
    dt = STEP_US / US
    a = math.exp(-math.log(2.0) * dt / p.vol_halflife_s)
    b = p.vol_of_vol * math.sqrt(1.0 - a * a)
    p_enter = 1.0 - math.exp(-dt / p.calm_mean_s)
    p_leave = 1.0 - math.exp(-dt / p.turbulent_mean_s)
    x, turbulent = state.log_vol, state.turbulent
    xs = [0.0] * steps
    ts = [False] * steps
    for k in range(steps):
        turbulent = (u[k] >= p_leave) if turbulent else (u[k] < p_enter)
        x = a * x + b * z[k]
        xs[k] = x
        ts[k] = turbulent
    state.log_vol, state.turbulent = x, turbulent
    return np.array(xs), np.array(ts)


def _spike_factors(
    symbol: str, times_us: np.ndarray, spikes: tuple[Spike, ...]
) -> np.ndarray | None:
    factors: np.ndarray | None = None
    for s in spikes:
        if s.symbol != symbol:
            continue
        inside = (times_us >= s.start_us) & (times_us < s.start_us + s.duration_us)
        if inside.any():
            if factors is None:
                factors = np.ones(len(times_us))
            factors[inside] *= s.factor
    return factors


class _Block(NamedTuple):
    """Where a block's trades fall: per step, its trade rate's share (``None``: all
    full); per trade, its step, time and whether it is in extended hours."""

    activity: np.ndarray | None
    step: np.ndarray
    times_us: np.ndarray
    extended: np.ndarray | None


def _arrivals(
    state: _SymbolState, p: SimParams, steps: int, rate: np.ndarray, hours: MarketHours | None
) -> _Block:
    """The next block's trade times: Poisson at ``rate`` per step, and on a calendar
    thinned to the market's hours (exact, whatever the phase changes within a step)."""
    rng = state.rng
    dt = STEP_US / US
    if hours is None:
        counts = rng.poisson(rate * dt)
    else:
        edges = state.t_us + np.arange(steps + 1, dtype=np.int64) * STEP_US
        at_edges = hours.activity(edges, p.extended_rate)
        peak = np.maximum(at_edges[:-1], at_edges[1:])
        counts = rng.poisson(rate * peak * dt)
    step = np.repeat(np.arange(steps), counts)
    times_us = state.t_us + np.sort(((step + rng.random(len(step))) * STEP_US).astype(np.int64))
    if hours is None:
        return _Block(None, step, times_us, None)
    phase = hours.phase(times_us)
    keep = rng.random(len(step)) * peak[step] < np.array([0.0, p.extended_rate, 1.0])[phase]
    return _Block(at_edges[:-1], step[keep], times_us[keep], phase[keep] == EXTENDED)


def _gaps_s(state: _SymbolState, block: _Block) -> np.ndarray:
    """Per trade, the time since the previous trade that its price move is scaled by:
    seconds, or seconds of trading time on a calendar (advances ``state.busy_s``)."""
    n = len(block.step)
    if block.activity is None:
        gaps_s = np.empty(n)
        if n:
            gaps_s[0] = block.times_us[0] - state.last_trade_us
            np.subtract(block.times_us[1:], block.times_us[:-1], out=gaps_s[1:])
            gaps_s /= US
        return gaps_s
    act, dt = block.activity, STEP_US / US
    busy_at_steps = state.busy_s + np.concatenate(([0.0], np.cumsum(act * dt)))
    into_step_s = (block.times_us - state.t_us - block.step * STEP_US) / US
    busy = busy_at_steps[block.step] + act[block.step] * into_step_s
    gaps_s = np.maximum(np.diff(busy, prepend=state.last_trade_busy_s), 0.0)
    state.busy_s = float(busy_at_steps[-1])
    if n:
        state.last_trade_busy_s = float(busy[-1])
    return gaps_s


def _conditions(sizes: list[int], extended: np.ndarray | None) -> list[tuple[str, ...]]:
    if extended is None:
        return [_ODD_LOT if v < 100 else _REGULAR for v in sizes]
    return [
        (_EXTENDED_ODD_LOT if v < 100 else _EXTENDED) if e else (_ODD_LOT if v < 100 else _REGULAR)
        for v, e in zip(sizes, extended.tolist(), strict=True)
    ]


def _generate_block(state: _SymbolState, p: SimParams, spikes: tuple[Spike, ...]) -> list[Trade]:
    """The trades of the next block of ``state``'s stream; advances ``state``.

    The random draws are the same whatever the spikes, so that a spike changes only the
    moves inside it. A symbol on a calendar takes a block as long as its rate at the
    block's start asks (an hour when the market is closed), trades at the market's
    hours, and moves and jumps in trading time.
    """
    rng = state.rng
    dt = STEP_US / US
    hours = None if state.calendar is None else market_hours(state.calendar)
    steps = state.block_steps
    if hours is not None:
        steps = _block_steps(state.rate * float(hours.activity([state.t_us], p.extended_rate)[0]))
    log_vol, turbulent = _regime_path(state, p, steps)
    sigma = state.sigma_s * np.exp(log_vol - 0.5 * p.vol_of_vol**2)
    sigma = np.where(turbulent, sigma * p.turbulent_vol, sigma)

    rate = np.where(turbulent, state.rate * p.turbulent_rate, state.rate)
    block = _arrivals(state, p, steps, rate, hours)
    step, times_us = block.step, block.times_us
    n = len(step)
    gaps_s = _gaps_s(state, block)
    sig = sigma[step]
    moves = sig * np.sqrt(gaps_s) * rng.standard_normal(n) - 0.5 * sig * sig * gaps_s

    jump_rate = p.jumps_per_hour / 3600.0
    jump_rates = np.where(turbulent, jump_rate * p.turbulent_jumps, jump_rate)
    if block.activity is not None:
        jump_rates = jump_rates * block.activity
    jcounts = rng.poisson(jump_rates * dt)
    jstep = np.repeat(np.arange(steps), jcounts)
    jtimes_us = state.t_us + ((jstep + rng.random(len(jstep))) * STEP_US).astype(np.int64)
    jsizes = rng.normal(0.0, p.jump_std, len(jstep))
    sizes = np.minimum(
        np.floor(p.size_scale * (rng.pareto(p.size_alpha, n) + 1.0)), p.max_size
    ).astype(np.int64)

    factors = _spike_factors(state.symbol, times_us, spikes)
    if factors is not None:
        moves *= factors
    jfactors = _spike_factors(state.symbol, jtimes_us, spikes)
    if jfactors is not None:
        jsizes *= jfactors
    # A jump moves the price seen by the first trade at or after it.
    at = np.searchsorted(times_us, jtimes_us, side="left")
    np.add.at(moves, at[at < n], jsizes[at < n])
    carried = float(jsizes[at >= n].sum())

    log_prices = state.log_price + np.cumsum(moves)
    state.t_us += steps * STEP_US
    if n == 0:
        state.log_price += carried
        return []
    state.log_price = float(log_prices[-1]) + carried
    state.last_trade_us = int(times_us[-1])
    prices = np.maximum(np.round(np.exp(log_prices), 2), 0.01)
    symbol = state.symbol
    sizes_list = sizes.tolist()
    return list(
        map(
            Trade,
            [symbol] * n,
            prices.tolist(),
            (times_us // 1000).tolist(),
            sizes_list,
            _conditions(sizes_list, block.extended),
        )
    )


@lru_cache(maxsize=4096)
def _json_str(text: str) -> str:
    return json.dumps(text)


@lru_cache(maxsize=64)
def _json_conditions(conditions: tuple[str, ...] | None) -> str:
    return "null" if conditions is None else json.dumps(list(conditions), separators=(",", ":"))


def trade_json(trade: Trade) -> str:
    """One entry of a Finnhub trade message's ``data``, compact JSON."""
    return (
        f'{{"s":{_json_str(trade.symbol)},"p":{trade.price!r},"t":{trade.time_ms},'
        f'"v":{trade.volume},"c":{_json_conditions(trade.conditions)}}}'
    )


def finnhub_trade_message(trades: Iterable[Trade]) -> str:
    """Finnhub's trade message for ``trades``, exactly as the websocket sends it:

    >>> finnhub_trade_message([Trade("AAPL", 189.12, 1700000000123, 100, ("1", "12"))])
    '{"type":"trade","data":[{"s":"AAPL","p":189.12,"t":1700000000123,"v":100,"c":["1","12"]}]}'
    """
    return '{"type":"trade","data":[' + ",".join(map(trade_json, trades)) + "]}"


@dataclass
class _SimulatorState:
    """What a resumed :class:`SimulatorSource` partition needs to continue exactly."""

    generator: TickGenerator
    pos_us: int  # event time handed out so far (a step boundary)
    end_us: int | None
    seq: int  # the next message's sequence number
    offset_us: int  # event time minus wall time, for paced runs


class _SimulatorPartition(StatefulSourcePartition[RawBatch, _SimulatorState]):
    def __init__(
        self,
        state: _SimulatorState,
        interval_us: int,
        paced: bool,
        clock: Callable[[], int],
        batch_trades: int,
        max_steps: int,
    ) -> None:
        self._state = state
        self._interval_us = interval_us
        self._paced = paced
        self._clock = clock
        self._batch_trades = batch_trades
        self._max_steps = max_steps

    @override
    def next_batch(self) -> list[RawBatch]:
        st = self._state
        if st.end_us is not None and st.pos_us >= st.end_us:
            raise StopIteration
        now_us = self._clock()
        limit = now_us + st.offset_us if self._paced else None
        messages: list[tuple[int, str | RowBlock]] = []
        trades = steps = 0
        while trades < self._batch_trades and steps < self._max_steps:
            step_end = st.pos_us + self._interval_us
            if st.end_us is not None:
                step_end = min(step_end, st.end_us)
            if limit is not None and step_end > limit:
                break
            chunk = st.generator.advance(step_end)
            st.pos_us = step_end
            steps += 1
            for i in range(0, len(chunk), MAX_MESSAGE_TRADES):
                messages.append((st.seq, finnhub_trade_message(chunk[i : i + MAX_MESSAGE_TRADES])))
                st.seq += 1
            trades += len(chunk)
            if st.pos_us == st.end_us:
                break
        if steps == 0:
            return []
        clock_us = now_us if self._paced else st.pos_us
        return [RawBatch("simulator", clock_us, messages, tuple(sorted(st.generator.symbols)))]

    @override
    def next_awake(self) -> datetime | None:
        if not self._paced:
            return None
        st = self._state
        wake_us = st.pos_us + self._interval_us - st.offset_us
        return datetime.fromtimestamp(wake_us / US, tz=timezone.utc)

    @override
    def snapshot(self) -> _SimulatorState:
        return copy.deepcopy(self._state)


class SimulatorSource(FixedPartitionedSource[RawBatch, _SimulatorState]):
    """Simulated trades as :class:`~dataflows.records.RawBatch` records of Finnhub trade
    messages (``source="simulator"``), one partition named ``"simulator"``.

    Event time runs from ``start_us`` (default: the clock when first built) for
    ``duration_s`` (``None``: forever) in steps of ``batch_interval_ms``; each step's
    trades, if any, make one message (several if more than ``MAX_MESSAGE_TRADES``).
    Unpaced, steps are taken as fast as possible and a batch gathers steps until it holds
    ``batch_trades`` trades (``clock_us`` is the batch's event-time end); paced, event time
    follows the clock (``clock_us`` is the clock) and a batch comes every step, empty if
    no trade happened.

    ``seq`` counts messages. Delivery guarantee: exactly-once replayable. The snapshot
    holds the generator, the position and the counter, so a resumed run emits exactly
    the messages an uninterrupted run would have. Resuming with a different ``symbols``
    list adds and drops symbols at the resumed position.

    ``calendar`` and ``calendars`` put symbols on market calendars, as in
    :class:`TickGenerator`; a resumed source keeps those of the run it resumes.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int = 0,
        start_us: int | None = None,
        duration_s: float | None = None,
        batch_interval_ms: int = 100,
        paced: bool = False,
        clock: Callable[[], int] = wall_clock_us,
        *,
        params: SimParams | None = None,
        rates: Mapping[str, float] | None = None,
        spikes: Sequence[Spike] = (),
        batch_trades: int = 2000,
        calendar: str | None = None,
        calendars: Mapping[str, str] | None = None,
    ) -> None:
        if batch_interval_ms <= 0:
            raise ValueError("batch_interval_ms must be positive")
        self.symbols = list(symbols)
        self.seed = seed
        self.start_us = start_us
        self.duration_s = duration_s
        self.batch_interval_ms = batch_interval_ms
        self.paced = paced
        self.clock = clock
        self.params = params
        self.rates = dict(rates or {})
        self.spikes = tuple(spikes)
        self.batch_trades = batch_trades
        self.calendar = calendar
        self.calendars = dict(calendars or {})

    @override
    def list_parts(self) -> list[str]:
        return ["simulator"]

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: _SimulatorState | None
    ) -> _SimulatorPartition:
        state = resume_state if resume_state is not None else self._initial_state()
        gen = state.generator
        for symbol in gen.symbols:
            if symbol not in self.symbols:
                gen.remove_symbol(symbol)
        for symbol in self.symbols:
            gen.add_symbol(symbol, rate=self.rates.get(symbol))
        interval_us = self.batch_interval_ms * 1000
        # About five minutes of event time at most per batch, so that a simulation with
        # few trades still returns to Bytewax regularly.
        max_steps = max(1, 300 * US // interval_us)
        return _SimulatorPartition(
            state, interval_us, self.paced, self.clock, self.batch_trades, max_steps
        )

    def _initial_state(self) -> _SimulatorState:
        now_us = self.clock()
        start = now_us if self.start_us is None else self.start_us
        end = None if self.duration_s is None else start + round(self.duration_s * US)
        gen = TickGenerator(
            self.symbols,
            self.seed,
            start,
            params=self.params,
            rates=self.rates,
            spikes=self.spikes,
            calendar=self.calendar,
            calendars=self.calendars,
        )
        return _SimulatorState(gen, start, end, 0, start - now_us)
