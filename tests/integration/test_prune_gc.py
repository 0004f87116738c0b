"""Deleting points, pruning the log chain and garbage collection, on real clusters: what
stays restorable, what is refused, the bytes freed, and garbage collection racing a backup
that deduplicates against the blocks of a point just deleted."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from conftest import Pg, free_port, new_cluster, restored

from dbsafe.services.backup.take import run_backup
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.lifecycle.prune import prune_wal

LEDGER = "CREATE TABLE ledger (id int PRIMARY KEY, note text)"


def _cluster(pg_template, area, vault, name="g") -> Pg:
    pg = new_cluster(pg_template, area, name)
    pg.execute("CREATE DATABASE app")
    pg.pgbench("-i", "-s", "2", "-q", dbname="app")
    vault.add_server(name, pg)
    vault.ok("vault", "soft-delete", "--off")  # deleted for good here (see test_soft_delete)
    return pg


def _restore(vault, name: str, point_id: str, target) -> Pg:
    port = free_port()
    out = vault.ok("restore", name, "--point", point_id, "--to-pgdata", target, "--port", port,
                   "--start")
    assert out["started"] is True, out
    return restored(target, port)


def _ids(points: list[dict]) -> list[str]:
    return [p["point_id"] for p in points]


def test_delete_a_differential_then_its_full(pg_template, area, vault):
    pg = _cluster(pg_template, area, vault)
    full = vault.backup("g")["point_id"]
    pg.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 5000", "app")
    diff = vault.backup("g", "--type", "diff")
    assert diff["base"] == full
    diff = diff["point_id"]

    out = vault.fail("prune.base_in_use", "delete-point", full)
    assert diff in out["error"]["message"]
    vault.fail("prune.point_unknown", "delete-point", "20000101T000000Z-deadbeef")
    assert _ids(vault.points("g")) == [full, diff]  # a refusal deletes nothing

    done = vault.ok("delete-point", diff, "--reason", "expired: test")
    assert [p["point_id"] for p in done["deleted"]] == [diff]
    assert _ids(vault.points("g")) == [full]
    assert not (vault.path / "manifests" / diff).exists()
    vault.ok("delete-point", full)
    assert vault.points("g") == []

    # A full with its differential in one request: allowed.
    full2 = vault.backup("g")["point_id"]
    pg.execute("DELETE FROM pgbench_history", "app")
    diff2 = vault.backup("g", "--type", "diff")["point_id"]
    done = vault.ok("delete-point", full2, diff2)
    assert sorted(p["point_id"] for p in done["deleted"]) == sorted([full2, diff2])
    assert vault.points("g") == []
    job = next(j for j in vault.jobs() if j["id"] == done["job_id"])
    assert job["type"] == "delete" and job["state"] == "completed"
    assert any(j["type"] == "delete" and j["reason"] == "expired: test" for j in vault.jobs())

    # A deletion that died between the manifest and the catalog row: listing drops the row.
    full3 = vault.backup("g")["point_id"]
    (vault.path / "manifests" / full3).unlink()
    assert vault.points("g") == []

    # Nothing uses any block now: garbage collection empties the vault's data.
    out = vault.ok("gc")
    assert out["packs_deleted"] > 0 and out["packs_total"] == 0
    assert vault.pack_files() == [] and list((vault.path / "index").iterdir()) == []


def test_gc_frees_a_deleted_points_bytes_and_the_rest_still_restores(pg_template, area,
                                                                      vault):
    pg = _cluster(pg_template, area, vault)
    pg.execute("CREATE TABLE old_data AS SELECT g, md5(g::text) || md5((-g)::text) AS v "
               "FROM generate_series(1, 300000) g", "app")
    first = vault.backup("g")
    pg.execute("DROP TABLE old_data", "app")
    pg.execute("CREATE TABLE new_data AS SELECT g, md5(g::text) AS v "
               "FROM generate_series(1, 20000) g", "app")
    pg.execute("CHECKPOINT")
    second = vault.backup("g")
    expected = pg.table_checksums()
    size = vault.size()

    vault.ok("delete-point", first["point_id"])
    out = vault.ok("gc")
    freed = out["bytes_freed"] - out["bytes_repacked"]
    # old_data alone stored about 13 MB (zstd level 1 on hex text): it is gone.
    assert freed > 10e6, out
    assert vault.size() < size - 10e6
    assert out["tombstones_pending"] == 0 and out["waiting_for"] == []
    assert vault.ok("verify", "g")["ok"] is True
    got = _restore(vault, "g", second["point_id"], area / "restored")
    try:
        assert got.table_checksums() == expected
    finally:
        got.stop()
    again = vault.ok("gc")
    assert again["packs_marked"] == again["packs_deleted"] == again["packs_repacked"] == 0


def test_gc_while_a_backup_runs(pg_template, area, vault):
    """A full that deduplicates against the blocks of a point just deleted, paused in the
    middle of its copy with its writer lock held: garbage collection marks those packs but
    its sweep waits; when the backup ends, its manifest rescues them; it restores."""
    pg = _cluster(pg_template, area, vault)
    first = vault.backup("g")["point_id"]
    vault.ok("delete-point", first)
    pg.execute("CHECKPOINT")
    expected = pg.table_checksums()
    packs = set(vault.pack_files())

    copying, resume = threading.Event(), threading.Event()
    outcome: dict = {}

    def progress(done: int, total: int) -> None:
        if not copying.is_set():
            copying.set()
            resume.wait(300)

    def backup() -> None:
        try:
            outcome["result"] = run_backup(Vault.open(vault.path), "g", on_progress=progress)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    worker = threading.Thread(target=backup)
    worker.start()
    try:
        assert copying.wait(300), outcome
        marked = vault.ok("gc")  # mark while the backup is alive
        assert marked["packs_marked"] >= 1 and marked["packs_deleted"] == 0, marked
        assert marked["tombstones_pending"] == 1
        assert [w["kind"] for w in marked["waiting_for"]] == ["backup"]
        again = vault.ok("gc")  # the sweep waits for the writer
        assert again["packs_deleted"] == 0 and again["tombstones_pending"] == 1
        assert set(vault.pack_files()) == packs
    finally:
        resume.set()
        worker.join(600)
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert result["blocks_reused"] > 0  # it used the tombstoned packs

    swept = vault.ok("gc")
    assert swept["packs_rescued"] >= 1 and swept["tombstones_pending"] == 0, swept
    assert vault.ok("verify", "g")["ok"] is True
    got = _restore(vault, "g", result["point_id"], area / "restored")
    try:
        assert got.table_checksums() == expected
    finally:
        got.stop()


# the log chain -------------------------------------------------------------------------------
def _commit_rows(pg: Pg, first: int, count: int) -> None:
    for i in range(first, first + count):
        pg.execute("INSERT INTO ledger VALUES (%s, md5(%s::text))", params=(i, i))
        time.sleep(0.02)


def _between(times: dict[int, datetime], a: int) -> str:
    return (times[a] + (times[a + 1] - times[a]) / 2).isoformat()


def test_prune_wal_moves_the_chain_start_without_a_gap(pg_template, area, wal_vault):
    vault = wal_vault
    pg = new_cluster(pg_template, area, "pitr", settings={"track_commit_timestamp": "on"})
    vault.add_server("pitr", pg)
    vault.ok("protect", "pitr", "--all", "--restart")
    pg.execute(LEDGER)
    first = vault.backup("pitr")
    _commit_rows(pg, 1, 10)
    log1 = vault.backup("pitr", "--type", "log")
    pg.execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS v "
               "FROM generate_series(1, 60000) g")  # a few more segments
    second = vault.backup("pitr")
    _commit_rows(pg, 11, 10)
    log2 = vault.backup("pitr", "--type", "log")
    times = {i: t for i, t in pg.execute(
        "SELECT id, pg_xact_commit_timestamp(xmin) FROM ledger ORDER BY id")}
    before = vault.chain("pitr")
    assert before["gaps"] == [] and before["log_ranges"][0]["base"] == first["point_id"]

    v = Vault.open(vault.path)
    sysid = v.catalog.get_server("pitr")["system_identifier"]
    out = prune_wal(v, sysid, second["start_lsn"], second["timeline"])
    assert out["wal_files_deleted"] >= 3 and out["log_points_deleted"] == [log1["point_id"]]
    again = prune_wal(v, sysid, second["start_lsn"], second["timeline"])  # idempotent
    assert again["wal_files_deleted"] == 0 and again["job_id"] is None
    assert again["first_kept"] == out["first_kept"]

    after = vault.chain("pitr")
    assert after["gaps"] == []
    (rng,) = after["log_ranges"]
    assert rng["base"] == second["point_id"] and rng["start_time"] == second["end_time"]
    assert rng["first_segment"] == out["first_kept"]
    assert _ids(after["points"]) == [first["point_id"], second["point_id"], log2["point_id"]]
    assert vault.ok("gc")["bytes_freed"] > 0  # the pruned segments' blocks
    assert vault.ok("verify", "pitr")["ok"] is True

    # Inside the retained range: restorable exactly.
    target = area / "in-range"
    res = vault.ok("restore", "pitr", "--time", _between(times, 15), "--to-pgdata", target)
    got = restored(target, res["port"])
    got.start()
    try:
        assert [r[0] for r in got.execute("SELECT id FROM ledger ORDER BY id")] == \
            list(range(1, 16))
    finally:
        got.stop()
    # Before it: refused with the ranges that remain.
    vault.fail("restore.outside_chain", "restore", "pitr", "--time", _between(times, 5),
               "--to-pgdata", area / "too-early")
    # The older full still restores on its own: its consistency WAL is in its manifest.
    old = _restore(vault, "pitr", first["point_id"], area / "first")
    try:
        assert old.scalar("SELECT count(*) FROM ledger") == 0
    finally:
        old.stop()
