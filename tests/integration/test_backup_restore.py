"""Full backups of a running cluster, restored into new data directories and started."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

from conftest import PG_BIN, Pg, chown_postgres, free_port, interrupt, restored


def _restore_and_start(vault, point_id, target, port) -> Pg:
    out = vault.ok("restore", "src", "--point", point_id, "--to-pgdata", target,
                   "--port", port, "--start")
    assert out["started"] is True, out
    assert out["point_id"] == point_id
    assert out["pgdata"] == str(target)
    return restored(target, port)


def test_full_backup_restores_the_backup_time_state(src_vault, source, area):
    before = source.table_checksums()
    assert "bench.pgbench_accounts" in before and "appdb.notes" in before
    result = src_vault.backup("src")
    assert result["type"] == "full" and result["copy_only"] is False
    assert result["bytes_read"] > 0 and result["files"] > 0 and result["wal_segments"] >= 1

    # The source moves on after the backup: the restore must show the backup-time state.
    source.execute("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid <= 2000",
                   "bench")
    source.execute("DELETE FROM kinds WHERE id <= 10", "bench")
    source.execute("INSERT INTO notes VALUES (100000, 'written after the backup')", "appdb")
    source.execute("CREATE TABLE after_backup AS SELECT 1 AS x", "bench")
    source.execute("CHECKPOINT")
    after = source.table_checksums()
    changed = {k for k in before if after.get(k) != before[k]}
    assert {"bench.pgbench_accounts", "bench.kinds", "appdb.notes"} <= changed
    assert "bench.after_backup" in after

    port = free_port()
    pg = _restore_and_start(src_vault, result["point_id"], area / "restored", port)
    try:
        assert pg.scalar("SELECT 1") == 1
        assert pg.scalar("SELECT pg_is_in_recovery()") is False
        assert pg.scalar("SELECT system_identifier::text FROM pg_control_system()") == \
            source.scalar("SELECT system_identifier::text FROM pg_control_system()")
        got = pg.table_checksums()
        differing = sorted(k for k in before.keys() | got.keys() if before.get(k) != got.get(k))
        assert got == before, f"tables that differ from the backup-time state: {differing}"
        # The unlogged table comes back empty (only its init fork is backed up).
        assert source.scalar("SELECT count(*) FROM scratch_unlogged", "bench") > 0
        assert pg.scalar("SELECT count(*) FROM scratch_unlogged", "bench") == 0
        # Every restored file belongs to the user that owns the source's files.
        owner = source.pgdata.stat().st_uid
        assert (area / "restored").stat().st_mode & 0o777 == 0o700
        wrong = [p for p in (area / "restored").rglob("*") if p.lstat().st_uid != owner]
        assert not wrong, f"not owned by the postgres user: {wrong[:5]}"
        # The restored server keeps the port it was given across restarts.
        assert f"port = {port}" in (area / "restored" / "postgresql.auto.conf").read_text()
    finally:
        pg.stop()


def test_copy_only_flag(src_vault):
    full = src_vault.backup("src")
    copy = src_vault.backup("src", "--type", "copy-only")
    assert copy["type"] == "copy-only" and copy["copy_only"] is True
    assert full["type"] == "full" and full["copy_only"] is False

    points = {p["point_id"]: p for p in src_vault.points("src")}
    assert set(points) == {full["point_id"], copy["point_id"]}
    assert points[copy["point_id"]]["type"] == "copy-only"
    assert points[copy["point_id"]]["copy_only"] is True
    assert points[full["point_id"]]["type"] == "full"
    assert points[full["point_id"]]["copy_only"] is False

    # The manifests (the truth the catalog is rebuilt from) say the same.
    repo = src_vault.repository()
    assert repo.load_manifest_whole(copy["point_id"])["copy_only"] is True
    assert repo.load_manifest_whole(copy["point_id"])["type"] == "copy-only"
    assert repo.load_manifest_whole(full["point_id"])["copy_only"] is False


def test_second_full_of_unchanged_instance_stores_almost_nothing(src_vault, source):
    first = src_vault.backup("src")
    size_after_first = src_vault.size()
    second = src_vault.backup("src")
    size_after_second = src_vault.size()

    ratio = second["bytes_stored"] / first["bytes_read"]
    assert ratio <= 0.01, (
        f"2nd full stored {second['bytes_stored']} B = {ratio:.4%} of the 1st's "
        f"bytes_read {first['bytes_read']} B (limit 1%)")
    assert second["blocks_reused"] > 0
    assert second["bytes_read"] > 0

    db_size = source.scalar("SELECT sum(pg_database_size(oid))::bigint FROM pg_database")
    growth = size_after_second - size_after_first
    assert growth <= 0.01 * db_size, (
        f"vault grew by {growth} B = {growth / db_size:.4%} of the database size "
        f"{db_size} B (limit 1%)")

    points = {p["point_id"]: p for p in src_vault.points("src")}
    assert points[second["point_id"]]["bytes_stored"] == second["bytes_stored"]
    assert points[first["point_id"]]["bytes_read"] == first["bytes_read"]


def test_restore_refuses_an_existing_target(src_vault, area):
    """dbsafe creates its target: a folder that exists, even an empty one, is refused and
    left as it was (owner and mode included)."""
    point = src_vault.backup("src")["point_id"]
    target = area / "occupied"
    target.mkdir()
    keep = target / "keep.txt"
    keep.write_bytes(b"precious data\n")
    os.utime(keep, (1_000_000, 1_000_000))
    empty = area / "empty"
    empty.mkdir(mode=0o755)
    os.chmod(empty, 0o755)

    for mode in ("--to-pgdata", "--as-files"):
        out = src_vault.fail("restore.target_exists", "restore", "src", "--point", point,
                             mode, target)
        assert str(target) in out["error"]["message"]
        assert sorted(os.listdir(target)) == ["keep.txt"]
        assert keep.read_bytes() == b"precious data\n"
        assert keep.stat().st_mtime == 1_000_000
        src_vault.fail("restore.target_exists", "restore", "src", "--point", point, mode,
                       empty)
        assert os.listdir(empty) == []
        assert (empty.stat().st_uid, empty.stat().st_mode & 0o7777) == (0, 0o755)

    # A target that is a file is refused too, and left alone.
    a_file = area / "a-file"
    a_file.write_text("x")
    src_vault.fail("restore.target_exists", "restore", "src", "--point", point,
                   "--to-pgdata", a_file)
    assert a_file.read_text() == "x"


@contextlib.contextmanager
def socket_listening() -> Iterator[int]:
    """A port with a listener on 127.0.0.1 for as long as the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_restore_refuses_a_port_in_use(src_vault, area):
    point = src_vault.backup("src")["point_id"]
    target = area / "r"
    with socket_listening() as port:
        src_vault.fail("restore.port_in_use", "restore", "src", "--point", point,
                       "--to-pgdata", target, "--port", port, "--start")
    assert not target.exists() or not any(target.iterdir())


