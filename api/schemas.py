"""Request and response models: every endpoint declares one, so the OpenAPI schema is exact.

Times are ISO 8601 in UTC (``2024-05-01T13:30:00Z``). Floats that the pipeline may leave
empty (or that are not finite) are ``null``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    StringConstraints,
)

SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.:_^=-]{0,31}$"
SYMBOL_RULE = (
    "1 to 32 characters: letters, digits and . : _ - ^ =, starting with a letter or a "
    "digit; case-insensitive (stored in upper case)"
)
Symbol = Annotated[
    str,
    StringConstraints(pattern=SYMBOL_PATTERN, min_length=1, max_length=32),
    AfterValidator(str.upper),
    Field(description=f"Ticker symbol, e.g. AAPL or BINANCE:BTCUSDT ({SYMBOL_RULE})."),
]
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
Order = Literal["asc", "desc"]
Target = Literal["return", "volatility"]
StreamKind = Literal["bar", "bar_revision", "forecast", "alert"]
STREAM_KINDS: tuple[StreamKind, ...] = ("bar", "bar_revision", "forecast", "alert")


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer."""

    error: str = Field(description="What is wrong, in one sentence.")
    detail: Any = Field(default=None, description="Machine-readable details, if any.")


# -- health --------------------------------------------------------------------------------


class DatabaseHealth(BaseModel):
    reachable: bool
    server_version: str | None = None
    timescaledb_version: str | None = None
    timescaledb_license: str | None = None


class FeedHealth(BaseModel):
    source: str
    url: str | None
    connected: bool
    subscribed: list[str]
    last_message_at: datetime | None
    reconnects: int
    silent_reconnects: int = Field(
        default=0, description="Connections closed because nothing came for too long."
    )
    backfilled_trades: int = Field(default=0, description="Trades fetched to fill gaps.")
    last_backfill_at: datetime | None = None
    last_backfill: str | None = Field(
        default=None, description="What the last gap backfill did, or why it failed."
    )
    last_error: str | None
    updated_at: datetime


class SymbolHealth(BaseModel):
    symbol: str
    active: bool
    last_tick: datetime | None = Field(description="Time of the newest raw tick.")
    last_bar: datetime | None = Field(description="Start of the newest bar.")
    last_bar_end: datetime | None = Field(description="End of the newest bar.")
    tick_lag_s: float | None = Field(description="Now minus the newest tick time.")
    bar_lag_s: float | None = Field(description="Now minus the newest bar's end.")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="'degraded' when a feed is disconnected; the database is reachable."
    )
    time: datetime = Field(description="The server's clock.")
    database: DatabaseHealth
    feeds: list[FeedHealth] = Field(description="Rows of `feed_status`.")
    feed_connected: bool | None = Field(description="Every feed connected (null: no feed).")
    symbols: list[SymbolHealth] = Field(description="One per row of `tickers`.")
    dataflow_lag_s: float | None = Field(
        description="Now minus the end of the newest bar of any ticker (null: no bar)."
    )
    tick_lag_s: float | None = Field(description="Now minus the newest tick of any ticker.")
    stream_listening: bool = Field(description="/stream's LISTEN connection is up.")


# -- tickers -------------------------------------------------------------------------------


CALENDAR_RULE = (
    "an exchange_calendars code such as XNYS, XNAS, XLON or XTKS (case-insensitive), "
    "or 24/7 for a market that never closes"
)
Calendar = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=32),
    Field(description=f"Market calendar: {CALENDAR_RULE}.", examples=["XNYS", "24/7"]),
]


class TickerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    calendar: Calendar | None = Field(
        default=None,
        description=f"Market calendar ({CALENDAR_RULE}); default `SENTINEL_CALENDAR` for a "
        "new ticker, unchanged for one already there.",
    )


class TickerPatch(BaseModel):
    """What to change of a ticker: at least one field."""

    model_config = ConfigDict(extra="forbid")

    calendar: Calendar | None = None
    active: StrictBool | None = Field(default=None, description="Follow it (or stop).")


class TickerOut(BaseModel):
    symbol: str
    active: bool
    added_at: datetime
    updated_at: datetime
    calendar: str = Field(description="The ticker's market calendar (`tickers.calendar`).")
    effective_calendar: str = Field(
        description="The calendar the pipeline follows for it: `calendar`, unless "
        "`SENTINEL_CALENDAR_OVERRIDE` is set (the demo runs every symbol 24/7)."
    )
    open_now: bool | None = Field(
        description="Its market (`calendar`) is in a regular session now (null: a "
        "calendar this API does not know)."
    )
    next_open: datetime | None = Field(description="When its market next opens.")
    next_close: datetime | None = Field(
        description="When its market next closes: the current session's close while open."
    )


# -- the trading day -----------------------------------------------------------------------


class DailySummaryOut(BaseModel):
    """One `daily_summary` row: a symbol's regular session, written at its close."""

    session_date: date = Field(description="The exchange's date of the session.")
    calendar: str
    open_time: datetime = Field(description="The session's open.")
    close_time: datetime = Field(description="The session's close.")
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float
    vwap: float | None
    trades: int
    bars: int
    realized_vol: float | None = Field(description="Of the session's bar log returns.")
    realized_vol_ann: float | None
    sharpe: float | None = Field(description="Of the session's bar returns, annualized.")
    overnight_return: float | None = Field(
        description="Log return from the previous close to this session's first trade."
    )
    alerts: dict[str, int] = Field(description="The session's alerts, counted by kind.")
    model_scores: dict[str, Any] = Field(description="Each model's mean scores in the session.")


