"""Soft delete, undelete, purge and immutable vaults on real clusters: a soft-deleted point
is not restorable but keeps its blocks through garbage collection, comes back restorable
with its rows, is purged only when due (and after the differentials based on it); an
immutable vault refuses deletions before retention ends and cannot be unlocked.

Time passing is the ``now`` parameter of the public functions (``delete_points``,
``purge_due``): a deletion dated in the past is due for purging today."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import free_port, new_cluster, restored

from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.immutability import retention_holds
from dbsafe.services.lifecycle.deletion import purge_due
from dbsafe.services.lifecycle.expiry import apply_retention
from dbsafe.services.lifecycle.prune import delete_points, describe_point


def _ids(points: list[dict]) -> list[str]:
    return [p["point_id"] for p in points]


def _deleted(vault, name: str) -> list[dict]:
    return vault.ok("points", name, "--deleted")["points"]


def test_soft_deleted_points_keep_their_blocks_then_undelete_restores_and_purge_frees(
        pg_template, area, vault):
    pg = new_cluster(pg_template, area, "g")
    pg.execute("CREATE DATABASE app")
    pg.execute("CREATE TABLE old_data AS SELECT g, md5(g::text) || md5((-g)::text) AS v "
               "FROM generate_series(1, 100000) g", "app")
    vault.add_server("g", pg)
    full1 = vault.backup("g")["point_id"]
    pg.execute("INSERT INTO old_data SELECT g, 'in the diff' FROM generate_series(1, 500) g",
               "app")
    diff = vault.backup("g", "--type", "diff")
    assert diff["base"] == full1
    diff = diff["point_id"]
    expected = pg.table_checksums()
    pg.execute("DROP TABLE old_data", "app")
    pg.execute("CHECKPOINT")
    full2 = vault.backup("g")["point_id"]

    out = vault.ok("delete-point", full1, diff, "--reason", "oops")
    assert out["soft"] is True and sorted(_ids(out["deleted"])) == sorted([full1, diff])
    purge_after = datetime.fromisoformat(out["purge_after"])
    assert timedelta(days=13) < purge_after - datetime.now(UTC) <= timedelta(days=14)
    assert _ids(vault.points("g")) == [full2]
    listed = _deleted(vault, "g")
    assert _ids(listed) == [full1, diff]
    assert {p["purge_after"] for p in listed} == {out["purge_after"]}
    assert (vault.path / "manifests" / diff).exists() and (vault.path / "deleted" / diff).exists()

    target = area / "refused"
    vault.fail("point.soft_deleted", "restore", "g", "--point", diff, "--to-pgdata", target,
               "--port", free_port())
    assert not target.exists()
    vault.fail("softdelete.already_deleted", "delete-point", diff)
    vault.fail("softdelete.not_deleted", "undelete", full2)
    assert vault.ok("gc")["packs_deleted"] == 0  # a soft-deleted point's blocks are used

    # The marker is the truth: a catalog row that missed it is marked again when listed.
    v = Vault.open(vault.path)
    v.catalog.set_point_deleted(diff, None, None)
    assert _ids(vault.points("g")) == [full2]

    out = vault.ok("undelete", diff)  # its base full comes back with it
    assert _ids(out["undeleted"]) == [diff, full1] and out["bases_undeleted"] == [full1]
    assert _ids(vault.points("g")) == [full1, diff, full2] and _deleted(vault, "g") == []
    port = free_port()
    got = vault.ok("restore", "g", "--point", diff, "--to-pgdata", area / "restored",
                   "--port", port, "--start")
    assert got["started"] is True
    copy = restored(area / "restored", port)
    try:
        assert copy.table_checksums() == expected
        assert copy.scalar("SELECT count(*) FROM old_data", "app") == 100500
    finally:
        copy.stop()

    # Purge: a full waits for a differential based on it that is not due yet.
    now = datetime.now(UTC)
    delete_points(v, [diff], "test", now=now)
    delete_points(v, [full1], "test", now=now - timedelta(days=20))
    out = purge_due(v)
    assert out["purged"] == [] and out["waiting"] == {full1: [diff]}
    vault.ok("undelete", diff)
    delete_points(v, [full1, diff], "test", now=now - timedelta(days=20))
    out = vault.ok("purge")
    assert sorted(out["purged"]) == sorted([full1, diff]) and out["job_id"]
    assert not (vault.path / "manifests" / full1).exists()
    assert list((vault.path / "deleted").iterdir()) == []
    assert _ids(vault.points("g")) == [full2] and _deleted(vault, "g") == []
    assert vault.ok("purge")["job_id"] is None  # nothing due: no job

    freed = vault.ok("gc")
    assert freed["bytes_freed"] - freed["bytes_repacked"] > 3e6, freed  # old_data's blocks
    types = {j["type"] for j in vault.jobs() if j["state"] == "completed"}
    assert {"delete", "undelete", "purge"} <= types
    v.catalog.close()


def test_unprotect_delete_data_undelete_and_an_immutable_vault(pg_template, area, vault):
    pg = new_cluster(pg_template, area, "m")
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    vault.add_server("m", pg)
    vault.ok("policy", "create", "nolog", "--log-every", "none", "--keep-daily", "10")
    vault.ok("protect", "m", "--all", "--policy", "nolog")
    full1 = vault.backup("m")["point_id"]

    out = vault.ok("unprotect", "m", "--delete-data")
    assert out["points_deleted"] == [full1] and out["soft_deleted"] is True
    assert out["purge_after"]
    assert vault.points("m") == [] and vault.ok("items", "m") == []
    assert _ids(_deleted(vault, "m")) == [full1]
    vault.ok("protect", "m", "--all", "--policy", "nolog")  # fine with its points deleted
    vault.ok("undelete", full1)
    assert _ids(vault.points("m")) == [full1]

    # Immutable: nothing goes before the policy's retention (10 days of dailies) ends.
    assert vault.ok("vault", "immutability", "on")["immutability"] == "on"
    end = datetime.fromisoformat(vault.points("m")[0]["end_time"])
    out = vault.fail("immutability.retained", "delete-point", full1)
    assert out["error"]["details"]["until"] == (end + timedelta(days=10)).isoformat(
        timespec="seconds")
    vault.fail("immutability.retained", "unprotect", "m", "--delete-data")
    assert {i["state"] for i in vault.ok("items", "m")} == {"protected"}  # nothing changed
    assert _ids(vault.points("m")) == [full1] and _deleted(vault, "m") == []
    vault.fail("immutability.soft_delete_locked", "vault", "soft-delete", "--off")
    vault.ok("vault", "soft-delete", "--days", "30")  # lengthening is fine

    v = Vault.open(vault.path)
    later = datetime.now(UTC) + timedelta(days=11)
    out = delete_points(v, [full1], "test", now=later)  # retention over: allowed
    assert out["soft"] is True
    assert purge_due(v, later + timedelta(days=31))["purged"] == [full1]

    # A soft-deleted point due for purging is still kept while its retention runs.
    full2 = vault.backup("m")["point_id"]
    vault.ok("vault", "immutability", "off")
    delete_points(v, [full2], "test", now=datetime.now(UTC) - timedelta(days=40))
    vault.ok("vault", "immutability", "locked")
    out = vault.ok("purge")
    assert out["purged"] == [] and list(out["held"]) == [full2]
    out = vault.fail("immutability.locked", "vault", "immutability", "off")
    assert vault.ok("vault", "immutability")["immutability"] == "locked"
    assert purge_due(v, later)["purged"] == [full2]
    v.catalog.close()


def test_retention_keeps_the_wal_a_soft_deleted_point_needs(pg_template, area, wal_vault):
    vault = wal_vault
    pg = new_cluster(pg_template, area, "w")
    vault.add_server("w", pg)
    vault.ok("protect", "w", "--all", "--restart")  # the default policy: logs kept 14 days
    pg.execute("CREATE TABLE ledger (id int)")
    first = vault.backup("w")["point_id"]
    pg.execute("INSERT INTO ledger SELECT generate_series(1, 10)")
    log1 = vault.backup("w", "--type", "log")["point_id"]
    pg.execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS v "
               "FROM generate_series(1, 60000) g")  # a few more segments
    second = vault.backup("w")["point_id"]

    v = Vault.open(vault.path)
    delete_points(v, [first, log1], "test")
    later = datetime.now(UTC) + timedelta(days=20)  # the WAL before `second` is out of policy
    out = apply_retention(v, "w", later)
    assert out["wal"]["wal_files_deleted"] == 0  # ...but the soft-deleted points need it
    vault.ok("undelete", first, log1)
    chain = vault.chain("w")
    assert chain["gaps"] == [] and chain["log_ranges"][0]["base"] == first
    assert _ids(chain["points"]) == [first, log1, second]

    delete_points(v, [first, log1], "test", now=datetime.now(UTC) - timedelta(days=15))
    assert sorted(purge_due(v)["purged"]) == sorted([first, log1])
    out = apply_retention(v, "w", later)  # purged: their WAL goes now
    assert out["wal"]["wal_files_deleted"] >= 3
    assert vault.chain("w")["gaps"] == []
    v.catalog.close()


def test_an_immutable_vault_keeps_the_retention_a_point_had_at_backup_time(src_vault):
    """Retention is fixed when a backup commits: shortening the policy later (allowed only
    while the vault is not immutable) does not shorten what an immutable vault keeps, and a
    catalog rebuilt from the manifests keeps it too. An immutable vault refuses to shorten
    a policy, to move databases to a shorter one, and to remove a server whose points it
    retains."""
    vault = src_vault
    vault.ok("policy", "create", "month", "--log-every", "none", "--keep-daily", "30")
    vault.ok("policy", "create", "week", "--log-every", "none", "--keep-daily", "7")
    vault.ok("protect", "src", "--all", "--policy", "month")  # SIMPLE: archiving untouched
    # a copy-only full: kept keep_daily days whatever else the vault holds (a full's
    # daily tier would depend on the fulls after it)
    point = vault.backup("src", "--type", "copy-only")
    end = datetime.fromisoformat(point["end_time"])
    held_until = (end + timedelta(days=30)).isoformat(timespec="seconds")

    vault.ok("vault", "immutability", "on")
    out = vault.fail("immutability.retention_shortened", "policy", "edit", "month",
                     "--keep-daily", "7")
    assert out["error"]["details"] == {"what": "editing policy 'month'",
                                       "changes": "keep_daily 30 days -> 7 days",
                                       "setting": "keep_daily", "old": "30", "new": "7"}
    out = vault.fail("immutability.retention_shortened", "protect", "src", "--all",
                     "--policy", "week")
    assert "from policy 'month' to 'week'" in out["error"]["message"]
    assert vault.ok("policy", "show", "month")["keep_daily"] == 30
    vault.ok("policy", "edit", "month", "--keep-daily", "31")  # lengthening is fine

    # Immutability off: the policy may be shortened; it no longer governs the old point.
    vault.ok("vault", "immutability", "off")
    vault.ok("policy", "edit", "month", "--keep-daily", "7")
    vault.ok("vault", "immutability", "on")
    v = Vault.open(vault.path)
    later = datetime.now(UTC) + timedelta(days=10)
    try:
        out = apply_retention(v, "src", later)
        assert out["expired"] == [] and out["held"] == {point["point_id"]: held_until}
        try:
            delete_points(v, [point["point_id"]], "test", now=later)
            raise AssertionError("deleted before its retention ended")
        except DbsafeError as exc:
            assert exc.code == "immutability.retained" and exc.details["until"] == held_until

        # The manifest carries the retention: a catalog row rebuilt from it keeps it.
        manifest = v.repo.load_manifest_whole(point["point_id"])
        assert manifest["retention"] == {"policy": "month", "timezone": "UTC",
                                         "keep_daily": 30, "keep_weekly": None,
                                         "keep_monthly": None, "keep_yearly": None,
                                         "keep_diff": None, "keep_log": None}
        v.catalog.delete_point(point["point_id"])
        described = describe_point(v, point["point_id"])  # from the manifest alone
        assert retention_holds(v, [described], later) == {point["point_id"]: held_until}
        assert _ids(vault.points("src")) == [point["point_id"]]
        vault.fail("immutability.retained", "delete-point", point["point_id"])

        # Removing the server: refused while protected, then while its point is retained.
        vault.fail("server.protected", "server", "remove", "src")
        vault.ok("unprotect", "src", "--retain-data")
        out = vault.fail("immutability.server_retained", "server", "remove", "src")
        assert out["error"]["details"]["until"] == held_until
        assert _ids(vault.points("src")) == [point["point_id"]]

        vault.ok("vault", "immutability", "locked")
        vault.fail("immutability.locked", "vault", "immutability", "off")
        out = delete_points(v, [point["point_id"]], "test",
                            now=later + timedelta(days=21))  # its 30 days are over
        assert out["soft"] is True
    finally:
        v.catalog.close()
