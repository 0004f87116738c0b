"""Synthetic fulls (docs/repository-format.md, *Synthetic fulls*) on real clusters with real
WAL archiving: built from the previous full plus the pages the WAL names, each must restore
equal, table by table, to a full that read every file at the same moment, stay restorable
when the full it was built from is deleted and its blocks collected, serve as a
differential's base, and match the live files page by page (``verify --deep``)."""

from __future__ import annotations

import os

from change_workload import (
    PAGE,
    amcheck,
    before_full,
    blob_digest,
    every_change,
    protected,
    restore,
    small_table,
)
from conftest import Pg

from dbsafe.engines.postgres.files import RELATION_FILE


def _restored_equal(vault, server: str, point_id: str, target, spaces: dict, want: dict,
                    blobs: str | None = None) -> None:
    got = restore(vault, server, point_id, target, spaces)
    try:
        have = got.table_checksums()
        differing = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        assert have == want, f"tables that differ in {point_id}: {differing}"
        if blobs is not None:
            assert blob_digest(got) == blobs
            amcheck(got, "app")
    finally:
        got.stop()


def _more_changes(pg: Pg) -> None:
    a = "app"
    pg.execute("UPDATE pgbench_accounts SET abalance = abalance + 2 WHERE aid % 89 = 0", a)
    pg.execute("UPDATE hot SET v = 'again' WHERE id % 17 = 0", a)
    pg.execute("DELETE FROM shrink WHERE id > 300", a)
    pg.execute("VACUUM shrink", a)  # cut again: a file shorter than its layers reach
    pg.execute("INSERT INTO newtab SELECT g, 'second' FROM generate_series(5001, 7000) g", a)
    pg.execute("DROP TABLE clu", a)


def test_synthetic_fulls_restore_equal_to_read_fulls(pg_template, area, wal_vault):
    vault = wal_vault
    pg, spaces = protected(pg_template, area, vault, "y")
    before_full(pg)
    read1 = vault.backup("y", "--type", "full")
    assert read1["build"] == {"kind": "read", "reason": None}
    every_change(pg)

    s1 = vault.backup("y", "--type", "full", "--synthetic")
    assert s1["type"] == "full" and s1["build"]["kind"] == "synthetic", s1["build"]
    assert s1["build"]["source"] == read1["point_id"] == s1["build"]["read_full"]
    assert s1["build"]["layers"] == 1 and s1["delta_source"]["source"] == "wal"
    assert s1["bytes_read_data"] < read1["bytes_read_data"]
    accounts = str(pg.relation_path("pgbench_accounts", "app").relative_to(pg.pgdata))
    (entry,) = [e for e in vault.repository().load_manifest_whole(s1["point_id"])["files"]
                if e["path"] == accounts]
    (layer,) = entry["layers"]  # the pages changed since read1, and only those were read
    assert 0 < sum(n for _, n in layer["pages"]) < entry["size"] // PAGE
    want1, blobs1 = pg.table_checksums(), blob_digest(pg)
    # the pages the server has not changed since s1 started are s1's, byte for byte
    deep = vault.ok("verify", "y", "--point", s1["point_id"], "--deep")
    (live,) = [p["live"] for p in deep["points"]]
    assert live["ok"] and live["compared"] == "bytes" and live["pages_differ"] == 0
    assert live["pages_compared"] > 1000 and live["files"] > 50

    _more_changes(pg)
    diff = vault.backup("y", "--type", "diff")  # its base is the synthetic full
    assert diff["base"] == s1["point_id"] and diff["delta_source"]["source"] == "wal"
    want2, blobs2 = pg.table_checksums(), blob_digest(pg)
    s2 = vault.backup("y", "--type", "full", "--synthetic")
    assert s2["build"]["source"] == s1["point_id"] and s2["build"]["layers"] == 2
    assert s2["build"]["read_full"] == read1["point_id"]
    read2 = vault.backup("y", "--type", "full")  # a read full at the same moment: the
    assert read2["build"]["kind"] == "read"      # source's tables, which each restore equals
    assert pg.table_checksums() == want2

    builds = {p["point_id"]: p["build"] for p in vault.points("y")}
    assert [builds[p["point_id"]] for p in (read1, s1, diff, s2, read2)] \
        == ["read", "synthetic", None, "synthetic", "read"]
    assert f"{s1['point_id']}" in (listed := vault.run("points", "y").stdout)
    assert "full (synthetic)" in listed
    repo = vault.repository()
    manifest = repo.load_manifest_whole(s2["point_id"])
    assert manifest["type"] == "full" and manifest["build"]["kind"] == "synthetic"
    layered = {e["path"]: e for e in manifest["files"] if "layers" in e}
    assert len(layered[accounts]["layers"]) == 2  # changed before s1 and again before s2
    assert not [e for e in manifest["files"] if "delta" in e]

    # restorable on their own: the read full they come from deleted, its blocks collected
    vault.ok("delete-point", read1["point_id"])
    gc = vault.ok("gc", "--repack-unused", "1")
    assert gc["packs_deleted"] + gc["packs_repacked"] > 0, gc
    assert vault.ok("verify", "y")["ok"]
    _restored_equal(vault, "y", s1["point_id"], area / "r1", spaces, want1, blobs1)
    _restored_equal(vault, "y", diff["point_id"], area / "rd", spaces, want2, blobs2)
    _restored_equal(vault, "y", s2["point_id"], area / "r2", spaces, want2, blobs2)