def test_restore_as_files_then_start_by_hand(src_vault, source, area):
    before = source.table_checksums()
    result = src_vault.backup("src")
    manifest = src_vault.repository().load_manifest_whole(result["point_id"])
    source.execute("UPDATE pgbench_branches SET bbalance = bbalance + 1", "bench")

    target = area / "files"
    out = src_vault.ok("restore", "src", "--point", result["point_id"], "--as-files", target)
    assert out["mode"] == "files" and out["started"] is False
    assert sorted(os.listdir(target)) == ["RESTORE.txt", "pgdata", "wal"]
    pgdata, wal = target / "pgdata", target / "wal"
    readme = (target / "RESTORE.txt").read_text()
    assert result["point_id"] in readme and "cp wal/* pgdata/pg_wal/" in readme
    assert result["stop_lsn"] in readme
    assert sorted(os.listdir(wal)) == sorted(w["path"] for w in manifest["wal"])
    assert (pgdata / "backup_label").read_text() == manifest["backup_label"]
    assert not [p for p in (pgdata / "pg_wal").iterdir() if p.is_file()], \
        "pg_wal must be empty: the WAL is in wal/"
    assert not (pgdata / "postmaster.pid").exists()

    # RESTORE.txt, by hand: 1. copy the WAL, 2. chown, 3. pg_ctl start on a free port.
    for segment in wal.iterdir():
        shutil.copy2(segment, pgdata / "pg_wal" / segment.name)
    chown_postgres(pgdata, recursive=True)
    os.chmod(pgdata, 0o700)
    pg = Pg(pgdata=pgdata, port=free_port(), sockdir=area, log=area / "files.log")
    pg.start()
    try:
        assert pg.scalar("SELECT pg_is_in_recovery()") is False
        assert pg.table_checksums() == before
    finally:
        pg.stop()


