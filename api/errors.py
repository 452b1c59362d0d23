"""One JSON shape for every error: ``{"error": "<what is wrong>", "detail": ...}``.

Bad input is 422 with a sentence naming the parameter, an unknown symbol 404, a missing
or wrong API key 401/403, a request body over the limit 413, a body not sent as JSON 415,
and an unreachable database 503 (the pool reconnects by itself, so the service recovers
when the database returns).

Rendering an error cannot fail: what it echoes of the request is cut short and escaped
(lone surrogates, non-finite numbers, objects JSON cannot hold), and should rendering
still fail the answer is the status alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolClosed, PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas import DATE_PATTERN, SYMBOL_RULE, ErrorOut

log = logging.getLogger(__name__)

TIME_PARAMS = {"start", "end", "since", "until"}
TIME_EXAMPLE = "ISO 8601, e.g. 2024-05-01T13:30:00Z"
ECHO_CHARS = 64  # of a value echoed in a message
TEXT_CHARS = 2000  # of any string in an error answer
MAX_ERRORS = 10  # validation errors described; the rest are counted


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


def cut(text: str, limit: int = ECHO_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def echo(value: Any) -> str:
    """``value`` as a message may quote it: the repr (control characters and lone
    surrogates escaped) of at most its first :data:`ECHO_CHARS` characters."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"  # repr would be slow, or fail
    if isinstance(value, str):
        return cut(repr(cut(value)), 2 * ECHO_CHARS)
    return cut(repr(value))


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` made safe to render as UTF-8 JSON."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else echo(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return cut(value, TEXT_CHARS).encode("utf-8", "backslashreplace").decode("utf-8")
    if depth >= 8:
        return "…"
    if isinstance(value, dict):
        return {jsonable(str(k)): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    return jsonable(echo(value))


def error_response(status: int, error: str, detail: Any = None) -> JSONResponse:
    """The JSON error answer (:class:`~api.schemas.ErrorOut`)."""
    try:
        body = {"error": jsonable(str(error)), "detail": jsonable(detail)}
        return JSONResponse(body, status_code=status)
    except Exception:  # the error answer must go out whatever it was asked to echo
        log.exception("could not render the error for a %s answer", status)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        return JSONResponse({"error": phrase, "detail": None}, status_code=status)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an endpoint can answer."""
    text = {
        401: "API key missing",
        403: "API key wrong",
        404: "Unknown symbol or row",
        413: "Request body too large (over `SENTINEL_API_MAX_BODY_BYTES`)",
        415: "Request body not sent as JSON (`Content-Type: application/json`)",
        422: "Invalid request: the message says which parameter and why",
        503: "Database unavailable",
    }
    return {s: {"model": ErrorOut, "description": text[s]} for s in statuses}


def text_responses(
    media_type: str, description: str, *statuses: int
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for an endpoint that answers text (``media_type``), not JSON, and
    for the error statuses it can answer."""
    ok = {"content": {media_type: {"schema": {"type": "string"}}}, "description": description}
    return {200: ok, **responses(*statuses)}


def _where(loc: Sequence[Any]) -> str:
    parts = [cut(str(p)) for p in loc]
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
    for err in errors[:MAX_ERRORS]:
        loc = err.get("loc", ())
        name = str(loc[-1]) if loc else ""
        msg = str(err.get("msg", "invalid"))
        if name == "symbol" and err.get("type") in {"string_pattern_mismatch", "string_too_long"}:
            msg = f"bad symbol {echo(err.get('input'))}: {SYMBOL_RULE}"
        elif name in TIME_PARAMS and err.get("type") == "string_pattern_mismatch":
            dates = (err.get("ctx") or {}).get("pattern") == DATE_PATTERN
            expected = "YYYY-MM-DD, e.g. 2024-07-01" if dates else TIME_EXAMPLE
            msg = f"bad {'date' if dates else 'time'} {echo(err.get('input'))}: expected {expected}"
        sentences.append(f"{_where(loc)}: {msg}")
    if len(errors) > MAX_ERRORS:
        sentences.append(f"and {len(errors) - MAX_ERRORS} more")
    return "invalid request: " + "; ".join(sentences)


def _plain(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors[:MAX_ERRORS]:
        item = {
            "loc": [p if isinstance(p, int) else cut(str(p)) for p in err.get("loc", ())],
            "msg": str(err.get("msg")),
            "type": err.get("type"),
        }
        value = err.get("input")
        if isinstance(value, str):
            item["input"] = cut(value)
        elif isinstance(value, int | float | bool):
            item["input"] = jsonable(value)
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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The server logs the exception and closes the connection after this answer.
    return error_response(500, "internal error", None)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
    for exc in (psycopg.OperationalError, PoolTimeout, PoolClosed):
        app.add_exception_handler(exc, _database_down)
    app.add_exception_handler(psycopg.errors.QueryCanceled, _query_timeout)
    app.add_exception_handler(psycopg.errors.DataError, _data_error)
    app.add_exception_handler(psycopg.Error, _database_error)
    app.add_exception_handler(Exception, _unexpected)
