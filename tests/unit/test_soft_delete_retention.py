"""When an immutable vault's retention of a point ends (``retained_until``), the retention
frozen into a point at backup time (``freeze``, ``thaw``) and what counts as shortening it,
and the soft delete objects of the repository (markers and settings) as a local folder
stores them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.policy.model import Policy
from dbsafe.policy.retention import (
    PointInfo,
    decide,
    freeze,
    longest_until,
    retained_until,
    shortened,
    thaw,
)
from dbsafe.storage.local import LocalStorage
from dbsafe.vault import softdelete as sd

NO_LOGS = {"log_every": None, "keep_log": None}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def until(points: list[PointInfo], policy: Policy, now: datetime) -> dict:
    decision = decide(points, policy, now)
    return {p.point_id: retained_until(p, decision.keep.get(p.point_id, []), policy)
            for p in points}


def test_each_tier_ends_after_its_length_the_latest_tier_wins():
    policy = Policy("p", keep_daily=10, keep_weekly=2, keep_monthly=3, **NO_LOGS)
    points = []
    day = date(2026, 1, 1)
    while day <= date(2026, 3, 31):  # one full a day at 01:00 UTC
        points.append(PointInfo(f"F{day}", "full", False, utc(day.year, day.month, day.day, 1),
                                None))
        day += timedelta(days=1)
    got = until(points, policy, utc(2026, 3, 31, 12))
    assert got["F2026-03-30"] == utc(2026, 4, 9, 1)            # daily: 10 days
    assert got["F2026-03-31"] == utc(2026, 6, 30, 1)           # last of March: 3 months
    assert got["F2026-03-29"] == utc(2026, 4, 12, 1)           # a Sunday: 2 weeks
    assert got["F2026-03-22"] == utc(2026, 4, 5, 1)
    assert got["F2026-01-31"] == utc(2026, 4, 30, 1)           # 3 months, clamped to 30 April
    assert got["F2026-03-15"] is None                          # not kept by any tier now
    kept_by_chain_only = PointInfo("old", "full", False, utc(2020, 1, 1), None)
    assert until([kept_by_chain_only], policy, utc(2026, 1, 1))["old"] is None  # newest full


def test_differentials_logs_and_copy_only_fulls():
    policy = Policy("p", keep_daily=None, full="weekly", full_days=["sun"], diff_days=["mon"],
                    keep_weekly=4, keep_diff=7, log_every=60, keep_log=14)
    base = PointInfo("F", "full", False, utc(2026, 3, 1, 1), None)
    points = [base, PointInfo("D", "diff", False, utc(2026, 3, 2, 1), "F"),
              PointInfo("L", "log", False, utc(2026, 3, 2, 2), None),
              PointInfo("C", "full", True, utc(2026, 3, 2, 3), None)]
    got = until(points, policy, utc(2026, 3, 3))
    assert got["D"] == utc(2026, 3, 9, 1)
    assert got["L"] == utc(2026, 3, 16, 2)
    assert got["C"] == utc(2026, 4, 1, 3)                      # no daily tier: 30 days
    assert got["F"] == utc(2026, 3, 29, 1)


def test_frozen_retention_round_trips_and_storage_cannot_smuggle_anything_in():
    policy = Policy("gfs", timezone="Europe/Berlin", keep_daily=10, keep_weekly=2,
                    keep_monthly=3, keep_yearly=7, keep_diff=None, **NO_LOGS)
    doc = freeze(policy, 14)
    assert doc == {"policy": "gfs", "timezone": "Europe/Berlin", "keep_daily": 10,
                   "keep_weekly": 2, "keep_monthly": 3, "keep_yearly": 7, "keep_diff": None,
                   "keep_log": None}
    thawed = thaw(doc)
    assert (thawed.name, thawed.timezone) == ("gfs", "Europe/Berlin")
    assert not shortened(policy, thawed) and not shortened(thawed, policy)
    assert freeze(None, 14) == {"policy": None, "keep_days": 14} and thaw(freeze(None, 14)) == 14
    for bad in (None, [], {}, {**doc, "extra": 1}, {**doc, "keep_daily": 3},
                {**doc, "keep_yearly": True}, {**doc, "keep_log": "14"},
                {**doc, "timezone": "Mars/Olympus"}, {**doc, "policy": None},
                {"policy": None, "keep_days": 0}, {"policy": "x", "keep_days": 14}):
        with pytest.raises(ValueError):
            thaw(bad)


def test_what_shortens_retention():
    old = Policy("p", keep_daily=30, keep_weekly=12, keep_log=14)
    assert shortened(old, old) == []
    assert shortened(old, Policy("p", keep_daily=31, keep_weekly=12, keep_monthly=6,
                                 keep_log=14)) == []                 # longer, a new tier
    assert shortened(old, Policy("p", keep_daily=7, keep_weekly=None, keep_log=14)) == [
        ("keep_daily", 30, 7), ("keep_weekly", 12, None)]           # lower, or unset
    assert shortened(old, Policy("p", full="weekly", full_days=("sun",), keep_daily=None,
                                 keep_weekly=12, keep_log=14)) == [("keep_daily", 30, None)]


def test_longest_until_when_the_neighbours_are_unknown():
    policy = Policy("p", keep_daily=10, keep_weekly=2, keep_monthly=3, keep_diff=20,
                    keep_log=7)
    end = utc(2026, 1, 31, 1)
    assert longest_until(PointInfo("F", "full", False, end, None), policy) == utc(2026, 4, 30, 1)
    assert longest_until(PointInfo("C", "full", True, end, None), policy) == utc(2026, 2, 10, 1)
    assert longest_until(PointInfo("D", "diff", False, end, "F"), policy) == utc(2026, 2, 20, 1)
    assert longest_until(PointInfo("L", "log", False, end, None), policy) == utc(2026, 2, 7, 1)
    row = {"point_id": "C", "type": "copy-only", "copy_only": 1, "end_time": end.isoformat()}
    assert PointInfo.of(row) == PointInfo("C", "full", True, end, None)  # as decide wants


def test_markers_and_settings_round_trip(tmp_path):
    storage = LocalStorage(tmp_path)
    assert sd.soft_delete_setting(storage) == {"enabled": True, "days": 14}  # the default
    assert sd.immutability_setting(storage)["state"] == "off"
    assert sd.marker_ids(storage) == set() and sd.read_marker(storage, "p1") is None

    marker = {"point_id": "p1", "deleted_at": "2026-01-01T00:00:00+00:00",
              "purge_after": "2026-01-15T00:00:00+00:00", "reason": "r", "job_id": "j"}
    sd.write_marker(storage, marker)
    assert sd.marker_ids(storage) == {"p1"} and sd.read_marker(storage, "p1") == marker
    sd.delete_marker(storage, "p1")
    sd.delete_marker(storage, "p1")  # idempotent
    assert sd.marker_ids(storage) == set()

    sd.save_soft_delete_setting(storage, False, 30, "2026-01-01T00:00:00+00:00")
    assert sd.soft_delete_setting(storage) == {"enabled": False, "days": 30}
    sd.save_immutability_setting(storage, "locked", "2026-01-01T00:00:00+00:00")
    assert sd.immutability_setting(storage)["state"] == "locked"

    (tmp_path / "settings" / "immutability").write_text('{"state": "maybe"}')
    with pytest.raises(DbsafeError) as err:
        sd.immutability_setting(storage)
    assert err.value.code == "vault.object_corrupt"
