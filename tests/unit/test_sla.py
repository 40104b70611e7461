"""Working-day SLA clocks in WITA: weekends, holidays, day boundaries, priorities and the
ROUTING_SLA_SECONDS override used by tests and drills."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.routing.domain.sla import (
    SlaPolicy, WorkingCalendar, load_holidays, parse_sla_seconds,
)

UTC = timezone.utc
WITA = timezone(timedelta(hours=8))


def wita(*args) -> datetime:
    return datetime(*args, tzinfo=WITA).astimezone(UTC)


@pytest.fixture(scope="module")
def calendar():
    return WorkingCalendar(load_holidays())


@pytest.fixture(scope="module")
def policy(calendar):
    return SlaPolicy.from_env(None, calendar)


def test_shipped_holidays_cover_2025_to_2027():
    holidays = load_holidays()
    assert date(2026, 8, 17) in holidays  # a Monday
    assert date(2026, 3, 20) in holidays  # cuti bersama Idul Fitri
    assert {day.year for day in holidays} == {2025, 2026, 2027}


@pytest.mark.parametrize("day, working", [
    (date(2026, 8, 14), True),    # Friday
    (date(2026, 8, 15), False),   # Saturday
    (date(2026, 8, 16), False),   # Sunday
    (date(2026, 8, 17), False),   # Monday, Independence Day
    (date(2026, 8, 18), True),
    (date(2026, 12, 24), False),  # cuti bersama
])
def test_is_working_day(calendar, day, working):
    assert calendar.is_working_day(day) is working


@pytest.mark.parametrize("start, n, due", [
    # same day and clock time, n working days later
    (wita(2026, 8, 5, 10, 0), 1, wita(2026, 8, 6, 10, 0)),
    # across a weekend: Thursday + 3 = Tuesday
    (wita(2026, 8, 6, 10, 0), 3, wita(2026, 8, 11, 10, 0)),
    # across a weekend and a Monday holiday: Friday + 1 = Tuesday
    (wita(2026, 8, 14, 10, 0), 1, wita(2026, 8, 18, 10, 0)),
    (wita(2026, 8, 13, 9, 15), 5, wita(2026, 8, 21, 9, 15)),
    # the long Nyepi / Idul Fitri break of March 2026
    (wita(2026, 3, 17, 9, 0), 1, wita(2026, 3, 25, 9, 0)),
    # 23:30 WITA on Friday is still Friday in WITA (and in UTC: 15:30)
    (wita(2026, 8, 14, 23, 30), 1, wita(2026, 8, 18, 23, 30)),
    # 00:30 WITA Saturday is Friday 16:30 UTC, but a weekend day in WITA: count from Monday 00:00
    (wita(2026, 8, 8, 0, 30), 3, wita(2026, 8, 13, 0, 0)),
    # a start on a holiday counts from the next working day's start
    (wita(2026, 8, 17, 14, 0), 1, wita(2026, 8, 19, 0, 0)),
    (wita(2026, 8, 5, 10, 0), 0, wita(2026, 8, 5, 10, 0)),
])
def test_add_working_days(calendar, start, n, due):
    assert calendar.add_working_days(start, n) == due


def test_the_day_is_taken_in_wita_not_utc(calendar):
    friday_night_utc = datetime(2026, 8, 7, 16, 30, tzinfo=UTC)  # Saturday 00:30 WITA
    assert calendar.add_working_days(friday_night_utc, 1) == wita(2026, 8, 11, 0, 0)
    friday_evening_utc = datetime(2026, 8, 7, 15, 30, tzinfo=UTC)  # Friday 23:30 WITA
    assert calendar.add_working_days(friday_evening_utc, 1) == wita(2026, 8, 10, 23, 30)


def test_result_is_utc(calendar):
    due = calendar.add_working_days(wita(2026, 8, 5, 10, 0), 1)
    assert due.utcoffset() == timedelta(0)


def test_naive_and_negative_are_refused(calendar):
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.add_working_days(datetime(2026, 8, 5, 10, 0), 1)
    with pytest.raises(ValueError):
        calendar.add_working_days(wita(2026, 8, 5, 10, 0), -1)


@pytest.mark.parametrize("priority, hours", [("urgent", 1), ("important", 24), ("normal", 48)])
def test_first_response_by_priority_in_elapsed_hours(policy, priority, hours):
    routed = wita(2026, 8, 14, 16, 0)  # Friday afternoon: the hours run over the weekend
    due = policy.due_at(routed, priority, at_desk=False)
    assert set(due) == {"first_response", "follow_up"}
    assert due["first_response"] == routed + timedelta(hours=hours)
    # five working days: Tue 18, Wed 19, Thu 20, Fri 21, Mon 24 (Mon 17 is a holiday)
    assert due["follow_up"] == wita(2026, 8, 24, 16, 0)


def test_triage_at_the_desk(policy):
    due = policy.due_at(wita(2026, 8, 13, 11, 0), "urgent", at_desk=True)
    assert due == {"triage": wita(2026, 8, 19, 11, 0)}  # Fri 14, Tue 18, Wed 19


def test_unknown_priority(policy):
    with pytest.raises(ValueError, match="unknown priority"):
        policy.due_at(wita(2026, 8, 13, 11, 0), "critical", at_desk=False)


def test_settlement_is_sixty_calendar_days(policy):
    filed = wita(2026, 8, 13, 11, 0)
    assert policy.settlement_due(filed) == filed + timedelta(days=60)


def test_routing_sla_seconds_replaces_every_named_clock(calendar):
    policy = SlaPolicy.from_env("triage=5,urgent=3,important=3,normal=3,follow_up=8", calendar)
    start = wita(2026, 8, 15, 12, 0)  # a Saturday: overrides ignore the calendar
    assert policy.due_at(start, "urgent", at_desk=True) == {"triage": start + timedelta(seconds=5)}
    for priority in ("urgent", "important", "normal"):
        assert policy.due_at(start, priority, at_desk=False) == {
            "first_response": start + timedelta(seconds=3),
            "follow_up": start + timedelta(seconds=8),
        }


def test_routing_sla_seconds_partial_override_keeps_the_other_clocks(calendar):
    policy = SlaPolicy.from_env(" urgent = 2.5 , settlement=60", calendar)
    start = wita(2026, 8, 13, 11, 0)
    assert policy.due_at(start, "urgent", False)["first_response"] == start + timedelta(seconds=2.5)
    assert policy.due_at(start, "normal", False)["first_response"] == start + timedelta(hours=48)
    assert policy.due_at(start, "normal", True) == {"triage": wita(2026, 8, 19, 11, 0)}
    assert policy.settlement_due(start) == start + timedelta(seconds=60)


@pytest.mark.parametrize("value, expected", [
    (None, {}), ("", {}), ("  ", {}),
    ("triage=5,urgent=3,important=3,normal=3,follow_up=8",
     {"triage": 5.0, "urgent": 3.0, "important": 3.0, "normal": 3.0, "follow_up": 8.0}),
    ("follow_up=8,", {"follow_up": 8.0}),
])
def test_parse_sla_seconds(value, expected):
    assert parse_sla_seconds(value) == expected


@pytest.mark.parametrize("value, message", [
    ("triage", "not name=seconds"),
    ("first=3", "unknown clock 'first'"),
    ("urgent=soon", "not a number"),
    ("urgent=0", "positive"),
    ("urgent=-1", "positive"),
])
def test_parse_sla_seconds_errors(value, message):
    with pytest.raises(ValueError, match=message):
        parse_sla_seconds(value)
