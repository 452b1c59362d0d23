"""Shared defaults of every dashboard and alert rule: the data source, the folder, tags,
and the SQL query type the foundation SDK does not ship.

Everything here is a constant or a small factory; dashboards and rules refer to the
provisioned data source by its fixed uid, never by name.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, TypeVar

from grafana_foundation_sdk.builders import candlestick, dashboard, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE_UID = "sentinel-timescaledb"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_NAME = "TimescaleDB (Stock Sentinel)"
FOLDER_UID = "stock-sentinel"
FOLDER_TITLE = "Stock Sentinel"
TAGS = ["generated", "stock-sentinel"]

# Where each alert's runbook_url points: one section of docs/runbook.md per rule. Set it
# to wherever the repository is hosted; `build` writes it into the alert rules.
# The API serves docs/runbook.md at /runbook; in docker compose it is published on
# localhost:8000, where the person reading the alert opens it.
RUNBOOK_BASE_URL = "http://localhost:8000/runbook"

# Alert rule query models carry the defaults Grafana itself adds when it stores a rule,
# so that what `sync` sends and what Grafana returns compare equal.
ALERT_INTERVAL_MS = 1000
ALERT_MAX_DATA_POINTS = 43200

Format = Literal["time_series", "table"]


def datasource() -> DataSourceRef:
    return DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


class SqlQuery(cogvariants.Dataquery):
    """A raw SQL query of Grafana's PostgreSQL data source.

    The foundation SDK has no builder for the SQL data sources (it covers Prometheus,
    Loki, Elasticsearch, ...), so this is the smallest dataquery that serializes the way
    Grafana's own query editor saves a query in code mode.
    """

    def __init__(self, sql: str, ref_id: str = "A", fmt: Format = "time_series") -> None:
        self.sql = sql.strip()
        self.ref_id = ref_id
        self.format = fmt
        self.alerting = False

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "datasource": datasource(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }
        if self.alerting:
            out["intervalMs"] = ALERT_INTERVAL_MS
            out["maxDataPoints"] = ALERT_MAX_DATA_POINTS
        return out


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of :class:`SqlQuery`: ``Sql("SELECT ...").ref_id("B").table()``."""

    def __init__(self, sql: str) -> None:
        self._internal = SqlQuery(sql)

    def build(self) -> SqlQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Sql:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Sql:
        self._internal.format = "table"
        return self

    def time_series(self) -> Sql:
        self._internal.format = "time_series"
        return self

    def for_alerting(self) -> Sql:
        self._internal.alerting = True
        return self


class SqlAnnotationTarget(dashboard_models.AnnotationTarget):
    """An annotation query's target for the SQL data source.

    The SDK's ``AnnotationTarget`` only has the fields of Grafana's built-in annotation
    source (limit, tags, ...); a SQL annotation's target is an ordinary SQL query, which
    is what this serializes to. Grafana reads its columns ``time``, ``text``, ``tags``.
    """

    def __init__(self, sql: str) -> None:
        super().__init__()
        self.query = SqlQuery(sql, ref_id="Anno", fmt="table")

    def to_json(self) -> dict[str, object]:
        return self.query.to_json()


class SqlAnnotation(cogbuilder.Builder[dashboard_models.AnnotationTarget]):
    def __init__(self, sql: str) -> None:
        self._internal = SqlAnnotationTarget(sql)

    def build(self) -> dashboard_models.AnnotationTarget:
        return self._internal


def new_dashboard(title: str, uid: str, description: str) -> dashboard.Dashboard:
    """A dashboard with the project's defaults: tags, UTC, live refresh."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .timezone("utc")
        .time("now-1h", "now")
        .refresh("10s")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .link(
            dashboard.DashboardLink("Stock Sentinel")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags(["stock-sentinel"])
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
    )


class _PanelBuilder(Protocol):
    def id(self, id_val: int) -> cogbuilder.Builder[dashboard_models.Panel]: ...


def with_panels(
    board: dashboard.Dashboard, factories: Sequence[Callable[[], _PanelBuilder]]
) -> dashboard.Dashboard:
    """Add each factory's panel, numbered in order (alert rules and links refer to ids)."""
    for panel_id, factory in enumerate(factories, start=1):
        board = board.with_panel(factory().id(panel_id))
    return board


