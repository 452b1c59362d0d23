"""Grafana-managed alert rules, contact points and the notification policy.

Every rule has the same shape: ``A`` is a SQL query in table format returning one row
per alert instance (text columns become labels, the one numeric column the value), ``B``
reduces it to its last value, ``C`` is the threshold and the rule's condition.

No-data and error states are chosen per rule: a query that returns no rows means
"nothing to watch" (no active tickers, models still warming up, no rejects), so those
rules treat it as ``OK``; the pipeline-down query always returns its one row, so no data
there means something is broken and it alerts. A failing query is reported once, by the
stale-feed rule (``Error``: Grafana raises a ``DatasourceError`` alert), and ignored by
the others so a database outage does not page six times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import alerting as alerting_models
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from grafana.common import (
    ALERT_INTERVAL_MS,
    ALERT_MAX_DATA_POINTS,
    DATASOURCE_UID,
    FOLDER_UID,
    RUNBOOK_BASE_URL,
    Sql,
)
from online_models.config import FORECAST_MODEL

RULE_GROUP = "stock-sentinel"
RULE_GROUP_INTERVAL_S = 60
EXPR_UID = "__expr__"

# Contact points. Secrets and addresses are Grafana environment variables, expanded when
# Grafana loads the provisioning files (and by `sync`, from the environment it is given).
WEBHOOK_URL = "http://api:8000/alerts/notifications"
API_KEY_VAR = "SENTINEL_API_KEY"
EMAIL_VAR = "SENTINEL_ALERT_EMAIL"
SLACK_VAR = "SENTINEL_SLACK_WEBHOOK_URL"
WEBHOOK = "Stock Sentinel API"
EMAIL = "Stock Sentinel email"
SLACK = "Stock Sentinel Slack"

# Only the model meant to beat EWMA is held to it: the naive `last` and the `rolling`
# window are comparison baselines that lose to EWMA by design.
DEGRADATION_MODELS = (FORECAST_MODEL,)

ACTIVE = "SELECT symbol FROM tickers WHERE active"
NoData = Literal["Alerting", "NoData", "OK"]
ExecErr = Literal["OK", "Alerting", "Error"]


@dataclass(frozen=True)
class RuleSpec:
    """What differs between rules; :func:`rule` turns it into the SDK's rule."""

    uid: str
    title: str
    sql: str
    window_s: int
    threshold: float
    for_: str
    severity: Literal["warning", "critical"]
    summary: str
    description: str
    anchor: str
    no_data: NoData = "OK"
    exec_err: ExecErr = "OK"


def volatility_spike() -> RuleSpec:
    return RuleSpec(
        uid="sentinel-volatility-spike",
        title="Volatility spike",
        sql="""
SELECT t.symbol, count(a.time) AS spikes
FROM tickers t
LEFT JOIN alerts a
  ON a.symbol = t.symbol AND a.kind = 'volatility_spike' AND $__timeFilter(a.time)
WHERE t.active
GROUP BY t.symbol
""",
        window_s=600,
        threshold=0,
        for_="1m",
        severity="warning",
        summary="Volatility spike on {{ $labels.symbol }}",
        description=(
            "The dataflow raised {{ $values.B.Value }} volatility_spike alert(s) for "
            "{{ $labels.symbol }} in the last 10 minutes: its EWMA volatility reached "
            "SENTINEL_SPIKE_RATIO times its rolling mean."
        ),
        anchor="volatility-spike",
    )


def volatility_above_forecast() -> RuleSpec:
    return RuleSpec(
        uid="sentinel-volatility-above-forecast",
        title="Realized volatility far above forecast",
        sql=f"""
SELECT m.symbol,
       sqrt(avg(m.log_return ^ 2) / NULLIF(avg(f.value ^ 2), 0)) AS realized_over_forecast
FROM bar_metrics m
JOIN forecasts f
  ON f.symbol = m.symbol AND f.time = m.time
 AND f.model = '{FORECAST_MODEL}' AND f.target = 'volatility' AND f.horizon = 1
WHERE $__timeFilter(m.time) AND $__timeFilter(f.time) AND m.log_return IS NOT NULL
  AND m.symbol IN ({ACTIVE})
GROUP BY m.symbol
HAVING count(*) >= 20
""",
        window_s=1800,
        threshold=2.0,
        for_="5m",
        severity="warning",
        summary="{{ $labels.symbol }} moves {{ humanize $values.B.Value }}x its forecast vol",
        description=(
            "Over the last 30 minutes the root mean square log return of "
            "{{ $labels.symbol }} was {{ humanize $values.B.Value }} times the "
            f"{FORECAST_MODEL} model's "
            "forecast standard deviation for the same bars (1 when the forecast is right)."
        ),
        anchor="realized-volatility-far-above-forecast",
    )


