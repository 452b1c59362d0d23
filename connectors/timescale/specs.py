"""What each TimescaleDB table takes: its columns, the record feeding it, its key.

One :class:`TableSpec` per table the dataflow writes, each checked at import against the
record type in :mod:`dataflows.records` that feeds it, so a change of fields fails here
rather than writing a value into the wrong column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from dataflows.records import (
    Alert,
    Bar,
    DailySummary,
    Forecast,
    Metrics,
    ModelCheckpoint,
    ModelScore,
    Reject,
    SessionEvent,
    Tick,
)

Row = Sequence[Any]
"""One row: a record (named tuple) or a plain tuple, values in the spec's column order."""

TIME = "timestamptz"
"""A time column; its value in a row is ``int`` microseconds since the Unix epoch (UTC)."""


@dataclass(frozen=True)
class TableSpec:
    """How rows map to one table.

    ``columns`` are the table's columns in row order; ``fields`` names the record field
    feeding each column (``bars.time`` is ``Bar.start_us``); ``pg_types`` are the columns'
    types as PostgreSQL spells them (``udt_name``). Columns of type ``timestamptz``
    (:data:`TIME`) take ``int`` microseconds since the Unix epoch, or ``None``; ``jsonb``
    takes a JSON-able value, or a ``str`` that is already JSON text. ``key`` is the
    primary key, the conflict target of the idempotent insert. ``latest_key``, when set,
    names the key of ``<table>_latest`` (migration 0010), which holds the newest row of
    each such key and is kept current in the same transaction as the rows. ``revision``,
    when set, names a column counting a row's versions (``bars.revision``): a row replaces
    the stored one of its key when its revision is higher, and is skipped otherwise.
    """

    table: str
    columns: tuple[str, ...]
    fields: tuple[str, ...]
    pg_types: tuple[str, ...]
    key: tuple[str, ...]
    latest_key: tuple[str, ...] | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        if not len(self.columns) == len(self.fields) == len(self.pg_types):
            raise ValueError(f"{self.table}: columns, fields and pg_types differ in length")
        if not set(self.key) <= set(self.columns):
            raise ValueError(f"{self.table}: key {self.key} is not among the columns")
        if self.latest_key is not None and not set(self.latest_key) < set(self.key):
            raise ValueError(f"{self.table}: latest key {self.latest_key} is not within the key")
        if self.revision is not None and self.revision not in self.columns:
            raise ValueError(f"{self.table}: revision {self.revision!r} is not a column")

    @property
    def time_columns(self) -> tuple[str, ...]:
        """The columns given as int microseconds since the epoch."""
        return tuple(c for c, t in zip(self.columns, self.pg_types, strict=True) if t == TIME)

    @property
    def newest_by(self) -> tuple[str, ...]:
        """What orders the rows of one latest key, newest last: the time column, then
        the rest of the primary key (``seq`` for ticks), then the revision."""
        assert self.latest_key is not None
        time = self.time_columns[0]
        rest = (k for k in self.key if k not in self.latest_key and k != time)
        return (time, *rest, *((self.revision,) if self.revision else ()))


def _spec(
    table: str,
    key: tuple[str, ...],
    columns: Sequence[tuple[str, str, str]],
    record: type[NamedTuple] | None = None,
    latest_key: tuple[str, ...] | None = None,
    revision: str | None = None,
) -> TableSpec:
    """A spec from ``(column, record field, pg type)`` triples, checked against ``record``.

    The check fails at import if ``dataflows.records`` changes its fields, rather than
    letting the sink write a value into the wrong column.
    """
    spec = TableSpec(
        table=table,
        columns=tuple(c for c, _, _ in columns),
        fields=tuple(f for _, f, _ in columns),
        pg_types=tuple(t for _, _, t in columns),
        key=key,
        latest_key=latest_key,
        revision=revision,
    )
    if record is not None and spec.fields != record._fields:
        raise TypeError(f"{table}: {record.__name__} fields {record._fields} != {spec.fields}")
    return spec


