"""``/alerts``: the pipeline's alerts, and Grafana's notifications (its webhook contact
point posts to ``/alerts/notifications``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from api.body import JsonBodyRoute
from api.deps import PoolDep, ReadAccess, SettingsDep, WriteAccess
from api.errors import responses
from api.notifications import notification_rows
from api.params import check_limit, check_order, time_query, to_utc
from api.queries.alerts import alert_rows
from api.queries.notifications import received_notifications, store_notifications
from api.schemas import (
    SYMBOL_PATTERN,
    AlertOut,
    GrafanaWebhook,
    NotificationOut,
    NotificationsStored,
)

router = APIRouter(
    prefix="/alerts", tags=["alerts"], dependencies=[ReadAccess], route_class=JsonBodyRoute
)

Since = Annotated[str | None, time_query("From this time, inclusive (ISO 8601).")]
Until = Annotated[str | None, time_query("Before this time (ISO 8601).")]
Limit = Annotated[int | None, Query(ge=1, description="Rows to return, newest first.")]
# Notifications are up to `api_notification_max_bytes` each: fewer per answer.
NOTIFICATIONS_DEFAULT_LIMIT = 100
NOTIFICATIONS_MAX_LIMIT = 1000
NotificationsLimit = Annotated[
    int | None,
    Query(
        ge=1,
        le=NOTIFICATIONS_MAX_LIMIT,
        description=f"Rows to return, newest first (default {NOTIFICATIONS_DEFAULT_LIMIT}).",
    ),
]


@router.get("", response_model=list[AlertOut], responses=responses(401, 403, 422, 503))
async def list_alerts(
    pool: PoolDep,
    settings: SettingsDep,
    symbol: Annotated[
        str | None, Query(pattern=SYMBOL_PATTERN, max_length=32, description="Only this symbol.")
    ] = None,
    kind: Annotated[
        str | None,
        Query(pattern=r"^[a-z_]{1,64}$", description="volatility_spike, price_jump, stale_feed"),
    ] = None,
    severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = None,
) -> list[AlertOut]:
    """Alerts, newest first, filtered by symbol, kind, severity and time."""
    lo, hi = to_utc("since", since), to_utc("until", until)
    check_order(lo, hi)
    n = check_limit(settings, limit)
    sym = symbol.upper() if symbol else None
    async with pool.connection() as conn:
        rows = await alert_rows(
            conn, symbol=sym, kind=kind, severity=severity, since=lo, until=hi, limit=n
        )
    return [AlertOut(**r) for r in rows]


@router.post(
    "/notifications",
    response_model=NotificationsStored,
    status_code=status.HTTP_201_CREATED,
    dependencies=[WriteAccess],
    responses=responses(401, 403, 413, 415, 422, 503),
)
async def receive_notification(
    body: GrafanaWebhook, pool: PoolDep, settings: SettingsDep
) -> NotificationsStored:
    """Grafana's webhook contact point. Stores one `alert_notifications` row per alert in
    the payload (status, rule uid, title = `summary` annotation or `alertname`, message =
    `description` annotation or the payload's message), each with the payload's envelope
    and that alert as JSON; a payload without alerts is stored as one row. At most
    `SENTINEL_API_NOTIFICATION_MAX_ALERTS` alerts are stored (the rest are counted in
    `truncatedAlerts`), and each row takes at most `SENTINEL_API_NOTIFICATION_MAX_BYTES`
    (longer strings are cut; the payload's `_truncated` says so). Needs the API key when
    one is configured (Grafana: an `X-API-Key` header, or the key as the Authorization
    credentials with scheme `Bearer`)."""
    payload = body.model_dump(mode="json", exclude_none=True)
    rows = notification_rows(
        payload, settings.api_notification_max_alerts, settings.api_notification_max_bytes
    )
    async with pool.connection() as conn:
        ids = await store_notifications(conn, rows)
    left_out = max(0, len(body.alerts) - settings.api_notification_max_alerts)
    return NotificationsStored(stored=len(ids), ids=ids, alerts_left_out=left_out)


@router.get(
    "/notifications",
    response_model=list[NotificationOut],
    responses=responses(401, 403, 422, 503),
)
async def list_notifications(
    pool: PoolDep,
    settings: SettingsDep,
    status_: Annotated[
        str | None, Query(alias="status", max_length=32, description="firing or resolved")
    ] = None,
    since: Since = None,
    limit: NotificationsLimit = None,
) -> list[NotificationOut]:
    """Notifications received from Grafana, newest first."""
    lo = to_utc("since", since)
    n = check_limit(settings, limit or min(NOTIFICATIONS_DEFAULT_LIMIT, settings.api_max_limit))
    async with pool.connection() as conn:
        rows = await received_notifications(conn, status=status_, since=lo, limit=n)
    return [NotificationOut(**r) for r in rows]