def symbol_variable(*, multi: bool) -> dashboard.QueryVariable:
    """``$symbol``: the active tickers, from the `tickers` table."""
    variable = (
        dashboard.QueryVariable("symbol")
        .label("Symbol")
        .datasource(datasource())
        .query("SELECT symbol FROM tickers WHERE active ORDER BY symbol")
        .refresh(dashboard_models.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        variable = variable.multi(True).include_all(True)
    return variable


def legend_table(*calcs: str) -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common_models.LegendDisplayMode.TABLE)
        .placement(common_models.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(list(calcs))
    )


def tooltip_all() -> common_builders.VizTooltipOptions:
    return (
        common_builders.VizTooltipOptions()
        .mode(common_models.TooltipDisplayMode.MULTI)
        .sort(common_models.SortOrder.DESCENDING)
    )


# The panel kinds whose builders take a title, a description, a data source and targets.
_P = TypeVar("_P", timeseries.Panel, table.Panel, stat.Panel, candlestick.Panel)


def sql_panel(panel: _P, title: str, description: str, *queries: Sql) -> _P:
    """``panel`` titled, on the data source, with its queries (ref ids A, B, ... in order)."""
    panel = panel.title(title).description(description).datasource(datasource())
    for ref_id, query in zip(string.ascii_uppercase, queries, strict=False):
        panel = panel.with_target(query.ref_id(ref_id))
    return panel


def time_series_panel(title: str, description: str, *sqls: str) -> timeseries.Panel:
    """A time series panel of ``sqls`` with a table legend and shared tooltip."""
    queries = (Sql(sql).time_series() for sql in sqls)
    return (
        sql_panel(timeseries.Panel(), title, description, *queries)
        .legend(legend_table("lastNotNull", "mean", "max"))
        .tooltip(tooltip_all())
        .line_width(1)
        .fill_opacity(10)
        .show_points(common_models.VisibilityMode.NEVER)
        .span_nulls(True)
    )


def table_panel(title: str, description: str, sql: str) -> table.Panel:
    """A table of ``sql``'s rows, with its header."""
    return sql_panel(table.Panel(), title, description, Sql(sql).table()).show_header(True)


def stat_panel(title: str, description: str, sql: str) -> stat.Panel:
    """A stat of each series' last value of ``sql``, shown with the series' name."""
    return (
        sql_panel(stat.Panel(), title, description, Sql(sql).time_series())
        .text_mode(common_models.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def label_columns(panel: table.Panel, columns: Mapping[str, tuple[str, str | None]]) -> table.Panel:
    """Override each column's display name and, where one is given, its unit."""
    for name, (label, unit) in columns.items():
        props = [prop("displayName", label)]
        if unit:
            props.append(prop("unit", unit))
        panel = panel.override_by_name(name, props)
    return panel


def datetime_columns(panel: table.Panel, *names: str) -> table.Panel:
    """Show each of the columns ``names`` as an ISO date and time."""
    for name in names:
        panel = panel.override_by_name(name, [prop("unit", "dateTimeAsIso")])
    return panel


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds: ``(None, "green"), (2.0, "red")``."""
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=v, color=c) for v, c in steps])
    )


def prop(id_val: str, value: object) -> dashboard_models.DynamicConfigValue:
    """One property of a field override."""
    return dashboard_models.DynamicConfigValue(id_val=id_val, value=value)


def shade_between(panel: timeseries.Panel, upper: str, lower: str) -> timeseries.Panel:
    """Shade the area between the series ``upper`` and ``lower`` and draw neither line."""
    shaded = [
        prop("custom.fillBelowTo", lower),
        prop("custom.lineWidth", 0),
        prop("custom.fillOpacity", 20),
    ]
    hidden = [prop("custom.lineWidth", 0), prop("custom.fillOpacity", 0)]
    return panel.override_by_name(upper, shaded).override_by_name(lower, hidden)


def color_cells(*steps: tuple[float | None, str]) -> list[dashboard_models.DynamicConfigValue]:
    """Overrides that color a table column's cells by absolute thresholds."""
    cells = {"type": "color-background", "mode": "basic"}
    levels = {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}
    return [prop("custom.cellOptions", cells), prop("thresholds", levels)]
