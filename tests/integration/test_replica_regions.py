"""Replica sets across regions: regions are checked against the supported list,
only nodes in the vault's region take backups (a secondary elsewhere never does; a primary
failed over to another region stops full backups until it fails back, and the failures are
jobs and alerts), and one cluster is protected once (one vault, one set, one way)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import PG_BIN, Pg, Vault, as_postgres, free_port, restored
from replicas import (
    REGION,
    make_standby,
    node_read,
    promote,
    protected_set,
    register,
    wait_replayed,
    wal_taker,
)

from dbsafe.engines.postgres.wal import parse_lsn

ELSEWHERE = "North Europe"


@pytest.fixture(scope="module")
def rs(pg_template, module_area, cli_env):
    """p1 (primary, West Europe) and s1 (its standby, North Europe) as set ``rs`` of a
    West Europe vault, protected (archive_mode=always on both)."""
    return protected_set(pg_template, module_area, cli_env, standby_region="NE")


def _write(rs, n: int) -> None:
    rs.p1.execute("INSERT INTO t SELECT g, 'more' FROM generate_series(%s::int, %s::int) g "
                  "ON CONFLICT (id) DO UPDATE SET v = 'again'", "app", (n, n + 100))


def _alerts(vault: Vault, *, everything: bool = False) -> list[dict]:
    return vault.ok("alerts", *(["--all"] if everything else []))


def _failed_backup_alerts(vault: Vault, *backup_types: str) -> None:
    """One active backup_failed alert of the set per backup type, for no_node."""
    alerts = _alerts(vault)
    for backup_type in backup_types:
        found = [a for a in alerts if a["kind"] == "backup_failed"
                 and a["server"] == "rs" and a["item"] == backup_type]
        assert len(found) == 1, (backup_type, alerts)
        assert found[0]["state"] == "active"
        assert "replicaset.no_node" in found[0]["message"], found[0]


def _failed_jobs(vault: Vault, *backup_types: str) -> None:
    """The latest job of the set per backup type failed with no_node."""
    jobs = vault.jobs()
    for backup_type in backup_types:
        latest = next(j for j in jobs if j["server"] == "rs"
                      and j["backup_type"] == backup_type)  # most recent first
        assert latest["state"] == "failed", latest
        assert latest["error_code"] == "replicaset.no_node", latest


# 1. regions ----------------------------------------------------------------------------------

def test_regions_are_checked_and_a_vault_region_is_set_once(rs, cli_env):
    vault = Vault(rs.area / "vault-regions", cli_env)
    vault.fail("region.unknown", "vault", "init", "--region", "Mars Central")
    assert not (rs.area / "vault-regions").exists() or not any(
        (rs.area / "vault-regions").iterdir())
    assert vault.ok("vault", "init")["region"] is None
    # servers: a name or an abbreviation, any case and spacing
    out = vault.fail("region.unknown", "server", "add", "x", "--pgdata", rs.p1.pgdata,
                     "--port", rs.p1.port, "--region", "Atlantis")
    assert "Atlantis" in out["error"]["message"]
    assert register(vault, "p1", rs.p1, "west  EUROPE")["region"] == REGION
    assert register(vault, "s1", rs.s1, "ne")["region"] == ELSEWHERE

    # no region: no replica set
    out = vault.fail("replicaset.vault_region_missing", "replicaset", "add", "rs",
                     "--preference", "primary")
    assert "dbsafe vault region" in out["error"]["message"]
    assert vault.ok("vault", "region", REGION)["region"] == REGION
    out = vault.fail("vault.region_fixed", "vault", "region", ELSEWHERE)
    assert REGION in out["error"]["message"]
    assert vault.ok("vault", "info")["region"] == REGION

    vault.ok("replicaset", "add", "rs", "--preference", "primary")
    out = vault.fail("region.unknown", "replicaset", "node", "add", "rs", "p1", "--region",
                     "Mars Central")
    message = out["error"]["message"]
    assert "Mars Central" in message
    for valid in (REGION, ELSEWHERE, "East US 2", "Japan West"):
        assert valid in message, message
    assert vault.ok("replicaset", "show", "rs")["nodes"] == []  # the refusal added nothing

    vault.ok("replicaset", "node", "add", "rs", "p1", "--region", "west europe")
    shown = vault.ok("replicaset", "node", "add", "rs", "s1", "--region", "NE")
    nodes = {n["server"]: n for n in shown["nodes"]}
    assert {s: (n["region"], n["in_vault_region"]) for s, n in nodes.items()} == {
        "p1": (REGION, True), "s1": (ELSEWHERE, False)}
    assert shown["vault_region"] == REGION
    # abbreviations from the regions list (a node's region may change while it is added)
    shown = vault.ok("replicaset", "node", "add", "rs", "s1", "--region", "wus 2")
    nodes = {n["server"]: n for n in shown["nodes"]}
    assert nodes["s1"]["region"] == "West US 2"


# 2. a secondary in another region ---------------------------------------------------------------

@pytest.mark.parametrize("preference", ["primary", "secondary", "none", "secondary-only"])
def test_a_secondary_in_another_region_never_takes_backups(rs, preference):
    vault = rs.vault
    shown = vault.ok("replicaset", "set", "rs", "--preference", preference)
    nodes = {n["server"]: n for n in shown["nodes"]}
    assert {s: (n["role"], n["region"], n["healthy"], n["in_vault_region"])
            for s, n in nodes.items()} == {"p1": ("primary", REGION, True, True),
                                           "s1": ("standby", ELSEWHERE, True, False)}
    plan = shown["plan"]
    assert plan["full"]["server"] == "p1"

    if preference in ("primary", "secondary-only"):  # (fulls ignore the preference)
        _write(rs, 10)
        full = vault.backup("rs", "--type", "full")
        assert full["node"] == "p1" and node_read(vault, full["point_id"]) == "p1"
    if preference != "secondary-only":
        for backup_type in ("log", "copy-only"):
            assert plan[backup_type]["server"] == "p1", plan
            _write(rs, 20)
            result = vault.backup("rs", "--type", backup_type)
            assert result["node"] == "p1", result
            taker = (wal_taker(vault, rs.sysid, result["last_segment"]) if backup_type == "log"
                     else node_read(vault, result["point_id"]))
            assert taker == "p1", (backup_type, result)
        return

    for backup_type in ("log", "copy-only"):
        assert plan[backup_type]["server"] is None, plan
        assert REGION in plan[backup_type]["reason"]
        out = vault.fail("replicaset.no_node", "backup", "rs", "--type", backup_type)
        message = out["error"]["message"]
        assert "secondary-only" in message and REGION in message, message
    _failed_jobs(vault, "log", "copy-only")
    _failed_backup_alerts(vault, "log", "copy-only")
    # back to a preference the primary serves: the log alert resolves with the next success
    vault.ok("replicaset", "set", "rs", "--preference", "primary")
    _write(rs, 30)
    result = vault.backup("rs", "--type", "log")
    assert result["node"] == "p1"
    assert wal_taker(vault, rs.sysid, result["last_segment"]) == "p1"
    assert not [a for a in _alerts(vault) if a["kind"] == "backup_failed"
                and a["item"] == "log"]
    resolved = [a for a in _alerts(vault, everything=True) if a["kind"] == "backup_failed"
                and a["item"] == "log"]
    assert resolved and all(a["state"] == "resolved" for a in resolved), resolved
    assert vault.chain("rs")["gaps"] == []


# 4. double protection ---------------------------------------------------------------------------

def test_a_set_protected_by_another_vault_is_refused(rs):
    env = {**rs.env, "DBSAFE_RUN_DIR": str(rs.area / "run2")}
    other = Vault(rs.area / "vault2", env)
    other.ok("vault", "init", "--region", REGION)
    register(other, "p1", rs.p1)
    register(other, "s1", rs.s1)
    other.ok("replicaset", "add", "rs", "--preference", "primary")
    other.ok("replicaset", "node", "add", "rs", "p1", "--region", REGION)
    other.ok("replicaset", "node", "add", "rs", "s1", "--region", REGION)
    command = rs.p1.scalar("SELECT current_setting('archive_command')")
    out = other.fail("protect.other_vault", "protect", "rs", "--all")
    assert "one vault" in out["error"]["message"]
    assert other.ok("replicaset", "show", "rs")["protected"] == []
    for pg in (rs.p1, rs.s1):  # the first vault's archiving is untouched
        assert pg.scalar("SELECT current_setting('archive_command')") == command
        assert pg.scalar("SELECT current_setting('archive_mode')") == "always"
    # and the first vault still backs the set up
    _write(rs, 40)
    assert rs.vault.backup("rs", "--type", "log")["node"] == "p1"


def _initdb(area: Path, name: str) -> Pg:
    """A cluster of its own (its own initdb: another system identifier)."""
    pgdata = area / name
    proc = as_postgres([str(PG_BIN / "initdb"), "-A", "trust", "-U", "postgres", "-E",
                        "UTF8", "--locale", "C", "-D", str(pgdata)])
    assert proc.returncode == 0, proc.stderr
    pg = Pg(pgdata=pgdata, port=free_port(), sockdir=area, log=area / f"{name}.log")
    pg.start()
    return pg


def test_one_cluster_one_way_of_protection(rs):
    vault = rs.vault
    # a node of a set is not protected (nor backed up) on its own
    for node in ("p1", "s1"):
        out = vault.fail("replicaset.node_alone", "protect", node, "--all")
        assert "rs" in out["error"]["message"]
    vault.fail("replicaset.node_alone", "backup", "s1", "--type", "full")

    # a node joins one set only
    vault.ok("replicaset", "add", "rs2", "--preference", "primary")
    out = vault.fail("replicaset.node_elsewhere", "replicaset", "node", "add", "rs2", "s1",
                     "--region", REGION)
    assert "rs" in out["error"]["message"]

    # a server with databases protected on its own does not join; unprotected, it still
    # does not, being another cluster (its own initdb)
    alien = _initdb(rs.area, "alien")
    register(vault, "alien", alien)
    vault.ok("protect", "alien", "--all", "--recovery-model", "simple")
    out = vault.fail("replicaset.node_has_items", "replicaset", "node", "add", "rs", "alien",
                     "--region", REGION)
    message = out["error"]["message"]
    assert "alien" in message and "postgres" in message, message
    advice = re.search(r"`dbsafe (unprotect [^`]*)`", message)
    assert advice, message
    vault.ok(*advice.group(1).split())  # the command the refusal suggests works
    out = vault.fail("replicaset.other_cluster", "replicaset", "node", "add", "rs", "alien",
                     "--region", REGION)
    assert rs.sysid in out["error"]["message"]
    shown = vault.ok("replicaset", "show", "rs")
    assert sorted(n["server"] for n in shown["nodes"]) == ["p1", "s1"]
    assert vault.ok("replicaset", "show", "rs2")["nodes"] == []
    alien.stop()


# 3. a failover to another region, and back ------------------------------------------------------

def test_failover_to_another_region_stops_fulls_until_failback(rs):
    vault = rs.vault
    p1, s1 = rs.p1, rs.s1
    vault.ok("replicaset", "set", "rs", "--preference", "primary")
    vault.backup("rs", "--type", "full")
    wait_replayed(p1, s1)

    p1.stop("immediate")  # the primary crashes ...
    promote(s1)           # ... and the standby in North Europe takes over
    s1.execute("INSERT INTO t VALUES (-1, 'while in North Europe')", "app")
    away = s1.scalar("SELECT clock_timestamp()")
    out = vault.fail("replicaset.no_node", "backup", "rs", "--type", "full")
    message = out["error"]["message"]
    assert "s1" in message and ELSEWHERE in message and REGION in message, message
    shown = vault.ok("replicaset", "show", "rs")
    nodes = {n["server"]: n for n in shown["nodes"]}
    assert nodes["s1"]["role"] == "primary" and nodes["p1"]["healthy"] is False
    assert nodes["s1"]["timeline"] == 2
    assert shown["plan"]["full"]["server"] is None and shown["plan"]["diff"]["server"] is None
    _failed_jobs(vault, "full")
    _failed_backup_alerts(vault, "full")

    # fail back: p1 rebuilt as a standby of s1, s1 stopped cleanly, p1 promoted
    make_standby(s1, rs.area, "p1", pgdata=p1.pgdata, port=p1.port)
    s1.stop("fast")
    promote(p1)
    assert p1.scalar("SELECT v FROM t WHERE id = -1", "app") == "while in North Europe"
    timeline = p1.scalar("SELECT timeline_id FROM pg_control_checkpoint()")
    assert timeline == 3

    full = vault.backup("rs", "--type", "full")  # no reconfiguration
    assert full["node"] == "p1" and node_read(vault, full["point_id"]) == "p1"
    assert not [a for a in _alerts(vault) if a["kind"] == "backup_failed"
                and a["item"] == "full"]
    resolved = [a for a in _alerts(vault, everything=True)
                if a["kind"] == "backup_failed" and a["item"] == "full"]
    assert resolved and resolved[0]["state"] == "resolved", resolved

    # writes after the fail-back, a log backup, then a point-in-time restore among them
    p1.execute("INSERT INTO t VALUES (-2, 'after fail-back')", "app")
    time.sleep(0.05)
    instant = p1.scalar("SELECT clock_timestamp()")
    time.sleep(0.05)
    p1.execute("INSERT INTO t VALUES (-3, 'too late')", "app")
    log = vault.backup("rs", "--type", "log")
    assert log["node"] == "p1" and wal_taker(vault, rs.sysid, log["last_segment"]) == "p1"
    assert log["last_segment"].startswith("00000003")

    # the chain: timeline 1 up to the crash, nothing of timeline 2 (North Europe), then
    # timeline 3 from the full after the fail-back
    chain = vault.chain("rs")
    points = {p["point_id"]: p for p in chain["points"]}
    assert points[full["point_id"]]["timeline"] == 3
    assert {p["timeline"] for p in chain["points"]} == {1, 3}, chain["points"]
    ranges = chain["log_ranges"]
    assert [r["timeline"] for r in ranges] == [1, 3], (ranges, chain["gaps"])
    # the WAL between them is a gap at the switch. Where it ends depends on a race: p1, a
    # standby of s1 before its promotion, may archive the timeline-2 WAL it received from
    # s1 once it is primary itself (then the vault holds timeline 2 from p1's rebuild on
    # and the gap ends there), or not before this log backup (then it ends at the full)
    (gap,) = chain["gaps"]
    assert gap["timeline_switch"] and gap["first_missing"].startswith("00000001"), gap
    if gap["timeline"] == 3:
        assert gap["end_lsn"] == ranges[-1]["start_lsn"], gap
    else:
        assert gap["timeline"] == 2, gap
        assert parse_lsn(gap["end_lsn"]) <= parse_lsn(ranges[-1]["start_lsn"]), gap
    assert ranges[-1]["base"] == full["point_id"]
    assert ranges[-1]["last_segment"] == log["last_segment"]
    assert ranges[0]["end_time"] < away.isoformat() < ranges[-1]["start_time"]
    # what was written in North Europe only is not restorable by time
    vault.fail("restore.outside_chain", "restore", "rs", "--time", away.isoformat(),
               "--to-pgdata", rs.area / "away")

    target = rs.area / "pitr"
    out = vault.ok("restore", "rs", "--time", instant.isoformat(), "--to-pgdata", target,
                   "--port", free_port(), "--start")
    got = restored(target, out["port"])
    try:
        rows = dict(got.execute("SELECT id, v FROM t WHERE id < 0 ORDER BY id", "app"))
        assert rows == {-2: "after fail-back", -1: "while in North Europe"}
        assert got.scalar("SELECT count(*) FROM t WHERE id > 0", "app") >= 1000
    finally:
        got.stop()
