"""callback_due: the caller's words and the local clock → the day to call back."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from agent.callbacks import callback_due

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
UTC = dt.UTC


def at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: dt.tzinfo = NY) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=tz)


# 2025-06-04 is a Wednesday.
CASES = [
    # (window, now, expected due date)
    (None, at(2025, 6, 4, 21), dt.date(2025, 6, 4)),
    ("", at(2025, 6, 4, 21), dt.date(2025, 6, 4)),
    ("ASAP", at(2025, 6, 4, 21), dt.date(2025, 6, 4)),
    ("as soon as possible", at(2025, 6, 4, 21), dt.date(2025, 6, 4)),
    ("today", at(2025, 6, 4, 18), dt.date(2025, 6, 4)),
    ("tonight", at(2025, 6, 4, 18), dt.date(2025, 6, 4)),
    ("this afternoon", at(2025, 6, 4, 12), dt.date(2025, 6, 4)),
    ("tomorrow", at(2025, 6, 4, 18), dt.date(2025, 6, 5)),
    ("tomorrow morning", at(2025, 6, 4, 23), dt.date(2025, 6, 5)),
    # night-owl rule: before 04:00 "tomorrow" is the day that has just begun
    ("tomorrow morning", at(2025, 6, 5, 0, 30), dt.date(2025, 6, 5)),
    ("Tomorrow morning please", at(2025, 6, 5, 3, 59), dt.date(2025, 6, 5)),
    ("tomorrow morning", at(2025, 6, 5, 4, 0), dt.date(2025, 6, 6)),
    ("the day after tomorrow", at(2025, 6, 4, 20), dt.date(2025, 6, 6)),
    ("day after tomorrow", at(2025, 6, 5, 1), dt.date(2025, 6, 6)),
    ("in 3 days", at(2025, 6, 4, 20), dt.date(2025, 6, 7)),
    ("in a couple of days", at(2025, 6, 4, 20), dt.date(2025, 6, 6)),
    ("in two days", at(2025, 6, 4, 20), dt.date(2025, 6, 6)),
    ("next week", at(2025, 6, 4, 20), dt.date(2025, 6, 9)),
    ("sometime next week", at(2025, 6, 9, 20), dt.date(2025, 6, 16)),
    ("this weekend", at(2025, 6, 4, 20), dt.date(2025, 6, 7)),
    ("this weekend", at(2025, 6, 8, 20), dt.date(2025, 6, 8)),
    # weekdays: the next one after today; "this <today>" is today
    ("Monday", at(2025, 6, 4, 20), dt.date(2025, 6, 9)),
    ("on Friday after 3", at(2025, 6, 4, 20), dt.date(2025, 6, 6)),
    ("next Friday", at(2025, 6, 4, 20), dt.date(2025, 6, 6)),
    ("Wednesday", at(2025, 6, 4, 20), dt.date(2025, 6, 11)),
    ("this Wednesday", at(2025, 6, 4, 20), dt.date(2025, 6, 4)),
    ("Thursday", at(2025, 6, 5, 1), dt.date(2025, 6, 5)),  # night owl: the day about to start
    # time of day without a day: today if still ahead, else tomorrow
    ("after 5", at(2025, 6, 4, 14), dt.date(2025, 6, 4)),
    ("after 5", at(2025, 6, 4, 19), dt.date(2025, 6, 5)),
    ("at 9am", at(2025, 6, 4, 19), dt.date(2025, 6, 5)),
    ("around 8:30 pm", at(2025, 6, 4, 19), dt.date(2025, 6, 4)),
    ("in the morning", at(2025, 6, 4, 22), dt.date(2025, 6, 5)),
    ("in the morning", at(2025, 6, 5, 0, 30), dt.date(2025, 6, 5)),
    ("before noon", at(2025, 6, 4, 9), dt.date(2025, 6, 4)),
    ("whenever works", at(2025, 6, 4, 20), dt.date(2025, 6, 4)),
    # Spanish
    ("mañana", at(2025, 6, 4, 20), dt.date(2025, 6, 5)),
    ("mañana por la mañana", at(2025, 6, 4, 23), dt.date(2025, 6, 5)),
    ("mañana por la mañana", at(2025, 6, 5, 0, 30), dt.date(2025, 6, 5)),
    ("por la mañana", at(2025, 6, 4, 20), dt.date(2025, 6, 5)),
    ("esta mañana", at(2025, 6, 4, 8), dt.date(2025, 6, 4)),
    ("pasado mañana", at(2025, 6, 4, 20), dt.date(2025, 6, 6)),
    ("el lunes", at(2025, 6, 4, 20), dt.date(2025, 6, 9)),
    ("el sábado", at(2025, 6, 4, 20), dt.date(2025, 6, 7)),
    ("lo antes posible", at(2025, 6, 4, 20), dt.date(2025, 6, 4)),
    ("la próxima semana", at(2025, 6, 4, 20), dt.date(2025, 6, 9)),
    ("en dos días", at(2025, 6, 4, 20), dt.date(2025, 6, 6)),
]


@pytest.mark.parametrize(("window", "now", "expected"), CASES)
def test_callback_due(window: str | None, now: dt.datetime, expected: dt.date) -> None:
    assert callback_due(window, now=now, tz=NY) == expected


# US DST 2025: spring forward Sun 2025-03-09 02:00 EST → 03:00 EDT;
# fall back Sun 2025-11-02 02:00 EDT → 01:00 EST.
DST_CASES = [
    # 23:30 EST on Saturday: "tomorrow morning" is Sunday, the short day
    (dt.datetime(2025, 3, 9, 4, 30, tzinfo=UTC), "tomorrow morning", dt.date(2025, 3, 9)),
    # 01:30 EST, before the jump: the night owl's "tomorrow" is today
    (dt.datetime(2025, 3, 9, 6, 30, tzinfo=UTC), "tomorrow morning", dt.date(2025, 3, 9)),
    # 03:30 EDT, just after the jump (an hour adder would say 04:30): still before 04:00
    (dt.datetime(2025, 3, 9, 7, 30, tzinfo=UTC), "tomorrow morning", dt.date(2025, 3, 9)),
    # 04:30 EDT: the caller is up early, tomorrow is Monday
    (dt.datetime(2025, 3, 9, 8, 30, tzinfo=UTC), "tomorrow", dt.date(2025, 3, 10)),
    # 23:30 EDT Saturday before fall back
    (dt.datetime(2025, 11, 2, 3, 30, tzinfo=UTC), "tomorrow morning", dt.date(2025, 11, 2)),
    # 01:30 EDT (first pass) and 01:30 EST (second pass) are both the same night
    (dt.datetime(2025, 11, 2, 5, 30, tzinfo=UTC), "tomorrow morning", dt.date(2025, 11, 2)),
    (dt.datetime(2025, 11, 2, 6, 30, tzinfo=UTC), "tomorrow morning", dt.date(2025, 11, 2)),
    # 03:30 EST after the repeat hour (an hour adder on EDT would say 04:30)
    (dt.datetime(2025, 11, 2, 8, 30, tzinfo=UTC), "tomorrow", dt.date(2025, 11, 2)),
    (dt.datetime(2025, 11, 2, 9, 30, tzinfo=UTC), "tomorrow", dt.date(2025, 11, 3)),
    # weekdays across the change: Saturday night before spring forward → Monday
    (dt.datetime(2025, 3, 9, 3, 0, tzinfo=UTC), "Monday", dt.date(2025, 3, 10)),
]


@pytest.mark.parametrize(("now", "window", "expected"), DST_CASES)
def test_callback_due_across_dst(now: dt.datetime, window: str, expected: dt.date) -> None:
    assert callback_due(window, now=now, tz=NY) == expected


def test_now_in_another_zone_is_read_in_the_business_zone() -> None:
    # 02:00 UTC Thursday is 22:00 Wednesday in New York and 19:00 in Los Angeles
    now = dt.datetime(2025, 6, 5, 2, 0, tzinfo=UTC)
    assert callback_due("tomorrow", now=now, tz=NY) == dt.date(2025, 6, 5)
    assert callback_due("after 8 pm", now=now, tz=LA) == dt.date(2025, 6, 4)
    assert callback_due("after 8 pm", now=now, tz=NY) == dt.date(2025, 6, 5)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        callback_due("tomorrow", now=dt.datetime(2025, 6, 4, 20), tz=NY)
