"""Request bodies: a size limit enforced as they stream in, and JSON the database can store.

- Every request body counts against ``api_max_body_bytes`` (:class:`BodyLimitMiddleware`,
  pure ASGI, so it holds for chunked bodies without ``Content-Length`` too): a declared
  length over the limit is a 413 at once, without reading the body; a body that grows
  past it is a 413 as soon as it does.
- A route that takes a JSON body (:class:`JsonBodyRoute`) wants
  ``Content-Type: application/json`` (else 415) and JSON that can be stored (else 422):
  UTF-8, at most :data:`MAX_DEPTH` levels of nesting, numbers of at most
  :data:`MAX_NUMBER_CHARS` characters written out in full (``1e99`` is fine; ``1e100``,
  ``NaN`` and ``Infinity`` are not: PostgreSQL's ``jsonb`` writes every number out in
  full), and no NUL character or lone UTF-16 surrogate in any string or key (PostgreSQL
  stores neither; the message names the field).
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import override

from api.asgi import HttpMiddleware
from api.errors import ApiError, echo, error_response

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 100
JSON_TYPE = "Content-Type: application/json"


# -- the size limit ------------------------------------------------------------------------


class BodyTooLarge(StarletteHTTPException):
    """Raised by the limited ``receive``; FastAPI passes HTTP exceptions from reading the
    body on to the exception handlers, which answer 413 with the usual JSON."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body too large: the limit is {max_bytes} bytes")


class BodyLimitMiddleware(HttpMiddleware):
    """Refuses request bodies over ``max_bytes`` with a 413, counting the bytes as they
    are received (never buffering them)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes

    @override
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            # Answered before the body is read: the server discards it and the
            # connection stays usable.
            too_large = BodyTooLarge(self.max_bytes)
            await error_response(413, too_large.detail)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as exc:  # read outside a route (the handlers did not see it)
            if started:
                raise
            await error_response(413, exc.detail)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    text = Headers(scope=scope).get("content-length")
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# -- JSON bodies ---------------------------------------------------------------------------


class _BadNumber(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def written_out(number: str) -> int:
    """The characters the number ``number`` (JSON or Python's float repr) takes written
    out in full, as PostgreSQL's ``numeric`` prints it: ``1e+20`` takes 21."""
    sign, digits, exponent = Decimal(number).as_tuple()
    assert isinstance(exponent, int), number  # never NaN or Infinity here
    if exponent >= 0:
        return sign + len(digits) + exponent
    return sign + max(len(digits), 1 - exponent) + 1


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(text)
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS or written_out(text) > MAX_NUMBER_CHARS:
        raise _BadNumber(text)
    return float(text)


def _constant(text: str) -> float:
    raise _BadNumber(text)  # NaN, Infinity, -Infinity: Python's extensions, not JSON


def _body_error(
    msg: str, loc: tuple[str | int, ...] = (), kind: str = "body_invalid"
) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body", *loc), "msg": msg}])


def _unstorable(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text`` (None when it can)."""
    if "\x00" in text:
        return f"contains a NUL character (at position {text.index(chr(0))})"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            char = text[exc.start]
            return (
                f"contains a lone surrogate ({char!a} at position {exc.start}), "
                "which is not Unicode text"
            )
    return None


def check_storable(value: Any, path: tuple[str | int, ...] = (), depth: int = 1) -> None:
    """Refuses (422) nesting deeper than :data:`MAX_DEPTH` and strings or keys that
    PostgreSQL cannot store, naming the field."""
    if depth > MAX_DEPTH:
        raise _body_error(f"nested deeper than {MAX_DEPTH} levels", path, "body_too_deep")
    if isinstance(value, str):
        if why := _unstorable(value):
            raise _body_error(f"{why}; PostgreSQL cannot store it", path, "string_unstorable")
    elif isinstance(value, dict):
        for key, item in value.items():
            if why := _unstorable(key):
                raise _body_error(f"key {why}; PostgreSQL cannot store it", path, "key_unstorable")
            check_storable(item, (*path, key), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_storable(item, (*path, i), depth + 1)


def parse_json(body: bytes) -> Any:
    """``body`` as JSON, or a 422 that says what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _body_error(
            f"not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})",
            kind="utf8_invalid",
        ) from None
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise _body_error(
            f"JSON decode error: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            kind="json_invalid",
        ) from None
    except _BadNumber as exc:
        raise _body_error(
            f"number {echo(exc.text)} is not accepted: a number may take at most "
            f"{MAX_NUMBER_CHARS} characters written out in full (1e99, not 1e100; no NaN "
            "or Infinity)",
            kind="number_invalid",
        ) from None
    except RecursionError:
        raise _body_error(f"nested deeper than {MAX_DEPTH} levels", kind="body_too_deep") from None
    check_storable(value)
    return value


def is_json(content_type: str | None) -> bool:
    """FastAPI's rule: ``application/json`` or ``application/*+json``."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _check_json_type(content_type: str | None) -> None:
    """415 unless the body is declared JSON; the message says what was sent."""
    if not is_json(content_type):
        sent = f"got {echo(content_type)}" if content_type else "none was sent"
        raise ApiError(415, f"request body must be JSON: send {JSON_TYPE} ({sent})")


class _JsonRequest(Request):
    @override
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """A route whose JSON body is read and checked (415, 422) before FastAPI validates it
    against the route's model; routes without a body are left as they are."""

    @override
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            request = _JsonRequest(request.scope, request.receive)
            try:
                body = await request.body()
            except ClientDisconnect:  # nobody to answer; not a server error either
                raise ApiError(400, "the client disconnected while sending the body") from None
            if body:
                _check_json_type(request.headers.get("content-type"))
                await request.json()
            return await handler(request)

        return checked
