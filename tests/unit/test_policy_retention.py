"""Retention decisions on hand-built point lists: tiers, differentials, copy-only fulls,
the log chain, and chains that must never break."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dbsafe.policy.model import Policy
from dbsafe.policy.retention import PointInfo, decide

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def full(pid: str, end: datetime, copy_only: bool = False) -> PointInfo:
    return PointInfo(pid, "full", copy_only, end, None)


def diff(pid: str, end: datetime, base: str) -> PointInfo:
    return PointInfo(pid, "diff", False, end, base)


def log(pid: str, end: datetime) -> PointInfo:
    return PointInfo(pid, "log", False, end, None)


def daily_fulls(first: date, last: date, hhmm=(1, 10), tz=BERLIN) -> list[PointInfo]:
    """One full a day at local time ``hhmm``, id F<yyyy-mm-dd>."""
    points, day = [], first
    while day <= last:
        end = datetime(day.year, day.month, day.day, *hhmm, tzinfo=tz).astimezone(UTC)
        points.append(full(f"F{day.isoformat()}", end))
        day += timedelta(days=1)
    return points


NO_LOGS = {"log_every": None, "keep_log": None}


def test_daily_tier_keeps_the_latest_full_of_each_day_for_keep_daily_days():
    points = daily_fulls(date(2026, 1, 1), date(2026, 3, 1), tz=UTC)
    points.append(full("ondemand", utc(2026, 2, 20, 0, 30)))   # before that day's scheduled
    policy = Policy("p", keep_daily=30, **NO_LOGS)
    d = decide(points, policy, utc(2026, 3, 1, 12))
    kept = sorted(d.keep)
    assert kept == [f"F{date(2026, 1, 31) + timedelta(days=i)}" for i in range(30)]
    assert all(d.keep[k] == ["daily"] for k in kept[:-1])
    assert d.keep["F2026-03-01"] == ["daily", "newest full"]
    assert "ondemand" in d.expire                 # not the latest full of its day
    assert len(d.expire) == len(points) - 30
    ends = {p.point_id: p.end_time for p in points}
    assert [ends[x] for x in d.expire] == sorted(ends[x] for x in d.expire)   # oldest first
    assert d.wal_base_point is None and d.log_keep_from is None


def test_grandfather_father_son_over_fourteen_months_in_local_dates():
    points = daily_fulls(date(2026, 1, 1), date(2027, 3, 10))
    policy = Policy("p", timezone="Europe/Berlin", keep_daily=7, keep_weekly=4,
                    keep_monthly=3, keep_yearly=1, **NO_LOGS)
    d = decide(points, policy, utc(2027, 3, 10, 12))   # a Wednesday
    daily = [f"F2027-03-{n:02d}" for n in range(4, 11)]
    weekly = ["F2027-02-14", "F2027-02-21", "F2027-02-28", "F2027-03-07", "F2027-03-10"]
    monthly = ["F2026-12-31", "F2027-01-31", "F2027-02-28", "F2027-03-10"]
    yearly = ["F2026-12-31", "F2027-03-10"]
    assert set(d.keep) == set(daily + weekly + monthly + yearly)
    assert len(d.keep) == 12
    assert d.keep["F2026-12-31"] == ["monthly", "yearly"]
    assert d.keep["F2027-02-28"] == ["weekly", "monthly"]
    assert d.keep["F2027-03-10"] == ["daily", "weekly", "monthly", "yearly", "newest full"]
    assert d.keep["F2027-02-14"] == ["weekly"]
    # 2026-11-30 was November's latest but is older than 3 months: expired
    assert "F2026-11-30" in d.expire and "F2026-12-30" in d.expire


def test_local_dates_decide_the_day_not_utc_dates():
    # 22:30 UTC and 23:30 UTC on 10 Jan are 23:30 on the 10th and 00:30 on the 11th in Berlin
    a, b = full("a", utc(2026, 1, 10, 22, 30)), full("b", utc(2026, 1, 10, 23, 30))
    c = full("c", utc(2026, 1, 10, 21, 0))
    berlin = Policy("p", timezone="Europe/Berlin", **NO_LOGS)
    assert set(decide([a, b, c], berlin, utc(2026, 1, 12)).keep) == {"a", "b"}
    assert set(decide([a, b, c], Policy("p", **NO_LOGS), utc(2026, 1, 12)).keep) == {"b"}


WEEKLY = Policy("w", full="weekly", full_days=("sun",), diff_days=("mon", "tue", "wed",
                "thu", "fri", "sat"), keep_daily=None, keep_weekly=2, keep_diff=10,
                log_every=None, keep_log=None, timezone="UTC")


def weekly_chain(weeks: int, start: date = date(2026, 1, 4)) -> list[PointInfo]:
    """Sunday fulls W<n> and Monday..Saturday diffs D<n>.<k> on them, 01:00 UTC."""
    points = []
    for w in range(weeks):
        sunday = start + timedelta(weeks=w)
        points.append(full(f"W{w}", datetime.combine(sunday, datetime.min.time(), UTC)
                           + timedelta(hours=1)))
        for k in range(1, 7):
            end = datetime.combine(sunday + timedelta(days=k), datetime.min.time(), UTC) \
                + timedelta(hours=1)
            points.append(diff(f"D{w}.{k}", end, f"W{w}"))
    return points


def test_weekly_fulls_with_diffs_and_a_diff_whose_base_would_expire():
    points = weekly_chain(6)                        # W0..W5: Sundays 4 Jan .. 8 Feb 2026
    now = utc(2026, 2, 14, 12)                      # Saturday of W5's week
    d = decide(points, WEEKLY, now)
    # weekly tier (2 weeks): W4 (1 Feb) and W5 (8 Feb)
    assert d.keep["W4"] == ["weekly", "base of D4.4", "base of D4.5", "base of D4.6"]
    assert d.keep["W5"] == ["weekly", "newest full"] + [f"base of D5.{k}" for k in range(1, 7)]
    # diffs of the last 10 days: from 5 Feb (D4.4) on
    kept_diffs = sorted(k for k in d.keep if k.startswith("D"))
    assert kept_diffs == ["D4.4", "D4.5", "D4.6"] + [f"D5.{k}" for k in range(1, 7)]
    assert set(d.keep) == {"W4", "W5", *kept_diffs}
    # keep_weekly=1: W4 leaves the weekly tier but stays as the base of its kept diffs
    d1 = decide(points, WEEKLY.with_changes(keep_weekly=1), now)
    assert d1.keep["W4"] == ["base of D4.4", "base of D4.5", "base of D4.6"]
    assert "W3" in d1.expire and "D3.6" in d1.expire


def test_copy_only_fulls_are_not_tiered_and_follow_keep_daily_or_thirty_days():
    points = daily_fulls(date(2026, 1, 1), date(2026, 2, 28), tz=UTC)
    points += [full("C-old", utc(2026, 1, 20, 15), copy_only=True),
               full("C-mid", utc(2026, 2, 10, 15), copy_only=True),
               full("C-new", utc(2026, 2, 28, 15), copy_only=True)]
    now = utc(2026, 3, 1, 12)
    d = decide(points, Policy("p", keep_daily=10, **NO_LOGS), now)
    assert d.keep["C-new"] == ["copy-only"]        # newest of all, yet not "newest full"
    assert "C-mid" in d.expire and "C-old" in d.expire
    assert d.keep["F2026-02-28"] == ["daily", "newest full"]
    # a weekly policy has no daily tier: copy-only fulls stay 30 days
    weekly = WEEKLY.with_changes(diff_days=[], keep_diff=None)
    d = decide(points, weekly, now)
    assert d.keep["C-mid"] == ["copy-only"] and "C-old" in d.expire


def test_log_points_and_the_base_of_the_log_chain():
    points = daily_fulls(date(2026, 1, 1), date(2026, 1, 31), hhmm=(1, 0), tz=UTC)
    hour = utc(2026, 1, 1, 2)
    n = 0
    while hour <= utc(2026, 1, 31, 12):
        points.append(log(f"L{n:04d}", hour))
        hour += timedelta(hours=1)
        n += 1
    policy = Policy("p", keep_daily=7, log_every=60, keep_log=14)
    now = utc(2026, 1, 31, 12)
    d = decide(points, policy, now)
    cutoff = now - timedelta(days=14)               # 17 Jan 12:00
    assert d.log_keep_from == cutoff
    assert d.wal_base_point == "F2026-01-17"         # ended 17 Jan 01:00, before the cutoff
    assert d.keep["F2026-01-17"] == ["base of the log chain"]
    assert "F2026-01-16" in d.expire and "F2026-01-18" in d.expire   # outside keep_daily
    by_id = {p.point_id: p for p in points}
    kept_logs = [k for k in d.keep if k.startswith("L")]
    assert all(by_id[k].end_time > cutoff for k in kept_logs)
    assert len(kept_logs) == 14 * 24
    assert all(by_id[k].end_time <= cutoff for k in d.expire if k.startswith("L"))


def test_a_differential_can_be_the_base_of_the_log_chain_and_keeps_its_full():
    points = weekly_chain(3)                         # W0 4 Jan .. W2 18 Jan, diffs daily
    policy = WEEKLY.with_changes(keep_weekly=1, keep_diff=7, log_every=15, keep_log=7)
    now = utc(2026, 1, 24, 12)                       # cutoff 17 Jan 12:00: D1.6 (17 Jan)
    d = decide(points, policy, now)
    assert d.wal_base_point == "D1.6"
    assert d.keep["D1.6"] == ["base of the log chain"]
    assert "base of D1.6" in d.keep["W1"]
    assert d.log_keep_from == now - timedelta(days=7)


def test_a_young_chain_keeps_its_first_base_and_restores_from_its_end():
    points = [full("F1", utc(2026, 1, 10, 1)), full("F2", utc(2026, 1, 11, 1)),
              log("L1", utc(2026, 1, 11, 6))]
    d = decide(points, Policy("p"), utc(2026, 1, 12))    # keep_log 14: cutoff 29 Dec
    assert d.wal_base_point == "F1" and d.log_keep_from == utc(2026, 1, 10, 1)
    assert d.expire == []


def test_log_points_left_from_before_a_switch_to_simple_are_kept_seven_days():
    points = [full("F1", utc(2026, 1, 1, 1)), log("L1", utc(2026, 1, 2, 1)),
              log("L2", utc(2026, 1, 9, 1))]
    d = decide(points, Policy("p", **NO_LOGS), utc(2026, 1, 10))
    assert d.keep["L2"] == ["log"] and "L1" in d.expire
    assert d.wal_base_point == "F1"                    # the chain the logs belong to


def test_newest_full_survives_when_backups_stopped_long_ago():
    points = daily_fulls(date(2026, 1, 1), date(2026, 1, 10), tz=UTC)
    d = decide(points, Policy("p", keep_daily=7, **NO_LOGS), utc(2026, 6, 1))
    assert d.keep == {"F2026-01-10": ["newest full"]}
    assert len(d.expire) == 9


def test_empty_and_invalid_inputs():
    assert decide([], Policy("p"), utc(2026, 1, 1)).keep == {}
    with pytest.raises(ValueError):
        decide([full("a", datetime(2026, 1, 1))], Policy("p"), utc(2026, 1, 2))
    with pytest.raises(ValueError):
        decide([full("a", utc(2026, 1, 1))] * 2, Policy("p"), utc(2026, 1, 2))
    with pytest.raises(ValueError):
        decide([PointInfo("a", "incr", False, utc(2026, 1, 1), None)], Policy("p"),
               utc(2026, 1, 2))


@pytest.mark.parametrize("seed", range(20))
def test_chains_never_break_on_random_histories(seed):
    rng = random.Random(seed)
    t = utc(2026, 1, 1)
    points: list[PointInfo] = []
    last_full = None
    for n in range(rng.randint(20, 200)):
        t += timedelta(hours=rng.randint(1, 60))
        kind = rng.choices(["full", "copy", "diff", "log"], [2, 1, 3, 6])[0]
        if kind == "full" or last_full is None:
            points.append(full(f"P{n}", t))
            last_full = f"P{n}"
        elif kind == "copy":
            points.append(full(f"P{n}", t, copy_only=True))
        elif kind == "diff":
            points.append(diff(f"P{n}", t, last_full))
        else:
            points.append(log(f"P{n}", t))
    policy = Policy("p", keep_daily=rng.choice([7, 10, 30]), keep_log=rng.choice([7, 14, 35]),
                    keep_diff=rng.choice([7, 20]), keep_monthly=rng.choice([None, 2]))
    now = t + timedelta(hours=rng.randint(0, 400))
    d = decide(points, policy, now)
    by_id = {p.point_id: p for p in points}
    assert set(d.keep) | set(d.expire) == set(by_id) and not set(d.keep) & set(d.expire)
    for pid in d.keep:                               # a kept diff's full is kept
        if by_id[pid].type == "diff":
            assert by_id[pid].base_point in d.keep
    regular = [p for p in points if p.type == "full" and not p.copy_only]
    assert regular[-1].point_id in d.keep            # the newest full
    base = by_id[d.wal_base_point]                   # PITR from log_keep_from stays possible
    assert base.point_id in d.keep and base.end_time <= d.log_keep_from
    assert d.log_keep_from >= now - timedelta(days=policy.keep_log) or \
        base.end_time == d.log_keep_from
    if base.type == "diff":
        assert base.base_point in d.keep


def test_a_copy_only_point_of_the_catalog_is_a_full_to_retention():
    """The catalog's type ``copy-only`` (found by the randomised API fuzzing: stopping
    protection with delete_data in an immutable vault answered 500) becomes a copy-only
    full, which retention keeps as such."""
    rows = [{"point_id": "f1", "type": "full", "copy_only": 0, "base_point": None,
             "end_time": "2026-03-01T01:00:00+00:00"},
            {"point_id": "c1", "type": "copy-only", "copy_only": 1, "base_point": None,
             "end_time": "2026-03-02T01:00:00+00:00"}]
    infos = [PointInfo.of(r) for r in rows]
    assert [(i.type, i.copy_only) for i in infos] == [("full", False), ("full", True)]
    decision = decide(infos, Policy("p", keep_daily=30), utc(2026, 3, 3))
    assert "copy-only" in decision.keep["c1"] and not decision.expire


# per database: a full taken with --db holds only the databases it names --------------------
def held(point: PointInfo, *databases: str) -> PointInfo:
    return PointInfo(point.point_id, point.type, point.copy_only, point.end_time,
                     point.base_point, frozenset(databases))


def test_tiers_and_the_newest_full_are_per_database():
    """Daily instance fulls, and on the last days a later full of x alone each day: y's
    daily, monthly and newest full stay the instance fulls, x's move to the fulls of x."""
    instance = [held(p, "x", "y") for p in daily_fulls(date(2026, 1, 1), date(2026, 3, 1),
                                                        tz=UTC)]
    only_x = [held(full(f"X{d}", utc(2026, 2, d, 23)), "x") for d in (27, 28)]
    points = instance + only_x + [held(full("X0301", utc(2026, 3, 1, 12)), "x")]
    policy = Policy("p", keep_daily=7, keep_monthly=2, **NO_LOGS)
    d = decide(points, policy, utc(2026, 3, 1, 18), ["x", "y"])
    assert d.keep["F2026-03-01"] == ["daily", "monthly", "newest full"]   # y's
    assert d.keep["F2026-02-28"] == ["daily", "monthly"]                  # y's February
    assert d.keep["X28"] == ["daily", "monthly"]                          # x's February
    assert d.keep["X0301"] == ["daily", "monthly", "newest full"]         # x's
    assert "F2026-01-31" in d.keep                                        # both, January
    # the instance at large (no databases given) keeps only the latest of each day
    instance_wide = decide(points, policy, utc(2026, 3, 1, 18))
    assert "F2026-02-28" not in instance_wide.keep
    assert instance_wide.keep["X0301"] == ["daily", "monthly", "newest full"]


