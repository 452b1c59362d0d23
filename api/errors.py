"""One JSON shape for every error: ``{"error": "<what is wrong>", "detail": ...}``.

Bad input is 422 with a sentence naming the parameter, an unknown symbol 404, a missing
or wrong API key 401/403, and an unreachable database 503 (the pool reconnects by
itself, so the service recovers when the database returns).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolClosed, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas import SYMBOL_RULE, ErrorOut

log = logging.getLogger(__name__)

TIME_PARAMS = {"start", "end", "since", "until"}


class ApiError(Exception):
    """An error with its status and a message for the client."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


def bad_request(error: str, detail: Any = None) -> ApiError:
    return ApiError(422, error, detail)


def not_found(error: str) -> ApiError:
    return ApiError(404, error)


def error_response(status: int, error: str, detail: Any = None) -> JSONResponse:
    body = ErrorOut(error=error, detail=detail).model_dump(mode="json")
    return JSONResponse(body, status_code=status)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an endpoint can answer."""
    text = {
        401: "API key missing",
        403: "API key wrong",
        404: "Unknown symbol or row",
        422: "Invalid request: the message says which parameter and why",
        503: "Database unavailable",
    }
    return {s: {"model": ErrorOut, "description": text[s]} for s in statuses}


def _where(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if not parts:
        return "request"
    place, names = parts[0], parts[1:]
    name = ".".join(names)
    if place == "body":
        return f"body field '{name}'" if name else "request body"
    if place in {"query", "path", "header"}:
        return f"{place} parameter '{name}'"
    return ".".join(parts)


def describe_validation(errors: Sequence[Any]) -> str:
    """One sentence for FastAPI's validation errors, naming each parameter."""
    sentences = []
    for err in errors:
        loc = err.get("loc", ())
        name = str(loc[-1]) if loc else ""
        msg = str(err.get("msg", "invalid"))
        if name == "symbol" and err.get("type") in {"string_pattern_mismatch", "string_too_long"}:
            msg = f"bad symbol {err.get('input')!r}: {SYMBOL_RULE}"
        elif name in TIME_PARAMS and err.get("type") == "string_pattern_mismatch":
            msg = f"bad time {err.get('input')!r}: expected ISO 8601, e.g. 2024-05-01T13:30:00Z"
        sentences.append(f"{_where(loc)}: {msg}")
    return "invalid request: " + "; ".join(sentences)


def _plain(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        item = {
            "loc": list(err.get("loc", ())),
            "msg": str(err.get("msg")),
            "type": err.get("type"),
        }
        if isinstance(err.get("input"), str | int | float | bool):
            item["input"] = err["input"]
        out.append(item)
    return out


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    return error_response(422, describe_validation(errors), _plain(errors))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.detail)


def _allowed_methods(request: Request) -> str:
    """Every method the path takes (FastAPI makes one route per method)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    status = exc.status_code
    if status == 400:  # FastAPI's "error parsing the body" (e.g. not UTF-8): bad input
        status, detail = 422, f"invalid request body: {detail}"
    response = error_response(status, detail)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        response.headers["Allow"] = _allowed_methods(request)
    return response


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable for %s %s: %s", request.method, request.url.path, exc)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return error_response(503, f"database unavailable: {reason}", {"retry": True})


async def _query_timeout(request: Request, exc: Exception) -> JSONResponse:
    log.warning("statement timeout on %s %s", request.method, request.url.path)
    return error_response(503, "database query timed out; narrow the request", {"retry": True})


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return error_response(422, f"the database refused a value: {reason}")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("database error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal database error", None)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
    for exc in (psycopg.OperationalError, PoolTimeout, PoolClosed):
        app.add_exception_handler(exc, _database_down)
    app.add_exception_handler(psycopg.errors.QueryCanceled, _query_timeout)
    app.add_exception_handler(psycopg.errors.DataError, _data_error)
    app.add_exception_handler(psycopg.Error, _database_error)