class SummaryOut(BaseModel):
    symbol: str
    order: Order
    count: int
    sessions: list[DailySummaryOut]


class SessionOut(BaseModel):
    session_date: date = Field(description="The exchange's date of the session.")
    open: datetime
    close: datetime
    hours: float = Field(description="Its length in hours (shorter on an early close).")


class SessionEventOut(BaseModel):
    """A `session_events` row: the pipeline saw a session open or close."""

    time: datetime
    event: Literal["open", "close"]
    session_date: date
    calendar: str


class SessionsOut(BaseModel):
    symbol: str
    calendar: str = Field(description="The ticker's market calendar (default if no ticker).")
    effective_calendar: str = Field(
        description="The calendar the pipeline follows: `calendar` unless "
        "`SENTINEL_CALENDAR_OVERRIDE` is set."
    )
    time_zone: str = Field(description="The market's IANA time zone.")
    time: datetime = Field(description="The server's clock, which the rest is relative to.")
    local_date: date = Field(description="Today's date in the market's time zone.")
    open_now: bool
    today: SessionOut | None = Field(
        description="The session open now, or today's before its open or after its close; "
        "null on a day without one (a weekend, a holiday)."
    )
    next: SessionOut = Field(description="The next session to open.")
    last_event: SessionEventOut | None = Field(
        description="The newest `session_events` row of the symbol, if any."
    )


# -- bars and metrics ----------------------------------------------------------------------


class BarOut(BaseModel):
    time: datetime = Field(description="Start of the bar (or of the bucket).")
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float | None
    vwap: float | None
    trades: int
    bar_seconds: int = Field(description="Length of the bar, or of the bucket.")
    revision: int = Field(
        default=0,
        description="How often late trades rewrote the bar after it closed (0: as it "
        "closed); for a bucket, the highest of its bars'.",
    )


class BarsOut(BaseModel):
    symbol: str
    interval_s: int | None = Field(description="Bucket length; null for the stored bars.")
    order: Order
    count: int
    bars: list[BarOut]


class MetricOut(BaseModel):
    time: datetime = Field(description="Start of the bar (or of the bucket).")
    log_return: float | None = Field(description="Per bar; summed over a bucket.")
    realized_vol: float | None = Field(description="Per-bar std; last value of a bucket.")
    ewma_vol: float | None = Field(description="Per-bar std; last value of a bucket.")
    realized_vol_ann: float | None
    ewma_vol_ann: float | None
    sharpe: float | None
    bars_seen: int


class MetricsOut(BaseModel):
    symbol: str
    interval_s: int | None = Field(description="Bucket length; null for the stored rows.")
    order: Order
    count: int
    metrics: list[MetricOut]


# -- forecasts and models ------------------------------------------------------------------


class ForecastOut(BaseModel):
    model: str
    target: str
    horizon: int
    time: datetime = Field(description="Expected start of the forecast bar.")
    value: float | None
    lower: float | None
    upper: float | None
    made_at: datetime = Field(description="Start of the last bar the model had seen.")
    scores: dict[str, float | None] | None = Field(
        default=None, description="The model's latest score per metric (latest mode only)."
    )
    scores_time: datetime | None = Field(default=None, description="When they were scored.")
    last_checkpoint: datetime | None = Field(
        default=None, description="Time of the model's newest checkpoint (latest mode only)."
    )


class ForecastsOut(BaseModel):
    symbol: str
    mode: Literal["latest", "history"]
    count: int
    forecasts: list[ForecastOut]


class CheckpointOut(BaseModel):
    time: datetime
    version: int
    bars_seen: int


class ModelOut(BaseModel):
    model: str
    target: str | None = Field(description="null for models that forecast nothing (anomaly).")
    scores: dict[str, float | None]
    scores_time: datetime | None
    checkpoint: CheckpointOut | None


class ModelsOut(BaseModel):
    symbol: str
    models: list[ModelOut]


# -- alerts --------------------------------------------------------------------------------


class AlertOut(BaseModel):
    time: datetime
    symbol: str
    kind: str
    severity: str
    value: float | None
    threshold: float | None
    message: str


class GrafanaAlert(BaseModel):
    """One alert of a Grafana webhook notification (extra fields are kept)."""

    model_config = ConfigDict(extra="allow")

    status: str = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None  # Grafana's own field names
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None


class GrafanaWebhook(BaseModel):
    """Grafana's webhook contact point payload (extra fields are kept)."""

    model_config = ConfigDict(extra="allow")

    receiver: str | None = None
    status: str
    alerts: list[GrafanaAlert] = Field(default_factory=list)
    title: str | None = None
    message: str | None = None
    groupKey: str | None = None
    externalURL: str | None = None


class NotificationsStored(BaseModel):
    stored: int = Field(description="Rows stored: one per alert (one for a payload without).")
    ids: list[int]
    alerts_left_out: int = Field(
        default=0, description="Alerts beyond `SENTINEL_API_NOTIFICATION_MAX_ALERTS`, not stored."
    )


class NotificationOut(BaseModel):
    id: int
    received_at: datetime
    status: str
    rule_uid: str | None
    title: str | None
    message: str | None
    payload: dict[str, Any]