def stale_feed() -> RuleSpec:
    # The dataflow decides what stale means: an active symbol silent for stale_after_s
    # while its market is open by its exchange calendar (holidays, half days, 24/7 feeds).
    # It raises one stale_feed alert per silence, so this rule fires from that alert until
    # the ticker trades again, for at most the window: a silence still going on after it
    # resolves here (see the runbook).
    return RuleSpec(
        uid="sentinel-stale-feed",
        title="Stale feed during market hours",
        sql="""
SELECT t.symbol,
       coalesce(extract(epoch FROM $__timeTo()::timestamptz - s.time), 0) AS seconds_since_alert
FROM tickers t
LEFT JOIN LATERAL (
    SELECT a.time FROM alerts a
    WHERE a.symbol = t.symbol AND a.kind = 'stale_feed' AND $__timeFilter(a.time)
    ORDER BY a.time DESC LIMIT 1
) s ON NOT EXISTS (
    SELECT FROM ticks k
    WHERE k.symbol = t.symbol AND k.time > s.time AND $__timeFilter(k.time)
)
WHERE t.active
""",
        window_s=900,
        threshold=0,
        for_="2m",
        severity="critical",
        summary="No trades for {{ $labels.symbol }} since the dataflow found its feed stale",
        description=(
            "The dataflow raised a stale_feed alert for {{ $labels.symbol }} "
            "{{ humanizeDuration $values.B.Value }} ago (an active ticker with no trade for "
            "SENTINEL_STALE_AFTER_S seconds while its market was open, by the ticker's own "
            "exchange calendar, tickers.calendar, or SENTINEL_CALENDAR_OVERRIDE when set), "
            "and no trade has been stored since. "
            "Resolves when it trades again, or 15 minutes after that alert."
        ),
        anchor="stale-feed-during-market-hours",
        exec_err="Error",
    )


PIPELINE_FEED_DOWN = 1
PIPELINE_DATAFLOW_DOWN = 2


def pipeline_down() -> RuleSpec:
    # The pipeline's own liveness, which no dataflow alert can report: 1 when no feed
    # process has upserted feed_status (every ~2 s) in the last 60 s, i.e. it is dead or
    # cannot reach the database; 2 when the feed is connected and got a trade in the
    # last 60 s but no active ticker has a bar in the last 5 minutes, i.e. the dataflow is
    # dead or stuck; 0 otherwise. A disconnected feed is the stale-feed rule's business.
    # One row always, no labels: no data means Grafana could not read it, so alert
    # (``Alerting``); a failing query is the stale-feed rule's DatasourceError (``OK``).
    return RuleSpec(
        uid="sentinel-pipeline-down",
        title="Pipeline down",
        sql=f"""
SELECT CASE
    WHEN NOT EXISTS (
        SELECT FROM feed_status
        WHERE $__timeFilter(updated_at)
          AND updated_at > $__timeTo()::timestamptz - interval '60 seconds'
    ) THEN {PIPELINE_FEED_DOWN}
    WHEN EXISTS (
        SELECT FROM feed_status
        WHERE $__timeFilter(updated_at)
          AND updated_at > $__timeTo()::timestamptz - interval '60 seconds'
          AND connected
          AND last_trade_at > $__timeTo()::timestamptz - interval '60 seconds'
    )
    AND EXISTS ({ACTIVE})
    AND NOT EXISTS (
        SELECT FROM bars b
        WHERE $__timeFilter(b.time)
          AND b.time > $__timeTo()::timestamptz - interval '5 minutes'
          AND b.symbol IN ({ACTIVE})
    ) THEN {PIPELINE_DATAFLOW_DOWN}
    ELSE 0
END AS pipeline_down
""",
        window_s=600,
        threshold=0,
        for_="2m",
        severity="critical",
        summary=(
            "Pipeline down: {{ if eq $values.B.Value 1.0 }}the feed process stopped "
            "reporting{{ else }}the dataflow writes no bars{{ end }}"
        ),
        description=(
            "{{ if eq $values.B.Value 1.0 }}No feed process has updated feed_status in the "
            "last 60 seconds: the feed is down or cannot reach the database."
            "{{ else }}The feed is connected and received messages in the last 60 seconds, "
            "but no active ticker has a bar from the last 5 minutes: the dataflow is down "
            "or stuck.{{ end }} The dataflow's own alerts (stale_feed included) cannot "
            "fire meanwhile."
        ),
        anchor="pipeline-down",
        no_data="Alerting",
    )


