"""Grafana's expansion of a PostgreSQL query, step by step, so tests can run the exact SQL.

A dashboard query goes through three rewrites before it reaches the database:

1. the browser replaces template variables (``$symbol``, ``${symbol:sqlstring}``) and the
   scoped ``$__interval`` / ``$__interval_ms``;
2. the backend replaces what is left of ``$__interval_ms``, ``$__interval``,
   ``$__unixEpochFrom()`` and ``$__unixEpochTo()`` (``sqleng.Interpolate``);
3. the PostgreSQL macro engine rewrites every ``$__name(args)``: ``$__timeFilter``,
   ``$__timeGroup`` (``time_bucket`` when the data source has ``timescaledb: true``), ...

An alert query skips step 1 (alert rules have no template variables). The formats below
follow Grafana's ``pkg/tsdb/grafana-postgresql-datasource/macros.go`` and the SQL data
sources' ``interpolateVariable`` in the frontend.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal

VariableValue = str | Sequence[str]

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
# The frontend's variable syntaxes: $name, [[name]] / [[name:format]], ${name} / ${name:format}.
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|M|y)$")
_DAY = 86_400
# Grafana's interval units in seconds: a month is 30 days, a year 365.
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": _DAY,
    "w": 7 * _DAY,
    "M": 30 * _DAY,
    "y": 365 * _DAY,
}
# The units gtime.FormatInterval writes, largest first.
_FORMAT_UNITS = ("y", "d", "h", "m", "s", "ms")
# Macros whose first argument, a time column, Grafana requires.
_NEEDS_COLUMN = frozenset(
    {"__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter", "__unixEpochNanoFilter"}
)


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown name, missing argument, bad interval)."""


def expand(
    sql: str,
    *,
    time_from: datetime,
    time_to: datetime,
    interval_s: float,
    variables: Mapping[str, VariableValue] | None = None,
    timescaledb: bool = True,
) -> str:
    """``sql`` as Grafana sends it to PostgreSQL for this time range and interval.

    ``variables`` are the dashboard's template variables (a list for a multi-value or
    "All" selection); without them (alert rules), only the built-in macros expand.
    """
    if variables is not None:
        sql = interpolate_variables(sql, variables, interval_s)
    sql = _interpolate_globals(sql, time_from, time_to, interval_s)
    return _interpolate_macros(sql, time_from, time_to, timescaledb)


