"""Grafana's macro and variable expansion for the PostgreSQL data source, case by case,
with the outputs Grafana's own code produces (``macros.go``, ``sqleng.Interpolate``, the
frontend's ``interpolateVariable``)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from grafana.macros import MacroError, expand, format_interval, go_float, rfc3339nano

T0 = datetime(2024, 3, 1, 14, 30, 0, tzinfo=timezone.utc)
T1 = datetime(2024, 3, 1, 15, 30, 0, 250_000, tzinfo=timezone.utc)


def x(sql: str, interval_s: float = 60, tsdb: bool = True, **variables: str | list[str]) -> str:
    given = variables or None
    return expand(
        sql, time_from=T0, time_to=T1, interval_s=interval_s, variables=given, timescaledb=tsdb
    )


def test_time_filter_from_and_to_are_rfc3339_utc() -> None:
    assert x("WHERE $__timeFilter(b.time)") == (
        "WHERE b.time BETWEEN '2024-03-01T14:30:00Z' AND '2024-03-01T15:30:00.25Z'"
    )
    assert x("$__timeFrom() $__timeTo()") == "'2024-03-01T14:30:00Z' '2024-03-01T15:30:00.25Z'"


def test_rfc3339nano_converts_to_utc() -> None:
    paris = datetime.fromisoformat("2024-03-01T15:30:00.123400+01:00")
    assert rfc3339nano(paris) == "2024-03-01T14:30:00.1234Z"


def test_time_group_is_time_bucket_with_timescaledb() -> None:
    assert x("$__timeGroupAlias(time, $__interval)") == "time_bucket('60.000s',time) AS \"time\""
    assert x("$__timeGroupAlias(time, '5m')") == "time_bucket('300.000s',time) AS \"time\""
    assert x("GROUP BY $__timeGroup(time, 1h)") == "GROUP BY time_bucket('3600.000s',time)"


def test_time_group_without_timescaledb_is_epoch_arithmetic() -> None:
    assert x("$__timeGroup(time, 5m)", tsdb=False) == "floor(extract(epoch from time)/300)*300"
    assert x("$__timeGroup(time, 1d)", tsdb=False) == (
        "floor(extract(epoch from time)/86400)*86400"
    )


def test_time_group_followed_by_a_comma_gets_the_alias_like_grafana() -> None:
    assert x("SELECT $__timeGroup(time, 1m), v") == (
        "SELECT time_bucket('60.000s',time) AS \"time\", v"
    )


def test_interval_macros() -> None:
    assert x("$__interval $__interval_ms", interval_s=5) == "5s 5000"
    assert x("$__interval", interval_s=90) == "1m"  # whole units, rounded down
    assert x("$__interval", interval_s=0.5) == "500ms"
    assert x("$__interval", interval_s=7200) == "2h"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.001, "1ms"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (86_400, "1d"),
        (31_536_000, "1y"),
    ],
)
def test_format_interval(seconds: float, text: str) -> None:
    assert format_interval(seconds) == text


def test_unix_epoch_macros() -> None:
    assert x("$__unixEpochFilter(ts)") == "ts >= 1709303400 AND ts <= 1709307000"
    assert x("$__unixEpochFrom()-$__unixEpochTo()") == "1709303400-1709307000"


def test_variables_single_multi_and_sqlstring() -> None:
    assert x("symbol = '$symbol'", symbol="AAPL") == "symbol = 'AAPL'"
    assert x("symbol = ${symbol:sqlstring}", symbol="O'HARE") == "symbol = 'O''HARE'"
    multi = x("symbol IN ($symbol)", symbol=["AAPL", "MSFT"])
    assert multi == "symbol IN ('AAPL','MSFT')"
    assert x("symbol IN (${symbol:sqlstring})", symbol=["A", "B"]) == "symbol IN ('A','B')"
    assert x("[[symbol]]", symbol="AAPL") == "AAPL"


def test_interval_variable_then_macro() -> None:
    got = x("$__timeGroupAlias(time, $interval)", interval="15m")
    assert got == "time_bucket('900.000s',time) AS \"time\""


def test_unknown_variables_are_left_alone_unknown_macros_refused() -> None:
    assert x("'$nothing'", symbol="A") == "'$nothing'"
    with pytest.raises(MacroError, match="unknown macro"):
        x("$__nothing(time)")
    with pytest.raises(MacroError, match="interval"):
        x("$__timeGroup(time, soon)")
    with pytest.raises(MacroError, match="needs time column and interval"):
        x("$__timeGroup(time)")


def test_alert_queries_expand_without_variables() -> None:
    sql = "WHERE $__timeFilter(time) AND symbol = '$symbol'"
    out = expand(sql, time_from=T0, time_to=T1, interval_s=1)
    assert out == (
        "WHERE time BETWEEN '2024-03-01T14:30:00Z' AND '2024-03-01T15:30:00.25Z' "
        "AND symbol = '$symbol'"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (60.0, "60"),
        (0.5, "0.5"),
        (86400.0, "86400"),
        (1e6, "1e+06"),
        (2_592_000.0, "2.592e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
    ],
)
def test_go_float_formats_like_go(value: float, text: str) -> None:
    assert go_float(value) == text
