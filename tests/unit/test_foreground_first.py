"""Intake's inbox processing gives way to the webhook requests Meta waits on
(``services.intake.adapters.background.ForegroundFirst``), on a fake clock."""
from __future__ import annotations

import pytest

from services.intake.adapters.background import ForegroundFirst

pytestmark = pytest.mark.unit


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []
        self.on_sleep = lambda: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep()


def test_busy_while_a_request_is_answered_and_just_after_one_arrived():
    time = FakeTime()
    priority = ForegroundFirst(recent=0.01, clock=time.clock, sleep=time.sleep)
    assert not priority.busy()
    with priority.request():
        time.now += 5
        assert priority.busy()
    assert priority.busy()            # the next one of a burst is usually on its way
    time.now += 0.011
    assert not priority.busy()


def test_the_work_waits_while_requests_are_answered_and_goes_on_when_they_are_done():
    time = FakeTime()
    priority = ForegroundFirst(recent=0.01, longest_wait=0.5, step=0.002, clock=time.clock, sleep=time.sleep)
    answering = priority.request()
    answering.__enter__()
    started = time.now

    def finish_after_20ms():
        if time.now - started >= 0.02 and priority.in_flight:
            answering.__exit__(None, None, None)

    time.on_sleep = finish_after_20ms
    priority.give_way()
    assert time.sleeps[0] == 0                          # every other green thread runs once
    waited = time.now - started
    assert 0.02 + 0.01 <= waited < 0.04                 # the answer, then the quiet that follows it


def test_a_flood_that_never_stops_holds_the_work_back_only_so_long():
    time = FakeTime()
    priority = ForegroundFirst(longest_wait=0.5, clock=time.clock, sleep=time.sleep)
    with priority.request():
        started = time.now
        priority.give_way()
        assert 0.5 <= time.now - started < 0.51


def test_an_idle_service_does_not_wait():
    time = FakeTime()
    priority = ForegroundFirst(clock=time.clock, sleep=time.sleep)
    priority.give_way()
    assert time.sleeps == [0]


def test_requests_count_as_arriving_for_half_a_second_after_the_last():
    time = FakeTime()
    priority = ForegroundFirst(recent=0.01, lately=0.5, clock=time.clock, sleep=time.sleep)
    assert not priority.arriving()
    with priority.request():
        assert priority.arriving()
    time.now += 0.2
    assert priority.arriving() and not priority.busy()   # a gap in a flood: items stay small
    time.now += 0.31
    assert not priority.arriving()
