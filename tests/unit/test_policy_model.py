"""The policy model: the service's ranges and rules, one clear sentence per broken rule."""

from __future__ import annotations

import json

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.policy.model import (
    DEFAULT_POLICY,
    LOG_MINUTES,
    Policy,
    parse_days,
    validate,
    violations,
)

WEEKLY = Policy("weekly", full="weekly", full_days=("sun",), full_time="01:00",
                timezone="Europe/Berlin", diff_days=("mon", "tue", "wed", "thu", "fri", "sat"),
                log_every=15, keep_daily=None, keep_weekly=12, keep_monthly=12, keep_yearly=7,
                keep_diff=30, keep_log=14)


def rule_of(policy: Policy) -> str:
    with pytest.raises(DbsafeError) as exc:
        validate(policy)
    assert exc.value.code == "policy.invalid"
    return exc.value.details["rule"]


def test_default_policy_is_the_services_hourly_log_backup():
    validate(DEFAULT_POLICY)
    p = DEFAULT_POLICY
    assert (p.name, p.full, p.full_time, p.timezone) == ("default", "daily", "01:00", "UTC")
    assert (p.log_every, p.keep_daily, p.keep_log, p.compression) == (60, 30, 14, True)
    assert p.recovery_model == "FULL"


def test_the_issue_example_policy_is_valid():
    validate(WEEKLY)
    assert WEEKLY.full_weekdays() == ("sun",)


def test_round_trip_through_json():
    body = json.dumps(WEEKLY.to_dict())
    again = Policy.from_dict(json.loads(body))
    assert again == WEEKLY
    assert isinstance(again.diff_days, tuple)


def test_from_dict_refuses_unknown_settings_and_fills_defaults():
    with pytest.raises(DbsafeError) as exc:
        Policy.from_dict({"name": "x", "keep_forever": 1})
    assert "keep_forever" in exc.value.message
    assert Policy.from_dict({"name": "x"}) == Policy("x")


def test_simple_model_without_log_backups():
    p = Policy("simple", log_every=None, keep_log=None)
    validate(p)
    assert p.recovery_model == "SIMPLE"


@pytest.mark.parametrize("minutes", LOG_MINUTES)
def test_every_offered_log_interval_divides_a_day(minutes):
    validate(Policy("x", log_every=minutes))
    assert 1440 % minutes == 0


@pytest.mark.parametrize("minutes", [0, 7, 45, 90, 2880, -15])
def test_other_log_intervals_are_refused_with_the_allowed_list(minutes):
    rule = rule_of(Policy("x", log_every=minutes))
    assert "log_every must be one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 30, 60, 120, 240, 480, " \
           "720, 1440 minutes" in rule


@pytest.mark.parametrize("setting, low, high, unit", [
    ("keep_daily", 7, 9999, "days"), ("keep_weekly", 1, 5163, "weeks"),
    ("keep_monthly", 1, 1188, "months"), ("keep_yearly", 1, 99, "years"),
    ("keep_diff", 7, 180, "days"), ("keep_log", 7, 35, "days"),
])
def test_retention_ranges(setting, low, high, unit):
    base = WEEKLY if setting in ("keep_weekly", "keep_diff") else DEFAULT_POLICY
    validate(base.with_changes(**{setting: low}))
    validate(base.with_changes(**{setting: high}))
    for bad in (low - 1, high + 1):
        rule = rule_of(base.with_changes(**{setting: bad}))
        assert f"{setting} must be {low} to {high} {unit}, not {bad}" in rule


def test_differentials_only_with_a_weekly_full():
    rule = rule_of(Policy("x", diff_days=("mon",), keep_diff=14))
    assert "differentials need a weekly full" in rule


def test_differential_never_on_a_fulls_day():
    rule = rule_of(WEEKLY.with_changes(diff_days=["sun", "mon"]))
    assert "never runs on a full's day: sun" in rule


def test_at_most_one_differential_a_day():
    rule = rule_of(WEEKLY.with_changes(diff_days=["mon", "mon"]))
    assert "diff_days lists mon more than once" in rule


def test_differentials_need_their_retention():
    rule = rule_of(WEEKLY.with_changes(keep_diff=None))
    assert "differentials need keep_diff (7 to 180 days)" in rule


def test_weekly_full_needs_days_and_the_weekly_tier_not_the_daily_one():
    rule = rule_of(WEEKLY.with_changes(full_days=[], diff_days=[], keep_weekly=None,
                                       keep_daily=30))
    assert "a weekly full needs at least one weekday" in rule
    assert "a weekly full has no daily retention tier" in rule
    assert "a weekly full needs keep_weekly" in rule


def test_daily_full_needs_the_daily_tier_and_no_days():
    rule = rule_of(Policy("x", keep_daily=None, full_days=("mon",)))
    assert "a daily full needs keep_daily (7 to 9999 days)" in rule
    assert "a daily full runs every day" in rule


def test_log_backups_need_log_retention():
    assert "log backups need keep_log (7 to 35 days)" in rule_of(Policy("x", keep_log=None))


@pytest.mark.parametrize("tz", ["Mars/Olympus", "Europe/Berln", "", "../etc/passwd", "CET5"])
def test_unknown_time_zones_are_refused(tz):
    assert "is not an IANA time zone name" in rule_of(Policy("x", timezone=tz))


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_iana_time_zones(tz):
    validate(Policy("x", timezone=tz))


@pytest.mark.parametrize("hhmm", ["24:00", "1:00", "01:60", "0100", "01:00:00", "", "ab:cd"])
def test_times_must_be_hh_mm(hhmm):
    assert "full_time must be a 24-hour time HH:MM" in rule_of(Policy("x", full_time=hhmm))
    assert "drill_time must be a 24-hour time HH:MM" in rule_of(Policy("x", drill_time=hhmm))


def test_compression_level_is_a_zstd_level():
    validate(Policy("x", compression_level=22))
    validate(Policy("x", compression=False, compression_level=3))
    for bad in (0, 23, -1):
        assert "compression_level must be a zstd level from 1 (fastest) to 22" in \
            rule_of(Policy("x", compression_level=bad))


def test_unknown_weekdays_and_bad_names():
    rule = rule_of(Policy("bad name!", drill_days=("funday",)))
    assert "the name must be 1 to 63 letters" in rule
    assert "drill_days has unknown weekday(s) 'funday'" in rule


def test_every_broken_rule_is_reported_at_once():
    p = Policy("x", full="monthly", log_every=7, keep_daily=3, compression_level=99)
    assert len(violations(p)) == 4


def test_wrong_types_are_refused_not_crashed_on():
    p = Policy.from_dict({"name": "x", "keep_daily": "30", "log_every": True,
                          "full_days": "sun", "compression": "yes"})
    problems = violations(p)
    assert any("keep_daily must be 7 to 9999 days, not '30'" in m for m in problems)
    assert any(m.startswith("log_every must be one of") for m in problems)
    assert any(m.startswith("full_days must be a list of weekdays") for m in problems)
    assert any(m.startswith("compression must be on or off") for m in problems)


def test_parse_days():
    assert parse_days("sun,Wed") == ("wed", "sun")
    assert parse_days("Monday, tuesday") == ("mon", "tue")
    assert parse_days("") == () and parse_days("none") == ()
    assert parse_days("sun,funday") == ("sun", "funday")
