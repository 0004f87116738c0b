"""Schedule slots: local wall times on chosen days, DST nights, UTC-aligned log slots,
catch-up after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dbsafe.policy.model import Policy
from dbsafe.policy.schedule import latest_slot, next_slot, slots_between

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def daily(time: str, tz: str, **kw) -> Policy:
    return Policy("p", full_time=time, timezone=tz, **kw)


def weekly(days, time="01:00", tz="Europe/Berlin", **kw) -> Policy:
    return Policy("p", full="weekly", full_days=days, full_time=time, timezone=tz,
                  keep_daily=None, keep_weekly=4, **kw)


def test_daily_full_at_local_time_in_winter_and_summer():
    p = daily("01:00", "Europe/Berlin")
    assert next_slot(p, "full", utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 0)    # CET +1
    assert next_slot(p, "full", utc(2026, 7, 10, 12)) == utc(2026, 7, 10, 23)   # CEST +2


def test_spring_forward_berlin_missing_time_runs_when_the_clocks_jump():
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
    p = daily("02:30", "Europe/Berlin")
    slots = slots_between(p, "full", utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    assert slots == [utc(2026, 3, 28, 1, 30),   # 02:30 CET
                     utc(2026, 3, 29, 1, 0),    # the jump: 03:00 CEST, the first instant after
                     utc(2026, 3, 30, 0, 30)]   # 02:30 CEST
    assert slots[1].astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"


def test_spring_forward_times_outside_the_gap_are_unchanged():
    p = daily("03:30", "Europe/Berlin")
    assert next_slot(p, "full", utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 30)   # 03:30 CEST
    p = daily("01:59", "Europe/Berlin")
    assert next_slot(p, "full", utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 0, 59)   # 01:59 CET


def test_fall_back_berlin_ambiguous_time_runs_once_at_its_first_occurrence():
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    p = daily("02:30", "Europe/Berlin")
    slots = slots_between(p, "full", utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    assert slots == [utc(2026, 10, 25, 0, 30),   # 02:30 CEST, the first 02:30
                     utc(2026, 10, 26, 1, 30)]   # 02:30 CET
    # Asked between the two 02:30s, the next run is the next day's, not the second 02:30.
    assert next_slot(p, "full", utc(2026, 10, 25, 0, 45)) == utc(2026, 10, 26, 1, 30)
    assert latest_slot(p, "full", utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 0, 30)


def test_new_york_dst_nights():
    # 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST.
    p = daily("02:15", "America/New_York")
    assert next_slot(p, "full", utc(2026, 3, 8, 0)) == utc(2026, 3, 8, 7, 0)
    p = daily("01:30", "America/New_York")
    slots = slots_between(p, "full", utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert slots == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert slots[0].astimezone(NEW_YORK).strftime("%H:%M %Z") == "01:30 EDT"


def test_weekly_days_and_differentials():
    p = weekly(("sun", "wed"), diff_days=("mon", "tue", "thu", "fri", "sat"), keep_diff=14)
    start, end = utc(2026, 1, 4, 12), utc(2026, 1, 18, 12)     # Sun 4 Jan .. Sun 18 Jan
    fulls = slots_between(p, "full", start, end)
    assert [s.astimezone(BERLIN).strftime("%a %d") for s in fulls] == \
        ["Wed 07", "Sun 11", "Wed 14", "Sun 18"]
    diffs = slots_between(p, "diff", start, end)
    assert len(diffs) == 10
    assert not {s.date() for s in diffs} & {s.date() for s in fulls}
    assert all(s.astimezone(BERLIN).strftime("%H:%M") == "01:00" for s in fulls + diffs)


def test_next_slot_of_a_weekly_full_a_week_away():
    p = weekly(("sun",))
    after = utc(2026, 1, 11, 0, 0, 1)                          # just after Sun 01:00 CET
    assert next_slot(p, "full", after) == utc(2026, 1, 18, 0)
    assert latest_slot(p, "full", after) == utc(2026, 1, 11, 0)


def test_kinds_that_never_run():
    p = Policy("p", log_every=None, keep_log=None)
    assert next_slot(p, "diff", utc(2026, 1, 1)) is None
    assert latest_slot(p, "drill", utc(2026, 1, 1)) is None
    assert next_slot(p, "log", utc(2026, 1, 1)) is None
    assert slots_between(p, "log", utc(2026, 1, 1), utc(2026, 1, 2)) == []


def test_drills_at_their_own_time():
    p = Policy("p", drill_days=("sat",), drill_time="04:00", timezone="Europe/Berlin")
    assert next_slot(p, "drill", utc(2026, 1, 5)) == utc(2026, 1, 10, 3)


def test_log_slots_are_utc_multiples_of_the_interval_and_ignore_dst():
    p = Policy("p", log_every=15, timezone="Europe/Berlin")
    assert next_slot(p, "log", utc(2026, 3, 29, 0, 59, 59)) == utc(2026, 3, 29, 1, 0)
    assert next_slot(p, "log", utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 1, 15)
    assert latest_slot(p, "log", utc(2026, 3, 29, 1, 14, 59)) == utc(2026, 3, 29, 1, 0)
    # across the spring-forward night: 24 h of UTC time has 96 slots, evenly spaced
    slots = slots_between(p, "log", utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert len(slots) == 96
    assert {b - a for a, b in zip(slots, slots[1:], strict=False)} == {timedelta(minutes=15)}


def test_one_minute_logs():
    p = Policy("p", log_every=1)
    assert slots_between(p, "log", utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 3)) == \
        [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 3)]


def test_catch_up_after_three_days_down_is_one_slot():
    p = daily("01:00", "Europe/Berlin")
    last_run = utc(2026, 2, 2, 0)                     # Mon 01:00 CET, then the server was down
    back = utc(2026, 2, 5, 9)                         # Thu morning
    missed = slots_between(p, "full", last_run, back)
    assert len(missed) == 3                            # Tue, Wed, Thu
    assert latest_slot(p, "full", back) == utc(2026, 2, 5, 0)   # caught up once: Thu's
    assert next_slot(p, "full", back) == utc(2026, 2, 6, 0)


def test_slot_boundaries_are_strict_after_and_inclusive_at():
    p = daily("01:00", "UTC")
    slot = utc(2026, 1, 1, 1)
    assert next_slot(p, "full", slot) == utc(2026, 1, 2, 1)
    assert latest_slot(p, "full", slot) == slot
    assert slots_between(p, "full", slot, slot + timedelta(days=1)) == [utc(2026, 1, 2, 1)]


def test_results_are_utc_for_any_aware_input():
    p = daily("01:00", "Europe/Berlin")
    after = datetime(2026, 1, 10, 13, tzinfo=BERLIN)
    result = next_slot(p, "full", after)
    assert result.tzinfo is UTC and result == utc(2026, 1, 11, 0)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        next_slot(Policy("p"), "full", datetime(2026, 1, 1))