def test_a_full_reads_every_file_when_no_change_map_covers_the_range(pg_template, area,
                                                                      wal_vault):
    """An instance without log backups (SIMPLE: no WAL in the vault): asked for a synthetic
    full, dbsafe reads every file and says why."""
    from conftest import new_cluster

    vault = wal_vault
    pg = new_cluster(pg_template, area, "n")
    small_table(pg)
    vault.add_server("n", pg)
    vault.backup("n", "--type", "full")
    pg.execute("UPDATE t SET v = 'x' WHERE id % 7 = 0")
    full = vault.backup("n", "--type", "full", "--synthetic")
    assert full["build"]["kind"] == "read", full["build"]
    assert "no change map" in full["build"]["reason"]
    said = vault.run("backup", "n", "--type", "full", "--synthetic")
    assert said.returncode == 0 and "read every file: no change map" in said.stdout
    refused = vault.run("backup", "n", "--type", "diff", "--synthetic")
    assert refused.returncode == 2 and "only a full" in refused.stderr


def test_verify_deep_names_a_page_that_differs_from_the_live_one(pg_template, area,
                                                                  wal_vault):
    """A page changed on disk behind the server's back (no WAL, its LSN unchanged): the
    point's copy no longer matches it, and ``verify --deep`` says which page."""
    from conftest import new_cluster

    vault = wal_vault
    pg = new_cluster(pg_template, area, "v")
    small_table(pg)
    pg.execute("VACUUM FREEZE t")  # hint bits set now: the full's count changes no page
    pg.execute("CHECKPOINT")
    vault.add_server("v", pg)
    full = vault.backup("v", "--type", "full")
    assert vault.ok("verify", "v", "--deep")["points"][0]["live"]["ok"]

    path = str(pg.relation_path("t").relative_to(pg.pgdata))
    assert RELATION_FILE.match(path.rsplit("/", 1)[-1])
    pg.stop()
    fd = os.open(pg.pgdata / path, os.O_RDWR)
    try:  # a byte of page 3's tuple data, past its header: the LSN stays as it was
        old = os.pread(fd, 1, 3 * PAGE + 4000)
        os.pwrite(fd, bytes([old[0] ^ 0xFF]), 3 * PAGE + 4000)
    finally:
        os.close(fd)
    pg.start()
    out = vault.fail("verify.live_differs", "verify", "v", "--point", full["point_id"],
                     "--deep")
    (live,) = [p["live"] for p in out["report"]["points"]]
    assert live["differ"] == [{"path": path, "page": 3}] and live["pages_differ"] == 1
    said = vault.run("verify", "v", "--point", full["point_id"], "--deep")
    assert "1 page(s)" in said.stderr and "dbsafe backup v --type full" in said.stderr
