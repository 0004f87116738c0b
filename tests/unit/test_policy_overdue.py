"""The deadline a database's newest restorable instant must reach (policy/overdue.py): the
slot before the latest one, less the grace; log slots under the FULL model, full and
differential slots under SIMPLE, in the policy's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

from dbsafe.policy.model import Policy
from dbsafe.policy.overdue import GRACE, restorable_deadline


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_full_model_counts_log_slots():
    policy = Policy(name="p", log_every=15)
    # 10:31: the 10:30 log backup may still run; the 10:15 one must have ended the chain
    assert restorable_deadline(policy, at("2026-03-04T10:31:00+00:00")) == \
        at("2026-03-04T10:15:00+00:00") - GRACE
    assert restorable_deadline(policy, at("2026-03-04T10:30:00+00:00")) == \
        at("2026-03-04T10:15:00+00:00") - GRACE


def test_simple_model_counts_full_and_differential_slots():
    daily = Policy(name="d", full="daily", full_time="01:00", log_every=None)
    assert restorable_deadline(daily, at("2026-03-04T00:59:00+00:00")) == \
        at("2026-03-02T01:00:00+00:00") - GRACE
    assert restorable_deadline(daily, at("2026-03-04T01:00:00+00:00")) == \
        at("2026-03-03T01:00:00+00:00") - GRACE
    # a weekly full on Sunday and differentials Monday to Friday: none on Saturday, so on
    # Sunday after the full's slot the slot before it is Friday's differential
    weekly = Policy(name="w", full="weekly", full_days=("sun",), full_time="01:00",
                    diff_days=("mon", "tue", "wed", "thu", "fri"), log_every=None,
                    keep_diff=7)
    assert restorable_deadline(weekly, at("2026-03-08T02:00:00+00:00")) == \
        at("2026-03-06T01:00:00+00:00") - GRACE  # 2026-03-08 is a Sunday
    assert restorable_deadline(weekly, at("2026-03-10T02:00:00+00:00")) == \
        at("2026-03-09T01:00:00+00:00") - GRACE


def test_slots_follow_the_policy_time_zone_across_dst():
    berlin = Policy(name="b", full="daily", full_time="02:30", timezone="Europe/Berlin",
                    log_every=None)
    # 2026-03-29: 02:30 does not exist in Berlin; that slot runs at 03:00 CEST (01:00 UTC)
    assert restorable_deadline(berlin, at("2026-03-30T12:00:00+00:00")) == \
        at("2026-03-29T01:00:00+00:00") - GRACE
