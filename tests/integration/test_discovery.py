"""Discovery on real clusters: the instances of this host (``dbsafe discover --instances``)
and the reconciliation of a server's databases with its protected items (created, dropped,
renamed and recreated databases; auto-protection; what is not protectable)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import new_cluster

from dbsafe.services.handle.vault_handle import Vault as ServiceVault
from dbsafe.services.inventory import limits


def _catalog_call(vault, fn):
    """Run ``fn(catalog)`` on the vault's catalog in this process (for what the CLI of
    this branch cannot do yet: turning auto-protection on)."""
    v = ServiceVault.open(vault.path)
    try:
        return fn(v.catalog)
    finally:
        v.catalog.close()


def set_auto_protect(vault, server: str, policy: str | None) -> None:
    _catalog_call(vault, lambda c: c.update_instance(
        c.get_server(server)["instance_id"], auto_protect_policy=policy))


def items(vault, server: str) -> dict[str, dict]:
    return {i["name"]: i for i in _catalog_call(vault, lambda c: c.list_items(
        c.get_server(server)["instance_id"]))}


def _instances(vault) -> dict[str, dict]:
    return {r["pgdata"]: r for r in vault.ok("discover", "--instances")}


def test_instances_of_this_host(pg_template, area, vault):
    loose = new_cluster(pg_template, area, "loose")
    kept = new_cluster(pg_template, area, "kept")
    vault.add_server("kept", kept)
    found = _instances(vault)

    row = found[str(loose.pgdata)]
    pid = int((loose.pgdata / "postmaster.pid").read_text().split()[0])
    assert row == {"pgdata": str(loose.pgdata), "port": loose.port, "version": 15,
                   "bin_dir": "/usr/lib/postgresql/15/bin", "running": True, "pid": pid,
                   "cluster": None, "source": "postmaster", "sources": ["postmaster"],
                   "server": None}
    row = found[str(kept.pgdata)]
    assert row["source"] == "postmaster" and row["sources"] == ["postmaster", "registered"]
    assert row["server"] == "kept" and row["port"] == kept.port and row["running"] is True

    # Debian's clusters, as pg_lsclusters itself lists them
    proc = subprocess.run(["pg_lsclusters", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for c in json.loads(proc.stdout):
        row = found[str(Path(c["pgdata"]).resolve())]
        assert row["sources"][0] == "pg_lsclusters"
        assert row["cluster"] == f"{c['version']}/{c['cluster']}"
        assert row["port"] == int(c["port"]) and row["version"] == int(c["version"])
        assert row["running"] is bool(c["running"])

    kept.stop()
    row = _instances(vault)[str(kept.pgdata)]
    assert row["source"] == "registered" and row["sources"] == ["registered"]
    assert row["running"] is False and row["pid"] is None and row["server"] == "kept"
    assert row["version"] == 15 and row["bin_dir"] == "/usr/lib/postgresql/15/bin"
    assert str(loose.pgdata) in _instances(vault)

    vault.fail("discover.no_target", "discover")


def _oid(pg, name: str) -> int:
    return pg.scalar("SELECT oid::bigint FROM pg_database WHERE datname = %s", params=(name,))


def test_dropped_renamed_and_new_databases_without_auto_protection(pg_template, area, vault):
    pg = new_cluster(pg_template, area, "rc")
    for name in ("keep", "todrop", "torename"):
        pg.execute(f"CREATE DATABASE {name}")
        pg.execute("CREATE TABLE t (id int)", name)
    vault.add_server("rc", pg)
    vault.ok("protect", "rc", "--db", "keep", "--db", "todrop", "--db", "torename",
             "--recovery-model", "simple")
    first = vault.backup("rc")["point_id"]
    old_oid = _oid(pg, "torename")

    unchanged = vault.ok("discover", "rc")
    assert (unchanged["new"], unchanged["gone"], unchanged["renamed"]) == ([], [], [])

    pg.execute("DROP DATABASE todrop")
    pg.execute("ALTER DATABASE torename RENAME TO renamed")
    pg.execute("CREATE DATABASE fresh")
    out = vault.ok("discover", "rc")
    assert out["gone"] == ["todrop", "torename"]
    assert out["renamed"] == [{"from": "torename", "to": "renamed"}]
    assert out["new"] == ["fresh", "renamed"]
    assert out["auto_protected"] == [] and out["warnings"] == []
    dbs = {d["name"]: d for d in out["databases"]}
    assert set(dbs) == {"keep", "renamed", "fresh", "postgres", "template1"}
    assert dbs["keep"]["protected"] is True and dbs["keep"]["state"] == "protected"
    for name in ("renamed", "fresh"):
        assert dbs[name]["protected"] is False and dbs[name]["state"] is None
        assert dbs[name]["protectable"] is True
    assert dbs["renamed"]["oid"] == old_oid
    # the fields `dbsafe discover` always had are still there
    assert out["recovery_model"] == "SIMPLE"
    assert {"size_bytes", "file_count", "read_only", "kind", "recovery_model"} <= set(
        dbs["keep"])

    got = items(vault, "rc")
    assert got["todrop"]["state"] == "source-gone"
    assert got["todrop"]["state_reason"].startswith("dropped on the server (noticed ")
    assert got["todrop"]["state_reason"].endswith(f"{out['discovered']})")
    assert got["torename"]["state"] == "source-gone"
    assert got["torename"]["state_reason"].startswith("renamed to renamed")
    assert got["torename"]["oid"] == old_oid
    assert got["keep"]["state"] == "protected" and "renamed" not in got

    # backups leave the gone items out (no error, no retry); the old points stay
    point = vault.backup("rc")["point_id"]
    held = {p["point_id"]: p["databases"] for p in vault.points("rc")}
    assert first in held
    assert held[point] == ["keep", "template1"]  # templates are always taken
    again = vault.ok("discover", "rc")
    assert (again["gone"], again["new"], again["renamed"]) == ([], [], [])
    assert items(vault, "rc")["todrop"]["state_reason"] == got["todrop"]["state_reason"]

    # recreated under a gone item's name: a new database (new oid), not protected ...
    pg.execute("CREATE DATABASE todrop")
    out = vault.ok("discover", "rc")
    assert out["new"] == ["todrop"]
    dbs = {d["name"]: d for d in out["databases"]}
    assert dbs["todrop"]["state"] is None and dbs["todrop"]["protected"] is False
    assert items(vault, "rc")["todrop"]["state"] == "source-gone"
    # ... until protected again: the row becomes the new database's
    vault.ok("protect", "rc", "--db", "todrop", "--recovery-model", "simple")
    item = items(vault, "rc")["todrop"]
    assert item["state"] == "protected" and item["oid"] == _oid(pg, "todrop")


def test_auto_protection_at_discovery(pg_template, area, vault):
    pg = new_cluster(pg_template, area, "auto")
    for name in ("app", "big", "archive", "halfdropped"):
        pg.execute(f"CREATE DATABASE {name}")
    pg.execute("ALTER DATABASE archive ALLOW_CONNECTIONS false")
    # what PostgreSQL (15.4+) leaves when a DROP DATABASE is interrupted half-way
    pg.execute("UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'halfdropped'")
    vault.add_server("auto", pg)
    vault.ok("protect", "auto", "--db", "app", "--recovery-model", "simple")
    vault.backup("auto")
    # "big" grows past 2 TiB (a sparse file PostgreSQL counts in pg_database_size)
    sparse = pg.pgdata / "base" / str(_oid(pg, "big")) / "dbsafe_test_sparse"
    with open(sparse, "wb") as f:
        f.truncate(2 * 1024**4 + 1024**3)
    try:
        set_auto_protect(vault, "auto", "nightly")
        out = vault.ok("discover", "auto")
        assert out["auto_protected"] == ["big", "postgres"]
        dbs = {d["name"]: d for d in out["databases"]}
        assert dbs["big"]["size_bytes"] > 2 * 1024**4
        assert len(out["warnings"]) == 1 and "'big' is 2.00 TiB" in out["warnings"][0]
        assert dbs["big"]["warning"] == out["warnings"][0]
        assert (dbs["big"]["state"], dbs["big"]["policy"]) == ("protected", "nightly")
        assert dbs["app"]["policy"] is None  # protected before, by hand: left as it was
        # protecting it by hand says the same (sizes as discovered)
        v = ServiceVault.open(vault.path)
        try:
            assert limits.check_protect(v, v.catalog.get_server("auto"), ["big", "app"],
                                        auto=False) == out["warnings"]
        finally:
            v.catalog.close()
        for name, why in (("template1", "template database"),
                          ("archive", "does not allow connections"),
                          ("halfdropped", "invalid")):
            assert dbs[name]["protectable"] is False and dbs[name]["reason"].startswith(why)
            assert dbs[name]["protected"] is False and dbs[name]["state"] is None

        # a database created later is protected at the next discovery; a database
        # recreated under a gone item's name replaces that row
        pg.execute("ALTER DATABASE app RENAME TO app2")
        pg.execute("CREATE DATABASE later")
        out = vault.ok("discover", "auto")
        assert out["renamed"] == [{"from": "app", "to": "app2"}]
        assert out["auto_protected"] == ["app2", "later"] and out["warnings"] == []
        pg.execute("CREATE DATABASE app")
        out = vault.ok("discover", "auto")
        assert out["auto_protected"] == ["app"] and out["gone"] == []
        got = items(vault, "auto")
        assert (got["app"]["state"], got["app"]["oid"]) == ("protected", _oid(pg, "app"))
        assert got["app"]["state_reason"] is None and got["app"]["policy"] == "nightly"
        assert got["app2"]["oid"] == _oid(pg, "app2") != got["app"]["oid"]

        # a protection stopped by the user is not undone by auto-protection
        _catalog_call(vault, lambda c: c.set_item(c.get_server("auto")["instance_id"],
                                                  "later", state="stopped"))
        out = vault.ok("discover", "auto")
        assert out["auto_protected"] == [] and out["warnings"] == []
        assert items(vault, "auto")["later"]["state"] == "stopped"
        instance = _catalog_call(vault, lambda c: c.get_instance(
            c.get_server("auto")["instance_id"]))
        assert instance["discovered"] == out["discovered"]
    finally:
        os.unlink(sparse)