def test_the_log_chain_keeps_a_base_of_every_database():
    """The base of y's log chain is the instance full, older than the full of x after it;
    the WAL is kept from the older of the two."""
    points = [held(full("F1", utc(2026, 3, 1, 1)), "x", "y"),
              held(full("X2", utc(2026, 3, 2, 1)), "x"),
              held(diff("D3", utc(2026, 3, 3, 1), "X2"), "x"),
              log("L1", utc(2026, 3, 3, 2))]
    policy = Policy("p", keep_daily=7, keep_log=7, log_every=15)
    d = decide(points, policy, utc(2026, 3, 20), ["x", "y"])
    assert "base of the log chain" in d.keep["F1"]
    assert "base of the log chain" in d.keep["D3"]
    assert d.wal_base_point == "F1"
    assert d.log_keep_from == utc(2026, 3, 13)
    # a point of every database (None) and one listed as a catalog row holds every one
    assert PointInfo.of({"point_id": "L", "type": "log", "copy_only": 0,
                         "end_time": "2026-03-01T00:00:00+00:00"}).holds("y")
    row = PointInfo.of({"point_id": "X", "type": "full", "copy_only": 0,
                        "end_time": "2026-03-01T00:00:00+00:00", "databases": '["x"]'})
    assert row.holds("x") and not row.holds("y")
