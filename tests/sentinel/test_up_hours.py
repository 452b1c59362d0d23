"""What `sentinel up` says and does about market hours, at a closed and an open time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from dataflows.records import US
from sentinel.commands.live import DemoHours, demo_hours

NEW_YORK = ZoneInfo("America/New_York")
DEMO = "the demo runs its symbols 24/7: --sessions to follow the market's hours"
OVERRIDE = {"SENTINEL_CALENDAR_OVERRIDE": "24/7"}


def ny(year: int, month: int, day: int, hour: int, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).timestamp()) * US


SATURDAY = ny(2026, 12, 5, 12)
TUESDAY_OPEN = ny(2026, 12, 1, 10)


def test_closed_market_the_demo_runs_24_7() -> None:
    assert demo_hours(SATURDAY, "XNYS", sessions=False) == DemoHours(
        f"XNYS is closed (opens Mon 2026-12-07 09:30 America/New_York); {DEMO}", OVERRIDE, None
    )


def test_open_market_the_demo_still_runs_24_7() -> None:
    # Open now, but it closes while the demo runs: 24/7 all the same.
    assert demo_hours(TUESDAY_OPEN, "XNYS", sessions=False) == DemoHours(
        f"XNYS is open (closes Tue 2026-12-01 16:00 America/New_York); {DEMO}", OVERRIDE, None
    )


def test_pre_market_is_told_as_such() -> None:
    hours = demo_hours(ny(2026, 12, 1, 7), "XNYS", sessions=False)
    assert hours.message.startswith(
        "XNYS is closed (pre-market; opens Tue 2026-12-01 09:30 America/New_York); "
    )
    assert hours.env == OVERRIDE


def test_sessions_follow_the_calendar_and_set_no_override() -> None:
    closed = demo_hours(SATURDAY, "XNYS", sessions=True)
    assert closed.message.startswith(
        "XNYS is closed (opens Mon 2026-12-07 09:30 America/New_York); --sessions: "
        "the simulator follows its hours"
    )
    assert (closed.env, closed.sim_calendar) == ({}, "XNYS")
    opened = demo_hours(TUESDAY_OPEN, "XLON", sessions=True)  # 15:00 in London
    assert opened.message.startswith("XLON is open (closes Tue 2026-12-01 16:30 Europe/London)")
    assert (opened.env, opened.sim_calendar) == ({}, "XLON")


def test_the_users_override_wins() -> None:
    for sessions in (False, True):
        mine = demo_hours(SATURDAY, "XNYS", sessions=sessions, override="XLON")
        assert mine.message == (
            "XLON is closed (opens Mon 2026-12-07 08:00 Europe/London); every symbol is on "
            "XLON (SENTINEL_CALENDAR_OVERRIDE) and trades at its hours"
        )
        assert (mine.env, mine.sim_calendar) == ({}, "XLON")
        always = demo_hours(SATURDAY, "XNYS", sessions=sessions, override="24/7")
        assert (always.env, always.sim_calendar) == ({}, None)
        assert "24/7 (SENTINEL_CALENDAR_OVERRIDE)" in always.message


def test_a_24_7_calendar_or_a_real_feed_needs_no_override() -> None:
    always = demo_hours(SATURDAY, "24/7", sessions=False)
    assert (always.env, always.sim_calendar) == ({}, None)
    live = demo_hours(SATURDAY, "XNYS", sessions=False, simulated=False)
    assert live.message.startswith("XNYS is closed (opens Mon 2026-12-07 09:30")
    assert (live.env, live.sim_calendar) == ({}, None)