def format_interval(seconds: float) -> str:
    """Grafana's ``gtime.FormatInterval``: the largest whole unit, rounded down."""
    ms = round(seconds * 1000)
    for unit in _FORMAT_UNITS:
        size = round(_UNIT_SECONDS[unit] * 1000)
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def parse_interval(text: str) -> float:
    """Grafana's ``gtime.ParseInterval`` for the units used in queries; seconds."""
    match = _INTERVAL.match(text.strip())
    if not match:
        raise MacroError(f"error parsing interval {text}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def interpolate_variables(
    sql: str, variables: Mapping[str, VariableValue], interval_s: float
) -> str:
    """Step 1, the browser's ``templateSrv.replace`` with the SQL data sources' formatter."""
    scoped: dict[str, VariableValue] = {
        "__interval": format_interval(interval_s),
        "__interval_ms": str(round(interval_s * 1000)),
        **variables,
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name not in scoped:
            return match.group(0)  # unknown: Grafana leaves it as written
        return _format_value(scoped[name], fmt, name.startswith("__"))

    return _VARIABLE.sub(replace, sql)


def _format_value(value: VariableValue, fmt: str | None, builtin: bool) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt is None:
        # interpolateVariable: a single value goes in raw; a multi-value or "All"
        # selection becomes a list of quoted literals.
        if builtin or isinstance(value, str):
            return str(value)
        return ",".join(_quote(v) for v in values)
    if fmt == "sqlstring":
        return ",".join(_quote(v) for v in values)
    if fmt == "raw":
        return ",".join(values)
    if fmt == "csv":
        return ",".join(values)
    raise MacroError(f"variable format {fmt!r} is not used in this project's queries")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _interpolate_globals(
    sql: str, time_from: datetime, time_to: datetime, interval_s: float
) -> str:
    """Step 2, ``sqleng.Interpolate``: plain string replacement, in this order."""
    sql = sql.replace("$__interval_ms", str(round(interval_s * 1000)))
    sql = sql.replace("$__interval", format_interval(interval_s))
    sql = sql.replace("$__unixEpochFrom()", str(_epoch(time_from)))
    return sql.replace("$__unixEpochTo()", str(_epoch(time_to)))


def _interpolate_macros(sql: str, time_from: datetime, time_to: datetime, tsdb: bool) -> str:
    """Step 3, the PostgreSQL macro engine."""
    original = sql

    def replace(match: re.Match[str]) -> str:
        name, text = match.group(1), match.group(0)
        # Grafana treats `$__timeGroup(...)` directly followed by a comma as the pre-5.3
        # form and adds the alias; it looks at the first occurrence in the query.
        if name == "__timeGroup":
            index = original.find(text)
            if index >= 0 and original[index + len(text) : index + len(text) + 1] == ",":
                name = "__timeGroupAlias"
        args = [a.strip(" ") for a in match.group(2).split(",")]
        return _macro(name, args, time_from, time_to, tsdb)

    return _MACRO.sub(replace, sql)


def _macro(name: str, args: list[str], t0: datetime, t1: datetime, tsdb: bool) -> str:
    col = args[0]
    if name in _NEEDS_COLUMN and not col:
        raise MacroError(f"missing time column argument for macro {name}")
    if name == "__time":
        return f'{col} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {col}) as "time"'
    if name == "__timeFilter":
        return f"{col} BETWEEN '{rfc3339nano(t0)}' AND '{rfc3339nano(t1)}'"
    if name == "__timeFrom":
        return f"'{rfc3339nano(t0)}'"
    if name == "__timeTo":
        return f"'{rfc3339nano(t1)}'"
    if name in {"__timeGroup", "__timeGroupAlias", "__unixEpochGroup", "__unixEpochGroupAlias"}:
        return _group(name, args, tsdb)
    if name == "__unixEpochFilter":
        return f"{col} >= {_epoch(t0)} AND {col} <= {_epoch(t1)}"
    if name == "__unixEpochNanoFilter":
        return f"{col} >= {_epoch_ns(t0)} AND {col} <= {_epoch_ns(t1)}"
    if name == "__unixEpochNanoFrom":
        return str(_epoch_ns(t0))
    if name == "__unixEpochNanoTo":
        return str(_epoch_ns(t1))
    raise MacroError(f'unknown macro "{name}"')


def _group(name: str, args: list[str], tsdb: bool) -> str:
    if len(args) < 2:
        raise MacroError(f"macro {name} needs time column and interval and optional fill value")
    seconds = parse_interval(args[1].strip("'"))
    alias = ' AS "time"' if name.endswith("Alias") else ""
    if name.startswith("__unixEpoch"):
        return f"floor(({args[0]})/{go_float(seconds)})*{go_float(seconds)}{alias}"
    if tsdb:
        return f"time_bucket('{seconds:.3f}s',{args[0]}){alias}"
    return f"floor(extract(epoch from {args[0]})/{go_float(seconds)})*{go_float(seconds)}{alias}"


def rfc3339nano(t: datetime) -> str:
    """Go's ``time.RFC3339Nano`` of ``t`` in UTC: no trailing zeros in the fraction."""
    t = t.astimezone(timezone.utc)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return text + "Z"


def go_float(x: float) -> str:
    """Go's ``%v`` of a float64: shortest digits, ``e`` notation from 1e6 or below 1e-4."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    exp10 = len(digits) + exponent - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    return prefix + format(Decimal(repr(x)).normalize(), "f")


def _epoch(t: datetime) -> int:
    return int(t.timestamp())


def _epoch_ns(t: datetime) -> int:
    delta = t.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