def model_degradation() -> RuleSpec:
    models = ", ".join(f"'{m}'" for m in DEGRADATION_MODELS)
    return RuleSpec(
        uid="sentinel-model-degradation",
        title="Volatility model worse than EWMA",
        sql=f"""
SELECT s.symbol, s.model, min(s.value) AS qlike_minus_ewma
FROM model_scores s
WHERE $__timeFilter(s.time) AND s.target = 'volatility'
  AND s.metric = 'qlike_rel_ewma_rolling' AND s.model IN ({models})
  AND s.symbol IN ({ACTIVE})
GROUP BY s.symbol, s.model
HAVING count(*) >= 20
""",
        window_s=1800,
        threshold=0,
        for_="15m",
        severity="warning",
        summary="{{ $labels.model }} forecasts {{ $labels.symbol }} worse than EWMA",
        description=(
            "The rolling QLIKE (last 100 bars) of {{ $labels.model }} on "
            "{{ $labels.symbol }} has been above the EWMA baseline's at every scored bar "
            "for the last 30 minutes (smallest gap {{ humanize $values.B.Value }})."
        ),
        anchor="volatility-model-worse-than-ewma",
    )


def rejects_rising() -> RuleSpec:
    return RuleSpec(
        uid="sentinel-rejects-rising",
        title="Rejected ticks rising",
        sql="""
SELECT source,
       (count(*) FILTER (WHERE received_at > $__timeTo()::timestamptz - interval '5 minutes')
          / 5.0)
       / greatest(count(*) FILTER (WHERE received_at <= $__timeTo()::timestamptz
                                                        - interval '5 minutes') / 55.0,
                  1.0) AS recent_vs_usual
FROM ticks_rejected
WHERE $__timeFilter(received_at)
GROUP BY source
""",
        window_s=3600,
        threshold=3,
        for_="5m",
        severity="warning",
        summary="Rejected ticks from {{ $labels.source }} rising",
        description=(
            "{{ $labels.source }} had {{ humanize $values.B.Value }} times its usual rate of "
            "rejected messages per minute in the last 5 minutes (usual: the 55 minutes "
            "before, at least 1 per minute)."
        ),
        anchor="rejected-ticks-rising",
    )


RULES = (
    volatility_spike,
    volatility_above_forecast,
    stale_feed,
    pipeline_down,
    model_degradation,
    rejects_rising,
)


def runbook_url(anchor: str, base: str = RUNBOOK_BASE_URL) -> str:
    return f"{base}#{anchor}"


def _expression_datasource() -> DataSourceRef:
    return DataSourceRef(type_val=EXPR_UID, uid=EXPR_UID)


def _no_range() -> alerting_models.RelativeTimeRange:
    return alerting_models.RelativeTimeRange(from_val=0, to=0)


def _above(threshold: float) -> expr.ExprTypeThresholdConditions:
    return expr.ExprTypeThresholdConditions().evaluator(
        expr.ExprTypeThresholdConditionsEvaluator().type("gt").params([threshold])
    )


def _sql_query(spec: RuleSpec) -> alerting.Query:
    """``A``: the rule's SQL over its window."""
    return (
        alerting.Query("A")
        .datasource_uid(DATASOURCE_UID)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=spec.window_s, to=0))
        .model(Sql(spec.sql).table().for_alerting())
    )


def _reduce() -> alerting.Query:
    """``B``: each instance's last value."""
    return (
        alerting.Query("B")
        .datasource_uid(EXPR_UID)
        .relative_time_range(_no_range())
        .model(
            expr.TypeReduce()
            .ref_id("B")
            .datasource(_expression_datasource())
            .expression("A")
            .reducer("last")
            .settings(expr.ExprTypeReduceSettings().mode("dropNN"))
            .interval_ms(ALERT_INTERVAL_MS)
            .max_data_points(ALERT_MAX_DATA_POINTS)
        )
    )


