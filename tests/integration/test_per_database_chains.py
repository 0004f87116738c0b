"""A backup of some databases (``backup --db X``) holds only those: it is never the last
full, the differential base, the point-in-time base or the retention anchor of a database
it does not hold, and no restore presents a database whose data is not in the point.

One cluster with databases ``x`` and ``y``, every database protected under the default
policy (FULL model), and this history, which the tests below walk in order:
``p0`` a full of x alone (the first backup) → ``full`` the instance full a scheduled
differential becomes → rows in y → ``px`` a full of x alone → rows in y, instant ``t`` →
rows in y → ``diff`` an instance differential → a log backup.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import psycopg
import pytest
from conftest import Pg, free_port, make_vault, new_cluster, restored

from dbsafe.services.handle.vault_handle import Vault

ROWS = 20000


def _y_rows(pg: Pg) -> int:
    return pg.scalar("SELECT count(*) FROM t", "y")


def _add_y(pg: Pg, n: int) -> None:
    pg.execute(f"INSERT INTO t SELECT g, 'later' FROM generate_series({ROWS + _y_rows(pg) + 1},"
               f" {ROWS + _y_rows(pg) + n}) g", "y")


@pytest.fixture(scope="module")
def h(pg_template, module_area, cli_env) -> SimpleNamespace:
    """The cluster, its vault and what the tests record as they go."""
    pg = new_cluster(pg_template, module_area, "multi")
    for db in ("x", "y"):
        pg.execute(f"CREATE DATABASE {db}")
        pg.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", db)
        pg.execute(f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g",
                   db)
        pg.execute("VACUUM", db)
    vault = make_vault({**cli_env, "DBSAFE_RUN_DIR": str(module_area / "run")},
                       module_area / "vault")
    vault.add_server("multi", pg)
    vault.ok("protect", "multi", "--all", "--recovery-model", "full", "--restart")
    p0 = vault.backup("multi", "--db", "x", "--type", "full")
    return SimpleNamespace(pg=pg, vault=vault, area=module_area, p0=p0)


def _open(h) -> Vault:
    return Vault.open(h.vault.path)


def _full(h) -> dict:
    """The instance full: the first test makes it (a test run alone makes it here)."""
    if not hasattr(h, "full"):
        h.full = h.vault.backup("multi", "--type", "full")
    return h.full


def _history(h) -> None:
    """Rows in y, the full of x, rows in y, the instant ``t``, rows in y, a log backup (the
    second test makes them; a test run alone makes them here)."""
    if hasattr(h, "px"):
        return
    _full(h)
    _add_y(h.pg, 100)
    h.px = h.vault.backup("multi", "--db", "x", "--type", "full")
    _add_y(h.pg, 100)
    time.sleep(0.2)
    h.t = h.pg.scalar("SELECT clock_timestamp()").isoformat()
    h.y_at_t = _y_rows(h.pg)
    time.sleep(0.2)
    _add_y(h.pg, 100)
    h.vault.backup("multi", "--type", "log")


def test_no_full_holds_every_database_so_a_differential_needs_one(h, monkeypatch):
    """Only a full of x exists: an instance differential has no base (on demand: refused,
    naming y; scheduled: it becomes a full and says why)."""
    from dbsafe.services.backup import healing
    from dbsafe.services.backup.take import run_backup
    from dbsafe.services.inventory.servers import get_server

    on_demand = h.vault.run("backup", "multi", "--type", "diff", "--json")
    monkeypatch.setenv("DBSAFE_RUN_DIR", str(h.area / "run"))  # the agent the CLI started
    v = _open(h)
    kind, why = healing.effective_type(v, get_server(v, "multi"), "diff", datetime.now(UTC))
    # the scheduler asked for a differential; the databases found when it starts decide
    full = run_backup(v, "multi", "diff", trigger="scheduled")
    if full["type"] == "full":
        h.full = full
    assert on_demand.returncode != 0, on_demand.describe()
    assert on_demand.json()["error"]["code"] == "backup.no_full"
    assert "'y'" in on_demand.json()["error"]["message"]
    assert kind == "full" and "'y'" in why
    assert full["type"] == "full"
    assert [w["code"] for w in full["warnings"]] == ["backup.diff_became_full"]
    assert "'y'" in full["warnings"][0]["message"]


def test_a_database_full_is_not_the_last_full_of_the_others(h):
    """The items' last backups count only the points that hold them; a full of x does not
    clear the instance's "next backup must be a full"."""
    from dbsafe.services.operations import overview

    v = _open(h)
    server = v.catalog.get_server("multi")
    _full(h)
    v.catalog.update_instance(server["instance_id"], needs_full="a test wants a full")
    _history(h)
    listed = {s["name"]: s for s in h.vault.ok("server", "list")}
    v.catalog.update_instance(server["instance_id"], needs_full=None)
    rows = {r["database"]: r for r in overview.items(_open(h)) if r["server"] == "multi"}
    assert listed["multi"]["next_backup_full_because"] == "a test wants a full"
    assert rows["x"]["last_full"] == h.px["end_time"]
    assert rows["y"]["last_full"] == h.full["end_time"]
    assert rows["y"]["last_backup"] == h.full["end_time"]


