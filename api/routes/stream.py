"""``GET /stream``: server-sent events for new bars, forecasts and alerts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import HubDep, ReadAccess, SettingsDep
from api.errors import bad_request, text_responses
from api.params import check_kinds, split_list
from api.schemas import SYMBOL_PATTERN, SYMBOL_RULE

router = APIRouter(prefix="/stream", tags=["stream"], dependencies=[ReadAccess])

DESCRIPTION = (
    "Server-sent events, one per new row: `event: bar|forecast|alert`, `data:` the row as "
    "JSON with `kind` and `symbol` (times in UTC; for an alert, `kind` is the alert's own "
    "kind, e.g. `price_jump`). A comment line `: keep-alive` comes "
    "every SENTINEL_API_STREAM_KEEPALIVE_S seconds. Live and at-most-once: rows written "
    "while the server was reconnecting to the database, or beyond a slow client's buffer, "
    "are not replayed (read them from /bars, /forecasts, /alerts)."
)


def _symbols(text: str | None) -> set[str] | None:
    symbols = split_list("symbols", text)
    for s in symbols:
        if not re.fullmatch(SYMBOL_PATTERN, s):
            raise bad_request(f"bad symbol {s!r} in 'symbols': {SYMBOL_RULE}")
    return {s.upper() for s in symbols} or None


@router.get(
    "",
    response_class=StreamingResponse,
    description=DESCRIPTION,
    responses=text_responses("text/event-stream", "An endless event stream", 401, 403, 422, 503),
)
async def stream(
    hub: HubDep,
    settings: SettingsDep,
    symbols: Annotated[
        str | None,
        Query(max_length=4000, description="Comma-separated symbols (default: all)."),
    ] = None,
    kinds: Annotated[
        str | None,
        Query(max_length=100, description="Comma-separated: bar, forecast, alert (default all)."),
    ] = None,
) -> StreamingResponse:
    wanted_symbols, wanted_kinds = _symbols(symbols), check_kinds(kinds)
    keepalive = settings.api_stream_keepalive_s

    async def events() -> AsyncIterator[str]:
        with hub.subscribe(wanted_symbols, wanted_kinds) as sub:
            yield "retry: 3000\n: connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), keepalive)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield event.sse()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
