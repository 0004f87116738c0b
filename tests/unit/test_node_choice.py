"""The node choice per backup type (dbsafe.policy.node_choice): the seed's four tables,
"secondary" versus "secondary only" without a healthy secondary, and regions."""

from __future__ import annotations

import pytest

from dbsafe.policy.node_choice import BACKUP_TYPES, PREFERENCES, NodeState, choose, plan

WE, NE = "West Europe", "North Europe"


def nodes(primary_region=WE, standby_region=WE, standby_healthy=True, primary_healthy=True,
          primary_role="primary", standby_role="standby"):
    return [NodeState("p1", primary_role, primary_region, primary_healthy,
                      None if primary_healthy else "down"),
            NodeState("s1", standby_role, standby_region, standby_healthy,
                      None if standby_healthy else "not streaming", replay_lsn=100)]


# the seed's tables: preference -> (full, diff, log, copy-only)
SEED = {"primary": ("p1", "p1", "p1", "p1"),
        "secondary-only": ("p1", "p1", "s1", "s1"),
        "secondary": ("p1", "p1", "s1", "s1"),
        "none": ("p1", "p1", "s1", "s1")}


@pytest.mark.parametrize("preference", PREFERENCES)
def test_seed_tables_with_a_healthy_secondary(preference):
    got = plan(nodes(), preference, WE)
    assert tuple(got[t]["server"] for t in BACKUP_TYPES) == SEED[preference]
    assert all(got[t]["reason"] for t in BACKUP_TYPES)


@pytest.mark.parametrize("preference,expected", [
    ("primary", "p1"), ("secondary-only", None), ("secondary", "p1"), ("none", "p1")])
def test_without_a_healthy_secondary_only_secondary_only_refuses(preference, expected):
    for backup_type in ("log", "copy-only"):
        got = choose(nodes(standby_healthy=False), preference, WE, backup_type)
        assert got.server == expected
        if expected is None:
            assert "never uses the primary" in got.reason


def test_full_and_diff_never_come_from_a_secondary():
    for preference in PREFERENCES:
        for backup_type in ("full", "diff"):
            got = choose(nodes(primary_healthy=False), preference, WE, backup_type)
            assert got.server is None and "p1" in got.reason


def test_a_secondary_in_another_region_is_never_used():
    ns = nodes(standby_region=NE)
    for preference in ("primary", "secondary", "none"):
        assert {choose(ns, preference, WE, t).server for t in BACKUP_TYPES} == {"p1"}
    got = choose(ns, "secondary-only", WE, "log")
    assert got.server is None and WE in got.reason


def test_a_primary_in_another_region_takes_no_full_but_a_local_secondary_may_take_logs():
    ns = nodes(primary_region=NE)
    full = choose(ns, "secondary", WE, "full")
    assert full.server is None and NE in full.reason and WE in full.reason
    assert choose(ns, "secondary", WE, "log").server == "s1"
    assert choose(ns, "primary", WE, "log").server is None


def test_two_primaries_take_nothing_and_the_least_behind_secondary_wins():
    split = nodes(standby_role="primary")
    got = choose(split, "primary", WE, "full")
    assert got.server is None and "more than one" in got.reason
    three = nodes() + [NodeState("s0", "standby", WE, True, replay_lsn=50)]
    assert choose(three, "secondary", WE, "log").server == "s1"


def test_unknown_preference_or_type_is_a_programming_error():
    with pytest.raises(ValueError):
        choose(nodes(), "sometimes", WE, "full")
    with pytest.raises(ValueError):
        choose(nodes(), "primary", WE, "incremental")