def test_the_full_a_running_differential_uses_is_not_deleted(h):
    """While an instance differential runs, its base is the instance full, not the newer
    full of x: deleting it is refused."""
    from dbsafe.services.activity.jobs import Job

    _history(h)
    v = _open(h)
    with Job(v.catalog, "backup", "multi", backup_type="diff",
             items=["postgres", "template1", "x", "y"]):
        out = h.vault.run("delete-point", _full(h)["point_id"], "--json")
    assert out.returncode != 0, out.describe()
    assert out.json()["error"]["code"] == "prune.point_in_use"


def test_a_drill_restores_every_protected_database_or_fails(h):
    """The drill of the newest state restores y from the instance full; a drill of the
    full of x fails, naming y, instead of passing with y "not checked"."""
    _history(h)
    scratch = h.area / "drills"
    drill = h.vault.ok("drill", "run", "multi", "--scratch-root", scratch)
    assert drill["state"] in ("completed", "completed_with_warnings")
    databases = next(c for c in drill["checks"] if c["name"] == "databases")
    assert "y" in databases["answered"] and "y" not in databases["not_checked"]
    assert drill["point_id"] == h.full["point_id"]
    out = h.vault.fail("drill.check_failed", "drill", "run", "multi", "--point",
                       h.px["point_id"], "--scratch-root", scratch)
    assert "'postgres', 'y': protected, but not in what was restored" in \
        out["error"]["message"]
    assert out["report"]["failed_check"] == "databases"


def test_an_instance_differential_is_based_on_the_instance_full(h):
    """Not on the newer full of x: y's table is stored as its changed pages."""
    _history(h)
    diff = h.vault.backup("multi", "--type", "diff")
    assert diff["base"] == h.full["point_id"]
    manifest = h.vault.repository().load_manifest_whole(diff["point_id"])
    y_table = str(h.pg.relation_path("t", "y").relative_to(h.pg.pgdata))
    entry = next(e for e in manifest["files"] if e["path"] == y_table)
    pages = sum(n for _, n in entry["delta"]["pages"])
    assert 0 < pages < entry["size"] // 8192 // 4  # a few changed pages, not the file
    h.vault.backup("multi", "--type", "log")


def test_restore_another_database_at_an_instant_after_a_database_full(h):
    """y at ``t`` comes from the instance full and the log chain; so does the instance."""
    _history(h)
    out = h.vault.ok("restore", "multi", "--db", "y", "--time", h.t, "--to-pgdata",
                     h.area / "only-y", "--port", free_port(), "--start")
    assert out["recovery"]["base_point"] == h.full["point_id"]
    assert _y_rows(restored(h.area / "only-y", out["port"])) == h.y_at_t
    out = h.vault.ok("restore", "multi", "--time", h.t, "--to-pgdata", h.area / "at-t",
                     "--port", free_port(), "--start")
    assert out["recovery"]["base_point"] == h.full["point_id"]
    assert out["databases_left_out"] == []
    assert _y_rows(restored(h.area / "at-t", out["port"])) == h.y_at_t
    # a named point that does not hold y is refused, saying which databases it holds
    out = h.vault.fail("restore.database_not_in_point", "restore", "multi", "--db", "y",
                       "--point", h.px["point_id"], "--to-pgdata", h.area / "nope")
    assert "x" in out["error"]["message"]


def test_an_instance_restore_leaves_out_what_the_point_does_not_hold(h):
    """Restoring the full of x: y is dropped once the server runs (dbsafe started it), or
    refuses connections (nobody started it yet); the result says which."""
    _history(h)
    out = h.vault.ok("restore", "multi", "--point", h.px["point_id"], "--to-pgdata",
                     h.area / "px", "--port", free_port(), "--start")
    # the full of x holds x and the templates: postgres is protected too, and left out
    assert out["databases_left_out"] == ["postgres", "y"]
    assert out["databases_dropped"] == ["postgres", "y"]
    got = restored(h.area / "px", out["port"])
    assert got.execute("SELECT datname FROM pg_database ORDER BY 1", "x") == [
        ("template0",), ("template1",), ("x",)]
    assert got.scalar("SELECT count(*) FROM t", "x") == ROWS
    out = h.vault.ok("restore", "multi", "--point", h.px["point_id"], "--to-pgdata",
                     h.area / "px-cold")
    assert out["databases_left_out"] == ["postgres", "y"] and out["databases_dropped"] == []
    cold = Pg(pgdata=h.area / "px-cold", port=free_port(), sockdir=h.area / "px-cold")
    cold.start()
    with pytest.raises(psycopg.OperationalError, match="pg_filenode.map"):
        _y_rows(cold)
    assert cold.scalar("SELECT count(*) FROM t", "x") == ROWS
    cold.stop()


def test_retention_keeps_the_instance_full_that_y_needs(h):
    """The fulls of x are newer, but y's newest full is the instance full."""
    from dbsafe.services.lifecycle.expiry import apply_retention

    _history(h)
    out = apply_retention(_open(h), "multi", datetime.now(UTC))
    assert h.full["point_id"] not in out["expired"]
    assert "newest full" in out["kept"][h.full["point_id"]]
    assert "newest full" in out["kept"][h.px["point_id"]]
