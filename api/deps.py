"""FastAPI dependencies: settings, the database pool, the clock, the stream hub, API keys.

Everything lives on ``app.state`` (set by :func:`api.main.create_app` and its lifespan);
each ``request_*`` function reads one of them, and tests swap any of it through
``app.dependency_overrides``.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.errors import ApiError
from api.stream import StreamHub
from sentinel.settings import Settings

# The API's clock: an aware UTC datetime (the dataflows' own clock counts epoch ns).
WallClock = Callable[[], datetime]
T = TypeVar("T")

# Every dependency is a coroutine function: FastAPI runs any other callable (a plain
# function, a class) in its thread pool, a thread hop per request and dependency that
# cost more than the query behind a latest endpoint.


def on_the_loop(cls: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``cls`` as a dependency that FastAPI builds on the event loop (its parameters, from
    ``cls``'s signature, are the request's), instead of in its thread pool."""

    async def build(**values: Any) -> T:
        return cls(**values)

    build.__signature__ = inspect.signature(cls, eval_str=True)  # type: ignore[attr-defined]
    build.__name__ = build.__qualname__ = getattr(cls, "__name__", "dependency")
    return build


async def request_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def request_pool(request: Request) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] | None = getattr(request.app.state, "pool", None)
    if pool is None:
        raise ApiError(503, "database pool not open (the application is starting or stopping)")
    return pool


async def pooled_connection(
    pool: Annotated[AsyncConnectionPool[Any], Depends(request_pool)],
) -> AsyncIterator[AsyncConnection[Any]]:
    async with pool.connection() as conn:
        yield conn


async def request_clock(request: Request) -> WallClock:
    clock: WallClock = request.app.state.clock
    return clock


async def request_hub(request: Request) -> StreamHub:
    hub: StreamHub | None = getattr(request.app.state, "hub", None)
    if hub is None:
        raise ApiError(503, "stream not available (the application is starting or stopping)")
    return hub


SettingsDep = Annotated[Settings, Depends(request_settings)]
PoolDep = Annotated[AsyncConnectionPool[Any], Depends(request_pool)]
ConnDep = Annotated[AsyncConnection[Any], Depends(pooled_connection)]
ClockDep = Annotated[WallClock, Depends(request_clock)]
HubDep = Annotated[StreamHub, Depends(request_hub)]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="SENTINEL_API_KEY, when one is configured."
)
_bearer = HTTPBearer(auto_error=False, description="The same key as `Authorization: Bearer`.")


def _check_key(settings: Settings, header: str | None, bearer: str | None) -> None:
    if settings.api_key is None:
        return
    given = header or bearer
    if not given:
        raise ApiError(401, "API key required: send it in the X-API-Key header")
    if not secrets.compare_digest(given.encode(), settings.api_key.get_secret_value().encode()):
        raise ApiError(403, "API key not valid")


async def require_api_key(
    settings: SettingsDep,
    header: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Mutating requests: the key is needed whenever one is configured."""
    _check_key(settings, header, bearer.credentials if bearer else None)


async def require_read_key(
    settings: SettingsDep,
    header: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """Reads: open unless ``SENTINEL_API_READ_KEY_REQUIRED`` is set."""
    if settings.api_read_key_required:
        _check_key(settings, header, bearer.credentials if bearer else None)


WriteAccess = Depends(require_api_key)
ReadAccess = Depends(require_read_key)
