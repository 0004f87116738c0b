"""Replica sets: which node takes each backup type under each backup preference, with the
standby healthy and down, proven by what was read (the node marker a base backup copied,
the node whose pg_wal a WAL file came from), not by what the planner says."""

from __future__ import annotations

import pytest
from replicas import (
    REGION,
    make_standby,
    mark,
    node_read,
    protected_set,
    register,
    wait_replayed,
    wait_streaming,
    wal_taker,
)

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
    return protected_set(pg_template, module_area, cli_env)


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
                mark(rs.p1, "p1")  # a new mtime: a differential reads the marker again
                mark(rs.s1, "s1")
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


def test_copy_only_from_a_standby_under_load_restores_consistent(rs, module_area):
    """A copy-only full read from the standby while the primary takes writes restores into
    a consistent primary (pgbench's invariant: the accounts' balances sum to the history's
    deltas), not a standby."""
    import subprocess

    from conftest import PG_BIN, free_port, interrupt, restored

    rs.vault.ok("replicaset", "set", "rs", "--preference", "secondary")
    rs.p1.pgbench("-i", "-s", "2", "-q", dbname="app")
    load = subprocess.Popen([str(PG_BIN / "pgbench"), "-h", str(rs.p1.sockdir), "-p",
                             str(rs.p1.port), "-U", "postgres", "-c", "2", "-T", "120", "app"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = rs.vault.backup("rs", "--type", "copy-only")
    finally:
        interrupt(load)
    assert result["node"] == "s1" and node_read(rs.vault, result["point_id"]) == "s1"
    target, port = module_area / "from-standby", free_port()
    out = rs.vault.ok("restore", "rs", "--point", result["point_id"], "--to-pgdata", target,
                      "--port", port, "--start")
    assert out["started"] is True, out
    got = restored(target, port)
    try:
        assert got.scalar("SELECT pg_is_in_recovery()") is False
        assert got.scalar("SELECT count(*) FROM pgbench_accounts", "app") == 200000
        balances = got.scalar("SELECT sum(abalance) FROM pgbench_accounts", "app")
        deltas = got.scalar("SELECT coalesce(sum(delta), 0) FROM pgbench_history", "app")
        assert balances == deltas
        assert got.scalar("SELECT count(*) FROM pgbench_history", "app") > 0
    finally:
        got.stop()


def test_one_database_restores_into_the_set_never_into_a_standby(rs):
    """A database restored into a replica set lands on its primary and replication brings it
    to the standby; a standby as the target is refused (it is read-only)."""
    full = rs.vault.backup("rs", "--type", "full")
    rs.vault.fail("restore.target_standby", "restore", "rs", "--db", "app", "--point",
                  full["point_id"], "--target-server", "s1", "--as", "app_copy")
    out = rs.vault.ok("restore", "rs", "--db", "app", "--point", full["point_id"],
                      "--target-server", "rs", "--as", "app_copy")
    assert out["new_name"] == "app_copy"
    wait_replayed(rs.p1, rs.s1)
    expected = rs.p1.scalar("SELECT count(*) FROM t", "app_copy")
    assert expected and rs.s1.scalar("SELECT count(*) FROM t", "app_copy") == expected


def test_a_standby_cannot_be_protected_beside_its_primary(rs, module_area):
    """The seed's "two nodes backed up individually": a standby registered as a plain
    server is refused protection (it belongs in the set with its primary), and a data
    directory cannot be registered twice under two names."""
    s2 = make_standby(rs.p1, module_area, "s2")
    try:
        register(rs.vault, "s2", s2)
        out = rs.vault.fail("protect.standby_alone", "protect", "s2", "--all")
        assert "replicaset node add" in out["error"]["message"]
        rs.vault.fail("server.pgdata_registered", "server", "add", "p1-again", "--pgdata",
                      rs.p1.pgdata, "--port", rs.p1.port)
        rs.vault.ok("replicaset", "node", "add", "rs", "s2")  # joins in the vault's region
        nodes = {n["server"]: n for n in rs.vault.ok("replicaset", "show", "rs")["nodes"]}
        assert nodes["s2"]["role"] == "standby" and nodes["s2"]["region"] == REGION
    finally:
        rs.vault.ok("replicaset", "node", "remove", "rs", "s2")
        s2.stop()
