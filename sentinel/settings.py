"""All configuration, read once from the environment (prefix ``SENTINEL_``) or ``.env``.

Library code never reads the environment: the CLI builds one :class:`Settings` and passes
plain values down.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "admin", "xxx", "todo"}


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

    @field_validator("grafana_db_password")
    @classmethod
    def _no_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and v.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder; set a real secret")
        return v

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    return Settings()
