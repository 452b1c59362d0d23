"""Trade condition rules: which fields of a bar a print may update.

The rule table is data, ``dataflows/conditions.csv``: one row per Finnhub condition code,
with what a print carrying it may update (open/close, high/low, volume, VWAP, the trade
count) and where the rules come from (the CTA and UTP consolidated-tape sale condition
matrices). It is read once, at import.

:func:`flags` turns a tick's conditions (Finnhub's ``c`` list, stored joined with ``,``)
into a bit set of :data:`OPEN_CLOSE`, :data:`HIGH_LOW`, :data:`VOLUME`, :data:`VWAP` and
:data:`TRADE`:

- No conditions (``None`` or empty): a regular sale, every field.
- Several codes on one print: what every one of them allows (the AND of their rules), as
  the matrices are applied; Finnhub's ``["1", "12"]`` (regular, odd lot) is an odd lot.
- A code not in the table: volume and the trade count only, never a price nor VWAP (the
  most a print of unknown meaning can safely be taken for: nearly every condition of the
  matrices counts toward volume, many keep the price out); logged once per code.
- Mode ``"all"``: every print updates every field.

In both modes a print of size zero (Finnhub's price updates from venues without trade
data) never counts toward volume, VWAP nor trades; it may still update prices as its
conditions allow (:func:`tick_flags`), so that a minute candle's high and low can be sent
as zero-size prints. A bar none of whose prints has a size and a rule letting it update
something is not a bar.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import NamedTuple

from dataflows.config import Conditions  # re-exported: the modes

__all__ = [
    "ALL",
    "HIGH_LOW",
    "OPEN_CLOSE",
    "PRICES",
    "RULES",
    "SEEN",
    "TABLE",
    "TRADE",
    "UNKNOWN",
    "VOLUME",
    "VWAP",
    "Conditions",
    "Rule",
    "flags",
    "load_rules",
    "tick_flags",
]

log = logging.getLogger(__name__)

OPEN_CLOSE = 1
HIGH_LOW = 2
VOLUME = 4
VWAP = 8
TRADE = 16
ALL = OPEN_CLOSE | HIGH_LOW | VOLUME | VWAP | TRADE
PRICES = OPEN_CLOSE | HIGH_LOW
UNKNOWN = VOLUME | TRADE
"""What a print with a code outside the table may update."""

TABLE = Path(__file__).with_name("conditions.csv")

_COLUMNS = {
    "updates_open_close": OPEN_CLOSE,
    "updates_high_low": HIGH_LOW,
    "updates_volume": VOLUME,
    "updates_vwap": VWAP,
    "counts_as_trade": TRADE,
}
_CACHE_MAX = 4096  # distinct conditions strings remembered (a hostile feed sends many)
_LOG_MAX = 100  # distinct unknown codes logged


class Rule(NamedTuple):
    code: str
    name: str
    cta: str
    utp: str
    confirmed: bool
    flags: int


def load_rules(path: Path = TABLE) -> dict[str, Rule]:
    """The table at ``path`` by code; raises ``ValueError`` on a malformed or
    inconsistent row (a rule that updates VWAP or counts a trade without volume, or open
    and close without high and low)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    rules: dict[str, Rule] = {}
    for row in rows:
        code = row["code"]
        bits = 0
        for column, bit in _COLUMNS.items():
            if row[column] not in ("0", "1"):
                raise ValueError(f"condition {code!r}: {column} is not 0 or 1")
            bits |= bit if row[column] == "1" else 0
        if bits & (VWAP | TRADE) and not bits & VOLUME:
            raise ValueError(f"condition {code!r}: VWAP or a trade without volume")
        if bits & OPEN_CLOSE and not bits & HIGH_LOW:
            raise ValueError(f"condition {code!r}: open and close without high and low")
        if not code or code in rules:
            raise ValueError(f"condition code {code!r} empty or repeated")
        rules[code] = Rule(code, row["name"], row["cta"], row["utp"], row["confirmed"] == "1", bits)
    return rules


RULES = load_rules()

SEEN: dict[str, int] = {}
"""The tape-mode flags of the conditions strings looked up so far (at most a few
thousand): :func:`tick_flags` reads it before it calls :func:`flags`."""
_logged: set[str] = set()


def flags(conditions: str | None, mode: Conditions = "tape") -> int:
    """What a print with these conditions may update (a bit set; see the module)."""
    if mode == "all" or not conditions:
        return ALL
    bits = SEEN.get(conditions)
    if bits is None:
        bits = _combine(conditions)
        if len(SEEN) < _CACHE_MAX:
            SEEN[conditions] = bits
    return bits


def tick_flags(conditions: str | None, size: float, mode: Conditions = "tape") -> int:
    """:func:`flags` with the zero-size rule: a print without size updates prices only.
    The bar step calls it for every tick: the cache is read here, without a call."""
    if conditions is None or mode == "all":
        bits = ALL
    else:
        cached = SEEN.get(conditions)
        bits = flags(conditions, mode) if cached is None else cached
    return bits if size > 0 else bits & PRICES


def _combine(conditions: str) -> int:
    bits = ALL
    for part in conditions.split(","):
        code = part.strip()
        if not code:
            continue
        rule = RULES.get(code)
        if rule is None:
            _unknown(code)
            bits &= UNKNOWN
        else:
            bits &= rule.flags
    return bits


def _unknown(code: str) -> None:
    if code in _logged or len(_logged) > _LOG_MAX:
        return
    _logged.add(code)
    if len(_logged) > _LOG_MAX:
        log.warning("more than %d unknown trade condition codes: no more are logged", _LOG_MAX)
        return
    log.warning(
        "trade condition %r is not in %s: its prints count toward volume and trades, "
        "never prices nor VWAP",
        code[:40],
        TABLE.name,
    )
