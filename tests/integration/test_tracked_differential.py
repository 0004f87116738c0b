"""WAL-tracked differentials (docs/change-map.md) on real clusters with real WAL archiving:
every kind of change between a full and a differential that reads only the pages the WAL
names. The oracle: the restored full + differential equals the source table by table, and
no page the differential left out carries an LSN inside ``[base start, diff start)``
(read on the live files after a checkpoint: a page changed in that range and not read
would be restored as the base's stale copy)."""

from __future__ import annotations

import subprocess
import time

from change_workload import (
    PAGE,
    amcheck,
    before_full,
    blob_digest,
    every_change,
    left_out_in_range,
    point_counts,
    protected,
    read_pages,
    restore,
    restores_equal,
    small_table,
)
from conftest import PG_BIN, Pg, as_postgres, chown_postgres, interrupt

from dbsafe.engines.postgres.wal import parse_lsn


def test_every_kind_of_change_is_tracked_and_restores_equal(pg_template, area, wal_vault):
    vault = wal_vault
    pg, spaces = protected(pg_template, area, vault)
    before_full(pg)
    full = vault.backup("t", "--type", "full")
    every_change(pg)

    diff = vault.backup("t", "--type", "diff")
    want, blobs = pg.table_checksums(), blob_digest(pg)
    source = diff["delta_source"]
    assert source["source"] == "wal", source
    assert source["records"] > 0 and source["blocks"] > 0 and source["segments"] >= 1
    assert source["start_lsn"] == full["start_lsn"] and source["stop_lsn"] == diff["start_lsn"]
    job = next(j for j in vault.jobs() if j["id"] == diff["job_id"])
    assert not [w for w in job.get("warnings") or [] if w["code"] == "backup.diff_untracked"]

    repo = vault.repository()
    manifest = repo.load_manifest_whole(diff["point_id"])
    assert manifest["delta_source"]["source"] == "wal"
    pg.execute("CHECKPOINT")  # what the buffers hold reaches the files the oracle reads
    missed = left_out_in_range(pg, manifest, parse_lsn(full["start_lsn"]),
                                parse_lsn(diff["start_lsn"]))
    assert not missed, f"pages changed since the full that the differential left out: {missed}"
    # exactly the pages changed since the full are read, no more: the table's pages whose
    # LSN is at or after the full's start (nothing wrote after the differential started)
    accounts = str(pg.relation_path("pgbench_accounts", "app").relative_to(pg.pgdata))
    data = (pg.pgdata / accounts).read_bytes()
    changed = {i for i in range(len(data) // PAGE)
               if int.from_bytes(data[i * PAGE:i * PAGE + 4], "little") << 32
               | int.from_bytes(data[i * PAGE + 4:i * PAGE + 8], "little")
               >= parse_lsn(full["start_lsn"])}
    assert changed and read_pages(manifest)[accounts] == changed
    assert diff["bytes_read_data"] < diff["bytes_read"]
    # the row counts for drills: the base's kept for the tables nothing changed since
    # (not counted again), each equal to the table's count now; the others counted
    counts = point_counts(vault, diff["point_id"])["databases"]
    # (tmpl.copied is counted again: the full's own count set its hint bits, and with
    # data checksums on that wrote full-page images of it after the full started)
    assert {"public.pgbench_branches", "public.pgbench_tellers"} <= set(counts["app"]["reused"])
    assert not {"public.hot", "public.pgbench_accounts", "public.vf", "public.clu",
                "public.blobs"} & set(counts["app"]["reused"])
    assert "reused" not in counts["mover"]  # moved to another tablespace: counted again
    for db, taken in counts.items():
        for key in taken.get("reused", []):
            assert pg.scalar(f"SELECT count(*) FROM {key}", db) == taken["tables"][key], key
    # and a restore drill of the differential finds every count, kept or taken, right
    drill = vault.ok("drill", "run", "t", "--point", diff["point_id"], "--scratch-root",
                     area / "drills")
    assert drill["state"] == "completed" and drill["failed_check"] is None, drill
    checks = {c["name"]: c for c in drill["checks"]}
    assert checks["row_counts"]["ok"] and checks["row_counts"]["changed"] == []
    assert checks["row_counts"]["tables_compared"] >= 20

    got = restore(vault, "t", diff["point_id"], area / "r", spaces)
    try:
        have = got.table_checksums()
        differing = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        assert have == want, f"tables that differ: {differing}"
        assert blob_digest(got) == blobs
        assert {"app.newtab", "walcopy.copied", "filecopy.copied", "mover.m"} <= set(want)
        assert got.scalar("SELECT count(*) FROM scratch", "app") == 0  # unlogged: empty
        assert got.scalar("SELECT spcname FROM pg_database d JOIN pg_tablespace t "
                          "ON t.oid = d.dattablespace WHERE datname = 'mover'") == "ts2"
        amcheck(got, "app")
    finally:
        got.stop()


def _pgbench_sums(pg: Pg) -> dict:
    row = pg.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                     "(SELECT sum(tbalance) FROM pgbench_tellers), "
                     "(SELECT sum(bbalance) FROM pgbench_branches), "
                     "(SELECT count(*) FROM pgbench_history)", "app")[0]
    return dict(zip(("accounts", "tellers", "branches", "history_rows"), row, strict=True))