def _threshold(threshold: float) -> alerting.Query:
    """``C``: the condition, ``B`` above the threshold."""
    return (
        alerting.Query("C")
        .datasource_uid(EXPR_UID)
        .relative_time_range(_no_range())
        .model(
            expr.TypeThreshold()
            .ref_id("C")
            .datasource(_expression_datasource())
            .expression("B")
            .conditions([_above(threshold)])
            .interval_ms(ALERT_INTERVAL_MS)
            .max_data_points(ALERT_MAX_DATA_POINTS)
        )
    )


def rule(spec: RuleSpec, runbook_base: str = RUNBOOK_BASE_URL) -> alerting.Rule:
    annotations = {
        "summary": spec.summary,
        "description": spec.description,
        "runbook_url": runbook_url(spec.anchor, runbook_base),
    }
    return (
        alerting.Rule(spec.title)
        .uid(spec.uid)
        .folder_uid(FOLDER_UID)
        .rule_group(RULE_GROUP)
        .org_id(1)
        .queries([_sql_query(spec), _reduce(), _threshold(spec.threshold)])
        .condition("C")
        .for_val(spec.for_)
        .no_data_state(spec.no_data)
        .exec_err_state(spec.exec_err)
        .is_paused(False)
        .labels({"severity": spec.severity, "rule_uid": spec.uid})
        .annotations(annotations)
    )


def rule_group(runbook_base: str = RUNBOOK_BASE_URL) -> alerting.RuleGroup:
    return (
        alerting.RuleGroup(RULE_GROUP)
        .folder_uid(FOLDER_UID)
        .interval(RULE_GROUP_INTERVAL_S)
        .rules([rule(factory(), runbook_base) for factory in RULES])
    )


# -- contact points and the notification policy ------------------------------------------


def webhook_contact_point() -> alerting.ContactPoint:
    settings = {
        "url": WEBHOOK_URL,
        "httpMethod": "POST",
        "authorization_scheme": "Bearer",
        "authorization_credentials": f"${API_KEY_VAR}",
    }
    return (
        alerting.ContactPoint()
        .uid("sentinel-api-webhook")
        .name(WEBHOOK)
        .type("webhook")
        .settings(settings)
        .disable_resolve_message(False)
    )


def email_contact_point() -> alerting.ContactPoint:
    return (
        alerting.ContactPoint()
        .uid("sentinel-email")
        .name(EMAIL)
        .type("email")
        .settings({"addresses": f"${EMAIL_VAR}", "singleEmail": True})
        .disable_resolve_message(False)
    )


def slack_contact_point() -> alerting.ContactPoint:
    return (
        alerting.ContactPoint()
        .uid("sentinel-slack")
        .name(SLACK)
        .type("slack")
        .settings({"url": f"${SLACK_VAR}"})
        .disable_resolve_message(False)
    )


CONTACT_POINTS = (webhook_contact_point, email_contact_point, slack_contact_point)


class Route(alerting_models.NotificationPolicy):
    """A child route whose matchers serialize as Grafana reads them.

    The SDK writes ``object_matchers`` as objects (``{"Name": ...}``); Grafana's API and
    provisioning files take ``[name, operator, value]`` triples.
    """

    def __init__(self, receiver: str, matchers: tuple[tuple[str, str, str], ...] = ()) -> None:
        super().__init__(receiver=receiver, continue_val=True)
        self.triples = matchers

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        if self.triples:
            out["object_matchers"] = [list(t) for t in self.triples]
        return out


class RouteBuilder(cogbuilder.Builder[alerting_models.NotificationPolicy]):
    def __init__(self, receiver: str, *matchers: tuple[str, str, str]) -> None:
        self._internal = Route(receiver, matchers)

    def build(self) -> alerting_models.NotificationPolicy:
        return self._internal


def notification_policy(
    receivers: tuple[str, ...] = (WEBHOOK, EMAIL, SLACK),
) -> alerting.NotificationPolicy:
    """Every alert goes to the API's webhook; critical ones also by email and to Slack.

    Child routes all ``continue``: the webhook route matches everything and comes first,
    so the root receiver (also the webhook) only ever catches what nothing else did.
    """
    critical = ("severity", "=", "critical")
    routes = [RouteBuilder(WEBHOOK)]
    routes += [RouteBuilder(r, critical) for r in (EMAIL, SLACK) if r in receivers]
    return (
        alerting.NotificationPolicy()
        .receiver(WEBHOOK)
        .group_by(["grafana_folder", "alertname", "symbol"])
        .group_wait("30s")
        .group_interval("5m")
        .repeat_interval("4h")
        .routes(list(routes))
    )