def _pgbench_sums(pg: Pg) -> dict[str, int]:
    """Sums that each pgbench (tpcb-like) transaction changes by the same delta."""
    row = pg.execute(
        "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts),"
        "       (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers),"
        "       (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches),"
        "       (SELECT coalesce(sum(delta), 0) FROM pgbench_history),"
        "       (SELECT count(*) FROM pgbench_history)", "bench")[0]
    a, t, b, d, n = (int(x) for x in row)
    return {"accounts-history": a - d, "tellers-history": t - d, "branches-history": b - d,
            "history_rows": n}


def test_backup_under_write_load_restores_a_consistent_cluster(src_vault, source, area):
    """pgbench writes while the backup runs; the restore must be transactionally
    consistent (pgbench's balance invariants hold, amcheck finds no damage) and show a
    state from inside the backup window."""
    base = _pgbench_sums(source)
    load = subprocess.Popen(
        [str(PG_BIN / "pgbench"), "-h", str(source.sockdir), "-p", str(source.port), "-U",
         "postgres", "-n", "-c", "2", "-j", "1", "-T", "300", "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _pgbench_sums(source)["history_rows"] <= base["history_rows"] + 100:
            assert time.monotonic() < deadline, "pgbench wrote nothing within 60 s"
            assert load.poll() is None, "pgbench exited early"
            time.sleep(0.2)
        rows_at_start = _pgbench_sums(source)["history_rows"]
        result = src_vault.backup("src")
        rows_at_end = _pgbench_sums(source)["history_rows"]
    finally:
        interrupt(load)
    assert rows_at_end > rows_at_start, "no writes happened while the backup ran"

    pg = _restore_and_start(src_vault, result["point_id"], area / "r", free_port())
    try:
        got = _pgbench_sums(pg)
        for key in ("accounts-history", "tellers-history", "branches-history"):
            assert got[key] == base[key], f"pgbench invariant {key} broken: {got} vs {base}"
        assert rows_at_start <= got["history_rows"] <= rows_at_end, (
            f"restored {got['history_rows']} history rows; the backup ran while there were "
            f"{rows_at_start}..{rows_at_end}")
        check = subprocess.run(
            [str(PG_BIN / "pg_amcheck"), "-h", str(pg.sockdir), "-p", str(pg.port), "-U",
             "postgres", "--install-missing", "--heapallindexed", "-d", "bench"],
            capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, f"pg_amcheck: {check.stdout}{check.stderr}"
    finally:
        pg.stop()


def test_a_failed_start_leaves_nothing_behind(src_vault, source, area):
    """--start that fails (here: a setting of the source only a start reads, a socket group
    that does not exist) removes what the restore made, and leaves no server running."""
    source.execute("ALTER SYSTEM SET unix_socket_group = 'dbsafe-no-such-group'")
    try:
        point = src_vault.backup("src")["point_id"]
    finally:
        source.execute("ALTER SYSTEM RESET unix_socket_group")
    target = area / "r"
    out = src_vault.fail("restore.start_failed", "restore", "src", "--point", point,
                         "--to-pgdata", target, "--port", free_port(), "--start")
    assert "dbsafe-no-such-group" in out["error"]["message"] or \
        "Unix-domain" in out["error"]["message"], out
    assert not target.exists() and sorted(os.listdir(area)) == ["vault"]