def test_changes_under_pgbench_load_are_tracked(pg_template, area, wal_vault):
    """The workload runs while pgbench writes, and pgbench goes on during the
    differential and a synthetic full: nothing in the range is left out, both restores
    are consistent."""
    vault = wal_vault
    pg, spaces = protected(pg_template, area, vault, "l")
    before_full(pg)
    vault.backup("l", "--type", "full")
    full = vault.points("l")[-1]
    load = subprocess.Popen(
        [str(PG_BIN / "pgbench"), "-h", str(pg.sockdir), "-p", str(pg.port), "-U", "postgres",
         "-n", "-c", "2", "-j", "1", "-T", "300", "app"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        every_change(pg)
        diff = vault.backup("l", "--type", "diff")
        made = vault.backup("l", "--type", "full", "--synthetic")  # and a synthetic full
    finally:
        interrupt(load)
    assert made["build"]["kind"] == "synthetic" and made["build"]["source"] == full["point_id"]
    assert diff["delta_source"]["source"] == "wal", diff["delta_source"]
    pg.execute("CHECKPOINT")
    manifest = vault.repository().load_manifest_whole(diff["point_id"])
    missed = left_out_in_range(pg, manifest, parse_lsn(full["start_lsn"]),
                                parse_lsn(diff["start_lsn"]))
    assert not missed, f"pages changed since the full that the differential left out: {missed}"
    for point in (diff["point_id"], made["point_id"]):
        got = restore(vault, "l", point, area / point, spaces)
        try:
            sums = _pgbench_sums(got)
            # pgbench keeps the three sums equal; the workload added 1 to every 97th account
            bumped = got.scalar("SELECT count(*) FROM pgbench_accounts WHERE aid % 97 = 0",
                                "app")
            assert sums["accounts"] - bumped == sums["tellers"] == sums["branches"], sums
            amcheck(got, "app")
        finally:
            got.stop()


def test_a_gap_in_the_chain_falls_back_to_the_lsn_scan_and_says_why(pg_template, area,
                                                                      wal_vault):
    """A segment of the range gone from the vault and from pg_wal: the differential scans
    page LSNs instead, warns ``backup.diff_untracked`` naming the segment, and restores
    equal to the source."""
    vault = wal_vault
    pg, spaces = protected(pg_template, area, vault, "g")
    small_table(pg)
    full = vault.backup("g", "--type", "full")
    pg.execute("UPDATE t SET v = 'one' WHERE id % 10 = 0")
    lost = pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
    pg.execute("SELECT pg_switch_wal()")
    pg.execute("UPDATE t SET v = 'two' WHERE id % 10 = 1")
    vault.backup("g", "--type", "log")  # the switched segment is in the vault now
    pg.execute("CHECKPOINT")
    sysid = str(pg.scalar("SELECT system_identifier FROM pg_control_system()"))
    vault.repository().delete_wal_record(sysid, lost)
    (pg.pgdata / "pg_wal" / lost).unlink(missing_ok=True)

    diff = vault.backup("g", "--type", "diff")
    want = pg.table_checksums()
    assert diff["delta_source"]["source"] == "lsn-scan"
    assert lost in diff["delta_source"]["reason"] and "gap" in diff["delta_source"]["reason"]
    job = next(j for j in vault.jobs() if j["id"] == diff["job_id"])
    (warning,) = [w for w in job["warnings"] if w["code"] == "backup.diff_untracked"]
    assert lost in warning["message"]
    assert diff["base"] == full["point_id"] and diff["pages_changed"] > 0
    restores_equal(vault, "g", diff["point_id"], area / "r", spaces, want)
    said = vault.run("backup", "g", "--type", "diff")  # what a DBA reads
    assert said.returncode == 0 and "pages chosen by scanning page LSNs" in said.stdout
    assert lost in said.stdout


def test_a_recycled_file_in_pg_wal_is_not_read_for_its_name(pg_template, area, wal_vault):
    """pg_wal holds, under a segment's name, another segment's bytes (PostgreSQL recycles
    old files under future names): the map reads the vault's copy instead, stays WAL-
    tracked, and misses nothing."""
    vault = wal_vault
    pg, spaces = protected(pg_template, area, vault, "c")
    small_table(pg)
    older = pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
    pg.execute("SELECT pg_switch_wal()")
    full = vault.backup("c", "--type", "full")
    pg.execute("UPDATE t SET v = 'one' WHERE id % 10 = 0")
    replaced = pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
    pg.execute("SELECT pg_switch_wal()")
    pg.execute("UPDATE t SET v = 'two' WHERE id % 10 = 1")
    vault.backup("c", "--type", "log")
    pg.execute("CHECKPOINT")
    wal_dir = pg.pgdata / "pg_wal"
    if not (wal_dir / older).exists():  # recycled already: any other old bytes will do
        older = next(iter(sorted(p.name for p in wal_dir.iterdir() if len(p.name) == 24)))
    (wal_dir / replaced).write_bytes((wal_dir / older).read_bytes())

    diff = vault.backup("c", "--type", "diff")
    want = pg.table_checksums()
    source = diff["delta_source"]
    assert source["source"] == "wal", source
    assert source["wal_bytes_from_vault"] > 0
    said = vault.run("backup", "c", "--type", "diff")  # what a DBA reads
    assert said.returncode == 0 and "pages chosen by the WAL since the full" in said.stdout
    pg.execute("CHECKPOINT")
    manifest = vault.repository().load_manifest_whole(diff["point_id"])
    assert not left_out_in_range(pg, manifest, parse_lsn(full["start_lsn"]),
                                  parse_lsn(diff["start_lsn"]))
    restores_equal(vault, "c", diff["point_id"], area / "r", spaces, want)


def test_segments_ended_by_a_switch_are_read_only_up_to_it(pg_template, area, wal_vault):
    """A quiet server's segments (archive_timeout, pg_switch_wal) hold a few records and
    then a switch: the map reads their first pages, not 16 MiB each, and misses nothing."""
    vault = wal_vault
    pg, spaces = protected(pg_template, area, vault, "w")
    small_table(pg)
    full = vault.backup("w", "--type", "full")
    for n in range(6):
        pg.execute(f"UPDATE t SET v = 'round {n}' WHERE id % 10 = {n}")
        pg.execute("SELECT pg_switch_wal()")

    diff = vault.backup("w", "--type", "diff")
    want = pg.table_checksums()
    source = diff["delta_source"]
    assert source["source"] == "wal" and source["segments"] >= 6, source
    segment = pg.scalar("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'")
    read = source["wal_bytes_from_server"] + source["wal_bytes_from_vault"]
    assert read < 3 * segment, f"{read} bytes read: {source}"
    pg.execute("CHECKPOINT")
    manifest = vault.repository().load_manifest_whole(diff["point_id"])
    assert not left_out_in_range(pg, manifest, parse_lsn(full["start_lsn"]),
                                  parse_lsn(diff["start_lsn"]))
    restores_equal(vault, "w", diff["point_id"], area / "r", spaces, want)


def test_a_timeline_switch_falls_back_to_the_lsn_scan(pg_template, area, wal_vault):
    """The server promoted (a new timeline) after the full: the map follows one timeline's
    WAL, so the differential scans page LSNs, says why, and restores equal; the full is
    still its base, as the server went through the full's end before it switched."""
    vault = wal_vault
    pg, spaces = protected(pg_template, area, vault, "s")
    small_table(pg)
    full = vault.backup("s", "--type", "full")
    pg.execute("UPDATE t SET v = 'before' WHERE id % 10 = 0")
    pg.stop()
    (pg.pgdata / "standby.signal").touch()
    chown_postgres(pg.pgdata / "standby.signal")
    pg.start()
    promoted = as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pg.pgdata), "promote", "-w"])
    assert promoted.returncode == 0, promoted.stderr
    assert pg.scalar("SELECT timeline_id FROM pg_control_checkpoint()") == 2
    pg.execute("UPDATE t SET v = 'after' WHERE id % 10 = 1")

    diff = vault.backup("s", "--type", "diff")
    want = pg.table_checksums()
    assert diff["base"] == full["point_id"] and diff["timeline"] == 2
    source = diff["delta_source"]
    assert source["source"] == "lsn-scan" and "timeline" in source["reason"], source
    job = next(j for j in vault.jobs() if j["id"] == diff["job_id"])
    assert [w for w in job["warnings"] if w["code"] == "backup.diff_untracked"]
    got = restore(vault, "s", diff["point_id"], area / "r", spaces)
    try:
        assert got.table_checksums() == want
        assert got.scalar("SELECT count(*) FROM t WHERE v IN ('before', 'after')") == 4000
    finally:
        got.stop()