TICKS = _spec(
    "ticks",
    ("symbol", "time", "seq"),
    [
        ("time", "time_us", TIME),
        ("symbol", "symbol", "text"),
        ("price", "price", "float8"),
        ("size", "size", "float8"),
        ("seq", "seq", "int8"),
        ("conditions", "conditions", "text"),
        ("extended", "extended", "bool"),
        ("source", "source", "text"),
    ],
    Tick,
    latest_key=("symbol",),
)
TICKS_REJECTED = _spec(
    "ticks_rejected",
    ("source", "received_at", "seq"),
    [
        ("received_at", "received_us", TIME),
        ("source", "source", "text"),
        ("seq", "seq", "int8"),
        ("symbol", "symbol", "text"),
        ("reason", "reason", "text"),
        ("detail", "detail", "text"),
        ("payload", "payload", "text"),
    ],
    Reject,
)
BARS = _spec(
    "bars",
    ("symbol", "time"),
    [
        ("time", "start_us", TIME),
        ("symbol", "symbol", "text"),
        ("open", "open", "float8"),
        ("high", "high", "float8"),
        ("low", "low", "float8"),
        ("close", "close", "float8"),
        ("volume", "volume", "float8"),
        ("vwap", "vwap", "float8"),
        ("trades", "trades", "int4"),
        ("bar_seconds", "bar_seconds", "int4"),
        ("revision", "revision", "int4"),
    ],
    Bar,
    latest_key=("symbol",),
    revision="revision",
)
BAR_METRICS = _spec(
    "bar_metrics",
    ("symbol", "time"),
    [
        ("time", "start_us", TIME),
        ("symbol", "symbol", "text"),
        ("log_return", "log_return", "float8"),
        ("realized_vol", "realized_vol", "float8"),
        ("ewma_vol", "ewma_vol", "float8"),
        ("realized_vol_ann", "realized_vol_ann", "float8"),
        ("ewma_vol_ann", "ewma_vol_ann", "float8"),
        ("sharpe", "sharpe", "float8"),
        ("bars_seen", "bars_seen", "int8"),
    ],
    Metrics,
    latest_key=("symbol",),
)
ALERTS = _spec(
    "alerts",
    ("symbol", "kind", "time"),
    [
        ("time", "time_us", TIME),
        ("symbol", "symbol", "text"),
        ("kind", "kind", "text"),
        ("severity", "severity", "text"),
        ("value", "value", "float8"),
        ("threshold", "threshold", "float8"),
        ("message", "message", "text"),
    ],
    Alert,
)
FORECASTS = _spec(
    "forecasts",
    ("symbol", "model", "target", "horizon", "time"),
    [
        ("time", "time_us", TIME),
        ("symbol", "symbol", "text"),
        ("model", "model", "text"),
        ("target", "target", "text"),
        ("horizon", "horizon", "int2"),
        ("value", "value", "float8"),
        ("lower", "lower", "float8"),
        ("upper", "upper", "float8"),
        ("made_at", "made_at_us", TIME),
    ],
    Forecast,
    latest_key=("symbol", "model", "target", "horizon"),
)
MODEL_SCORES = _spec(
    "model_scores",
    ("symbol", "model", "target", "metric", "time"),
    [
        ("time", "time_us", TIME),
        ("symbol", "symbol", "text"),
        ("model", "model", "text"),
        ("target", "target", "text"),
        ("metric", "metric", "text"),
        ("value", "value", "float8"),
    ],
    ModelScore,
    latest_key=("symbol", "model", "target", "metric"),
)
MODEL_CHECKPOINTS = _spec(
    "model_checkpoints",
    ("symbol", "model", "time"),
    [
        ("time", "time_us", TIME),
        ("symbol", "symbol", "text"),
        ("model", "model", "text"),
        ("version", "version", "int4"),
        ("bars_seen", "bars_seen", "int8"),
        ("state", "state", "bytea"),
        ("metrics", "metrics", "jsonb"),
    ],
    ModelCheckpoint,
    latest_key=("symbol", "model"),
)
SESSION_EVENTS = _spec(
    "session_events",
    ("symbol", "time", "event"),
    [
        ("time", "time_us", TIME),
        ("symbol", "symbol", "text"),
        ("event", "event", "text"),
        ("session_date", "session_date", "date"),
        ("calendar", "calendar", "text"),
    ],
    SessionEvent,
)
DAILY_SUMMARY = _spec(
    "daily_summary",
    ("symbol", "session_date"),
    [
        ("session_date", "session_date", "date"),
        ("symbol", "symbol", "text"),
        ("calendar", "calendar", "text"),
        ("open_time", "open_us", TIME),
        ("close_time", "close_us", TIME),
        ("open", "open", "float8"),
        ("high", "high", "float8"),
        ("low", "low", "float8"),
        ("close", "close", "float8"),
        ("volume", "volume", "float8"),
        ("vwap", "vwap", "float8"),
        ("trades", "trades", "int4"),
        ("bars", "bars", "int4"),
        ("realized_vol", "realized_vol", "float8"),
        ("realized_vol_ann", "realized_vol_ann", "float8"),
        ("sharpe", "sharpe", "float8"),
        ("overnight_return", "overnight_return", "float8"),
        ("alerts", "alerts", "jsonb"),
        ("model_scores", "model_scores", "jsonb"),
    ],
    DailySummary,
)

SPECS: dict[str, TableSpec] = {
    s.table: s
    for s in (
        TICKS,
        TICKS_REJECTED,
        BARS,
        BAR_METRICS,
        ALERTS,
        FORECASTS,
        MODEL_SCORES,
        MODEL_CHECKPOINTS,
        SESSION_EVENTS,
        DAILY_SUMMARY,
    )
}
"""Every spec, by table name."""
