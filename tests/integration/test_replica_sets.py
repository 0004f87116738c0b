"""Replica sets: which node takes each backup type under each backup preference, with the
standby healthy and down, proven by what was read (the node marker a base backup copied,
the node whose pg_wal a WAL file came from), not by what the planner says."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import Vault
from replicas import (
    make_primary,
    make_standby,
    node_read,
    register,
    wait_replayed,
    wait_streaming,
    wal_taker,
)

REGION = "West Europe"

# the seed's four tables, plus what happens when the only secondary is down
EXPECTED = {  # preference: {type: (standby up, standby down)}; None: refused
    "primary": {"full": ("p1", "p1"), "diff": ("p1", "p1"), "log": ("p1", "p1"),
                "copy-only": ("p1", "p1")},
    "secondary-only": {"full": ("p1", "p1"), "diff": ("p1", "p1"), "log": ("s1", None),
                       "copy-only": ("s1", None)},
    "secondary": {"full": ("p1", "p1"), "diff": ("p1", "p1"), "log": ("s1", "p1"),
                  "copy-only": ("s1", "p1")},
    "none": {"full": ("p1", "p1"), "diff": ("p1", "p1"), "log": ("s1", "p1"),
             "copy-only": ("s1", "p1")},
}


@pytest.fixture(scope="module")
def rs(pg_template, module_area, cli_env):
    env = {**cli_env, "DBSAFE_RUN_DIR": str(module_area / "run")}
    vault = Vault(module_area / "vault", env)
    vault.ok("vault", "init", "--region", REGION)
    p1 = make_primary(pg_template, module_area, "p1")
    p1.execute("CREATE DATABASE app")
    p1.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", "app")
    p1.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g", "app")
    s1 = make_standby(p1, module_area, "s1")
    register(vault, "p1", p1)
    register(vault, "s1", s1)
    vault.ok("replicaset", "add", "rs", "--preference", "primary")
    vault.ok("replicaset", "node", "add", "rs", "p1", "--region", REGION)
    shown = vault.ok("replicaset", "node", "add", "rs", "s1", "--region", REGION)
    protected = vault.ok("protect", "rs", "--all", "--restart")
    assert protected["archiving_active"], protected
    wait_streaming(s1)
    return SimpleNamespace(vault=vault, p1=p1, s1=s1, sysid=shown["system_identifier"])


def _write(rs, n: int) -> None:
    rs.p1.execute("INSERT INTO t SELECT g, 'more' FROM generate_series(%s::int, %s::int) g "
                  "ON CONFLICT (id) DO UPDATE SET v = 'again'", "app", (n, n + 100))


def _took(rs, backup_type: str, result: dict) -> str:
    """Which node's files the backup read."""
    if backup_type == "log":
        return wal_taker(rs.vault, rs.sysid, result["last_segment"])
    return node_read(rs.vault, result["point_id"])


def test_show_reports_nodes_roles_and_plan(rs):
    shown = rs.vault.ok("replicaset", "show", "rs")
    nodes = {n["server"]: n for n in shown["nodes"]}
    assert {k: (v["role"], v["region"], v["healthy"]) for k, v in nodes.items()} == {
        "p1": ("primary", REGION, True), "s1": ("standby", REGION, True)}
    assert set(shown["plan"]) == {"full", "diff", "log", "copy-only"}
    assert all(p["reason"] for p in shown["plan"].values())


@pytest.mark.parametrize("preference", list(EXPECTED))
def test_node_choice_matrix(rs, preference):
    vault = rs.vault
    vault.ok("replicaset", "set", "rs", "--preference", preference)
    for down in (False, True):
        if down:
            rs.s1.stop()
        try:
            plan = vault.ok("replicaset", "show", "rs")["plan"]
            for backup_type in ("full", "diff", "log", "copy-only"):
                expected = EXPECTED[preference][backup_type][int(down)]
                _write(rs, 10 * len(backup_type))
                assert plan[backup_type]["server"] == expected, (backup_type, down, plan)
                if expected is None:
                    out = vault.fail("replicaset.no_node", "backup", "rs", "--type",
                                     backup_type)
                    assert "secondary" in out["error"]["message"]
                    continue
                result = vault.backup("rs", "--type", backup_type)
                assert result["node"] == expected, (backup_type, down, result)
                assert _took(rs, backup_type, result) == expected, (backup_type, down)
        finally:
            if down:
                rs.s1.start()
                wait_streaming(rs.s1)
                wait_replayed(rs.p1, rs.s1)
    jobs = [j for j in vault.jobs() if j["server"] == "rs" and j["state"] == "completed"]
    assert jobs and all(j["node"] in ("p1", "s1") for j in jobs)


def test_a_node_alone_cannot_be_protected_or_backed_up(rs):
    out = rs.vault.fail("replicaset.node_alone", "protect", "s1", "--all")
    assert "rs" in out["error"]["message"]
    rs.vault.fail("replicaset.node_alone", "backup", "p1", "--type", "full")
