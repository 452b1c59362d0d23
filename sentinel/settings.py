"""All configuration, read once from the environment (prefix ``SENTINEL_``) or ``.env``.

Library code never reads the environment: the CLI builds one :class:`Settings` and passes
plain values down.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from dataflows.config import (
    AlertConfig,
    BarConfig,
    CheckpointConfig,
    MetricsConfig,
    ParseConfig,
)

if TYPE_CHECKING:
    from timescale.embedded import EmbeddedPostgres

_BARS, _PARSE, _METRICS = BarConfig(), ParseConfig(), MetricsConfig()
_ALERTS, _CHECKPOINTS = AlertConfig(), CheckpointConfig()

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "admin", "xxx", "todo"}


def default_api_workers() -> int:
    """A worker per core, at most 4: each holds its own pool and stream connection."""
    return max(1, min(4, os.cpu_count() or 1))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SENTINEL_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "SENTINEL_DATABASE_URL"),
        description="Use this PostgreSQL/TimescaleDB instead of the embedded one.",
    )
    home: Path = Field(default=Path(".sentinel"), description="Embedded database and state.")
    pg_bin: Path | None = Field(default=None, description="PostgreSQL binaries (auto).")
    db_os_user: str = Field(default="postgres", description="OS user for the server as root.")
    grafana_db_password: SecretStr | None = Field(
        default=None, description="Password given to the read-only Grafana role on migrate."
    )
    log_level: str = "INFO"

    # -- feed --------------------------------------------------------------------------
    feed_url: str = Field(
        default="ws://127.0.0.1:8765", description="Finnhub-protocol websocket (the simulator)."
    )
    finnhub_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("FINNHUB_TOKEN", "SENTINEL_FINNHUB_TOKEN")
    )
    symbols: str = Field(
        default="AAPL,MSFT,NVDA,AMZN,TSLA",
        description="Tickers put in the `tickers` table when it is empty.",
    )
    simulate: bool = Field(default=True, description="`sentinel up` starts the simulator feed.")
    sim_port: int = 8765
    sim_seed: int = 42
    sim_rate: float = Field(default=20.0, description="Simulated trades/s per symbol.")
    journal_path: Path | None = Field(
        default=None, description="The feed journal (default: $SENTINEL_HOME/journal/feed.sqlite3)."
    )
    journal_retention_h: float = Field(
        default=24.0, gt=0, description="Keep processed journal entries this long (hours)."
    )
    feed_silent_after_s: float = Field(
        default=60.0,
        gt=0,
        description="Reconnect when an open feed connection sends no message (trade or "
        "ping) for this long.",
    )
    backfill: Literal["auto", "tick", "candle", "off"] = Field(
        default="auto",
        description="After a reconnect, fetch the gap from the REST API: `tick` "
        "(/stock/tick), `candle` (/stock/candle minute bars), `auto` (tick, falling back "
        "to candle where ticks are refused), `off`.",
    )
    finnhub_rest_url: str = Field(
        default="https://finnhub.io/api/v1",
        description="Finnhub's REST API, for gap backfill (`sentinel up`'s simulator "
        "serves its own).",
    )
    backfill_requests_per_min: float = Field(
        default=30.0, gt=0, description="Rate limit of backfill requests to the REST API."
    )
    backfill_max_gap_s: float = Field(
        default=900.0, gt=0, description="Backfill at most this much of a longer gap (its end)."
    )

    # -- the trading day ---------------------------------------------------------------
    calendar: str = Field(
        default="XNYS",
        description="Market calendar (an exchange_calendars code, or 24/7) of tickers added "
        "without one and of replayed symbols not in `tickers`.",
    )
    calendar_override: str = Field(
        default="",
        description="Treat every symbol as on this calendar, whatever `tickers` says "
        "(`sentinel up`'s demo sets 24/7 unless run with --sessions).",
    )
    extended_hours_in_bars: bool = Field(
        default=False,
        description="Trades outside the regular session enter bars (they are always stored).",
    )
    archive_uri: str | None = Field(
        default=None,
        description="End-of-day Parquet archive: a directory or a pyarrow filesystem URI "
        "such as s3://bucket/prefix (default: $SENTINEL_HOME/archive).",
    )
    ticks_retention_days: float = Field(
        default=90.0,
        ge=0,
        description="Drop `ticks` chunks older than this many days once archived and "
        "verified (0: never). Apache-only servers; community servers use migration 0004.",
    )
    archive_every_s: float = Field(
        default=600.0, gt=0, description="`sentinel up`: archive and retention interval."
    )

    # -- dataflow ----------------------------------------------------------------------
    # The defaults are the configuration dataclasses' own (dataflows.config).
    bar: str = Field(
        default=f"{_BARS.bar_seconds}s", description="Bar length: 1s to 1d (e.g. 5s, 1m, 1h, 1d)."
    )
    late_allowance_s: float = _BARS.allowance_s
    conditions: Literal["tape", "all"] = Field(
        default=_BARS.conditions,
        description="Trade conditions: `tape` applies the consolidated tape's rules "
        "(dataflows/conditions.csv: odd lots move volume, not prices; ...); `all` lets "
        "every print update every field. Zero-size updates never move volume or VWAP.",
    )
    revision_window_s: float = Field(
        default=_BARS.revision_window_s,
        ge=0,
        description="A trade arriving up to this long after its bar closed revises the bar "
        "(0: every late trade is a `late` reject).",
    )
    max_future_s: float = _PARSE.max_future_s
    max_past_s: float = _PARSE.max_past_s
    metrics_window: int = _METRICS.window
    ewma_lambda: float = _METRICS.ewma_lambda
    risk_free_rate: float = _METRICS.risk_free_rate
    spike_ratio: float = _ALERTS.spike_ratio
    spike_rearm_ratio: float = _ALERTS.rearm_ratio
    spike_baseline_bars: int = _ALERTS.baseline_bars
    spike_min_history: int = _ALERTS.min_history
    jump_sigmas: float = _ALERTS.jump_sigmas
    stale_after_s: float = _ALERTS.stale_after_s
    sink_batch_rows: int = 50_000
    sink_backoff_max_s: float = Field(
        default=5.0,
        ge=0.2,
        description="Longest wait between a sink's retries while the database is down "
        "(at most 0.2 s at first, doubling, full jitter): rows flow again at most this "
        "long after it is back.",
    )
    model_horizons: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(1,),
        description="Bars ahead every model forecasts, comma-separated, 1 among them "
        "(1,5,22: also a week and a month of daily bars; each is a model of its own).",
    )
    checkpoint_every_s: float = Field(
        default=_CHECKPOINTS.every_s, description="Model checkpoint interval."
    )
    checkpoint_clock: str = Field(
        default=_CHECKPOINTS.clock, description="'event' or 'system' time."
    )
    workers: int = 1
    processes: int = Field(
        default=1,
        ge=1,
        description="`sentinel up`: the dataflow as a Bytewax cluster of this many processes.",
    )
    price_band: float = Field(
        default=_BARS.price_band,
        description="Refuse trades this factor away from the recent median (0: off).",
    )
    recovery: bool = Field(default=True, description="Bytewax recovery for the live dataflow.")
    recovery_dir: Path | None = Field(
        default=None, description="Recovery state (default: $SENTINEL_HOME/recovery/bar-<bar>)."
    )
    snapshot_interval_s: float = Field(default=10.0, gt=0, description="Recovery snapshots.")
    backup_interval_s: float = Field(
        default=0.0, ge=0, description="Keep superseded recovery snapshots this long."
    )
    restart_backoff_s: float = Field(
        default=1.0, gt=0, description="`sentinel up`: first wait before restarting a child."
    )
    restart_backoff_max_s: float = Field(default=30.0, gt=0, description="Longest such wait.")

    # -- HTTP API ----------------------------------------------------------------------
    api_host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(default=8000, ge=1, le=65_535, description="Port of the API.")
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, mutating requests need it in the X-API-Key header "
        "(or `Authorization: Bearer <key>`).",
    )
    api_read_key_required: bool = Field(
        default=False, description="Reads need the API key too (not /health nor /docs)."
    )
    cors_origins: str = Field(
        default="", description="Comma-separated origins allowed by CORS ('*' for any)."
    )
    api_default_limit: int = Field(default=1000, ge=1, description="Rows when no limit given.")
    api_max_limit: int = Field(default=10_000, ge=1, description="Largest `limit` accepted.")
    api_workers: int = Field(
        default_factory=lambda: default_api_workers(),
        ge=1,
        le=64,
        description="uvicorn worker processes of the API (default: the cores, at most 4).",
    )
    api_db_pool_size: int = Field(
        default=10, ge=1, description="Largest database pool of each API worker."
    )
    api_db_timeout_s: float = Field(
        default=5.0, gt=0, description="Wait at most this for a database connection (else 503)."
    )
    api_statement_timeout_s: float = Field(default=15.0, gt=0, description="Per query.")
    api_stream_keepalive_s: float = Field(
        default=15.0, gt=0, description="Keep-alive comment interval on /stream."
    )
    api_stream_queue: int = Field(
        default=1000, ge=1, description="Events buffered per /stream client before dropping."
    )
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1, description="Largest request body, in bytes (else 413)."
    )
    api_notification_max_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="Most one stored Grafana notification takes (payload, title, message), "
        "in bytes; longer strings are cut to fit.",
    )
    api_notification_max_alerts: int = Field(
        default=100,
        ge=1,
        description="Alerts stored per webhook call; the rest are counted in truncatedAlerts.",
    )

    # -- dashboard (GET /) -------------------------------------------------------------
    dashboard_charts_js: Path | None = Field(
        default=None,
        description="lightweight-charts' standalone build the dashboard loads (default: "
        "node_modules/ beside the packages, or the app image's copy).",
    )
    dashboard_time_zone: str | None = Field(
        default=None,
        description="IANA time zone of the dashboard's times (default: the time zone of "
        "SENTINEL_CALENDAR's market; UTC for 24/7).",
    )

    @field_validator("grafana_db_password")
    @classmethod
    def _no_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and v.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real secret")
        return v

    @field_validator("finnhub_token")
    @classmethod
    def _real_token(cls, v: SecretStr | None) -> SecretStr | None:
        return cls._no_placeholder(v)

    @field_validator("api_key")
    @classmethod
    def _real_api_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            return None  # an empty SENTINEL_API_KEY means "no key"
        if v is not None and len(v.get_secret_value().strip()) < 8:
            raise ValueError("is too short; use at least 8 characters")
        return cls._no_placeholder(v)

    @field_validator("model_horizons", mode="before")
    @classmethod
    def _horizons(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                v = tuple(int(part) for part in v.split(",") if part.strip())
            except ValueError:
                raise ValueError("must be whole numbers separated by commas, e.g. 1,5,22") from None
        if isinstance(v, list | tuple):
            if 1 not in v or min(v) < 1 or max(v) > 1000 or len(set(v)) != len(v):
                raise ValueError("must be distinct whole numbers from 1 to 1000, including 1")
            return tuple(sorted(v))
        return v

    @field_validator("calendar", "calendar_override")
    @classmethod
    def _known_calendar(cls, v: str) -> str:
        from dataflows.calendar_names import normalize

        return normalize(v) if v.strip() else ""

    @field_validator("dashboard_time_zone")
    @classmethod
    def _known_time_zone(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        try:
            ZoneInfo(v.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name, e.g. America/New_York)"
            ) from None
        return v.strip()

    @model_validator(mode="after")
    def _read_key_needs_a_key(self) -> Settings:
        if self.api_read_key_required and self.api_key is None:
            raise ValueError("api_read_key_required needs SENTINEL_API_KEY to be set")
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def symbol_list(self) -> list[str]:
        return [s.strip().upper() for s in self.symbols.split(",") if s.strip()]

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def journal_file(self) -> Path:
        return self.journal_path or self.home_dir / "journal" / "feed.sqlite3"

    @property
    def archive_location(self) -> str:
        """Where the end-of-day archive goes: ``archive_uri``, or a directory in the home."""
        return self.archive_uri or str(self.home_dir / "archive")

    def recovery_path(self, bar: str) -> Path:
        """Recovery state is kept per bar length: bars of another length cannot resume it."""
        return self.recovery_dir or self.home_dir / "recovery" / f"bar-{bar}"


def embedded_database(settings: Settings) -> EmbeddedPostgres:
    """The embedded TimescaleDB these settings describe (started or not)."""
    from timescale.embedded import EmbeddedPostgres

    return EmbeddedPostgres(settings.home_dir, settings.pg_bin, settings.db_os_user)


def database_url(settings: Settings, *, start: bool = False) -> str:
    """The DSN everything uses: ``DATABASE_URL`` if set, else the embedded database's
    (started first when ``start``; else it must be running)."""
    if settings.database_url:
        return settings.database_url
    db = embedded_database(settings)
    if start:
        db.start()
    return db.dsn()


@lru_cache
def get_settings() -> Settings:
    return Settings()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_interval(text: str) -> int:
    """'5s', '1m', '15m', '1h', '1d' or a number of seconds -> seconds."""
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * _UNITS[t[-1]] if t and t[-1] in _UNITS else float(t)
    except ValueError:
        raise ValueError(f"not an interval: {text!r} (use e.g. 5s, 1m, 1h, 1d)") from None
    if value != int(value) or value <= 0:
        raise ValueError(f"interval must be a whole, positive number of seconds: {text!r}")
    return int(value)
