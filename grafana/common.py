"""Shared defaults of every dashboard and alert rule: the data source, the folder, tags,
and the SQL query type the foundation SDK does not ship.

Everything here is a constant or a small factory; dashboards and rules refer to the
provisioned data source by its fixed uid, never by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, table, timeseries
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


def time_series_panel(title: str, description: str) -> timeseries.Panel:
    """A time series panel on the data source with a table legend and shared tooltip."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .legend(legend_table("lastNotNull", "mean", "max"))
        .tooltip(tooltip_all())
        .line_width(1)
        .fill_opacity(10)
        .show_points(common_models.VisibilityMode.NEVER)
        .span_nulls(True)
    )


def table_panel(title: str, description: str) -> table.Panel:
    """A table on the data source, with its header."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(datasource())
        .show_header(True)
    )


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


def band(upper: str, lower: str) -> list[tuple[str, list[dashboard_models.DynamicConfigValue]]]:
    """Overrides that shade the area between two series and draw neither line."""
    shaded = [
        prop("custom.fillBelowTo", lower),
        prop("custom.lineWidth", 0),
        prop("custom.fillOpacity", 20),
    ]
    return [(upper, shaded), (lower, [prop("custom.lineWidth", 0), prop("custom.fillOpacity", 0)])]


def color_cells(*steps: tuple[float | None, str]) -> list[dashboard_models.DynamicConfigValue]:
    """Overrides that color a table column's cells by absolute thresholds."""
    return [
        prop("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
        prop("thresholds", {"mode": "absolute",
                            "steps": [{"value": v, "color": c} for v, c in steps]}),
    ]  # fmt: skip
