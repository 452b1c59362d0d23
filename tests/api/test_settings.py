"""The API's settings refuse what would make the service insecure or unusable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.api.conftest import settings


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"api_key": "changeme"}, "placeholder"),
        ({"api_key": "short"}, "at least 8 characters"),
        ({"api_read_key_required": True}, "needs SENTINEL_API_KEY"),
        ({"api_port": 0}, "api_port"),
        ({"api_max_limit": 0}, "api_max_limit"),
    ],
)
def test_bad_api_settings_are_refused(overrides: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        settings(**overrides)


def test_api_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENTINEL_API_KEY", "a-real-key-42")
    monkeypatch.setenv("SENTINEL_CORS_ORIGINS", "http://a.example, http://b.example")
    monkeypatch.setenv("SENTINEL_API_READ_KEY_REQUIRED", "true")
    s = settings()
    assert s.api_key is not None
    assert s.api_key.get_secret_value() == "a-real-key-42"
    assert s.cors_origin_list == ["http://a.example", "http://b.example"]
    assert (s.api_host, s.api_port, s.api_max_limit) == ("127.0.0.1", 8000, 10_000)
    monkeypatch.setenv("SENTINEL_API_KEY", "")
    monkeypatch.setenv("SENTINEL_API_READ_KEY_REQUIRED", "false")
    assert settings().api_key is None, "an empty key means no key"
