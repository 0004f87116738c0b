"""Restore drills on real clusters: row counts taken at backup time, a drill that restores
into a scratch cluster, checks it and removes it, and the ways it fails."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import datetime
from functools import partial
from pathlib import Path

from conftest import Pg, chown_postgres, new_cluster

from dbsafe.engines.postgres import stats
from dbsafe.engines.postgres.client import connect

SETUP = [
    "CREATE TABLE plain (id int PRIMARY KEY, v text)",
    "INSERT INTO plain SELECT g, md5(g::text) FROM generate_series(1, 1234) g",
    'CREATE SCHEMA "Odd Schema"',
    'CREATE TABLE "Odd Schema"."Mixed.Case" (id int)',
    'INSERT INTO "Odd Schema"."Mixed.Case" SELECT generate_series(1, 7)',
    "CREATE TABLE parted (id int, k int) PARTITION BY RANGE (k)",
    "CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM (0) TO (50)",
    "CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM (50) TO (100)",
    "INSERT INTO parted SELECT g, g % 100 FROM generate_series(1, 300) g",
    "CREATE UNLOGGED TABLE scratchpad (id int)",
    "INSERT INTO scratchpad SELECT generate_series(1, 50)",
]


def _cluster(pg_template, area, name="drilled", settings=None) -> Pg:
    pg = new_cluster(pg_template, area, name, settings=settings)
    pg.execute("CREATE DATABASE appdb")
    for sql in SETUP:
        pg.execute(sql, "appdb")
    pg.execute("CREATE TABLE ledger (id int PRIMARY KEY, note text)")
    pg.execute("INSERT INTO ledger SELECT g, 'x' FROM generate_series(1, 10) g")
    pg.execute("CREATE DATABASE closed ALLOW_CONNECTIONS false")
    pg.execute("VACUUM")  # hint bits set now, not by the count after the backup
    pg.execute("VACUUM", "appdb")
    return pg


def _catalog(vault) -> sqlite3.Connection:
    db = sqlite3.connect(vault.path / "catalog.sqlite")
    db.row_factory = sqlite3.Row
    return db


def _counts(vault, point_id: str) -> dict:
    with _catalog(vault) as db:
        (text,) = db.execute("SELECT table_counts FROM recovery_points WHERE point_id = ?",
                             (point_id,)).fetchone()
    return json.loads(text)


def _postmasters_under(folder: Path) -> list[int]:
    """Pids of processes whose command line names a path inside ``folder``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) + "/" in cmdline and "postgres" in cmdline:
            found.append(int(proc.name))
    return found


def _assert_clean(scratch: Path) -> None:
    assert scratch.is_dir()
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("drill-keep")] == []
    assert _postmasters_under(scratch) == []


def _drill(vault, name: str, scratch: Path, *extra: str) -> dict:
    return vault.ok("drill", "run", name, "--scratch-root", scratch, *extra)


# --------------------------------------------------------------------------------------
# row counts at backup time
# --------------------------------------------------------------------------------------

def test_backup_records_row_counts(pg_template, area, vault):
    pg = _cluster(pg_template, area)
    vault.add_server("drilled", pg)
    point = vault.backup("drilled")
    counts = _counts(vault, point["point_id"])
    assert counts["format"] == 1 and counts["limit_bytes"] == stats.DEFAULT_LIMIT_BYTES
    assert counts["mark"]
    dbs = counts["databases"]
    assert set(dbs) == {"postgres", "appdb", "closed"}  # template1 is not counted
    assert dbs["postgres"]["tables"] == {"public.ledger": 10}
    app = dbs["appdb"]
    assert app["tables"] == {"public.plain": 1234, "Odd Schema.Mixed.Case": 7,
                             "public.parted_a": 150, "public.parted_b": 150}
    assert app["not_counted"] == {} and app["changed"] is False
    assert set(app["filenodes"]) == set(app["tables"])
    assert "error" in dbs["closed"] and "not currently accepting" in dbs["closed"]["error"]
    # a differential records them too
    pg.execute("INSERT INTO ledger VALUES (11, 'y')")
    diff = vault.backup("drilled", "--type", "diff")
    assert _counts(vault, diff["point_id"])["databases"]["postgres"]["tables"] == {
        "public.ledger": 11}


def test_counts_know_what_changed_after_the_mark(pg_template, area):
    """A commit between the mark and the count marks the database changed; a rollback or
    nothing does not; a transaction running at the mark and committed before the count
    does; tables over the cap are not counted."""
    pg = new_cluster(pg_template, area, "marks")
    pg.execute("CREATE TABLE t (id int)")
    pg.execute("INSERT INTO t SELECT generate_series(1, 100)")
    conns = partial(connect, pg.port, str(pg.sockdir))

    def counted(mark, **kw) -> dict:
        return stats.table_counts(conns, ["postgres"], mark, **kw)["databases"]["postgres"]

    quiet = counted(stats.xact_mark(conns))
    assert quiet["changed"] is False and quiet["tables"] == {"public.t": 100}

    mark = stats.xact_mark(conns)
    with pg.connect() as conn:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("ROLLBACK")
    assert counted(mark)["changed"] is False

    mark = stats.xact_mark(conns)
    pg.execute("INSERT INTO t VALUES (101)")
    assert counted(mark)["changed"] is True

    with pg.connect() as running:
        running.execute("BEGIN")
        running.execute("INSERT INTO t VALUES (102)")  # has an xid, runs across the mark
        mark = stats.xact_mark(conns)
        running.execute("COMMIT")
    assert counted(mark)["changed"] is True
    assert counted(None)["changed"] is True  # no mark: unknown counts as changed

    capped = counted(stats.xact_mark(conns), limit_bytes=0)
    assert capped["tables"] == {} and "over the 0-byte cap" in capped["not_counted"]["public.t"]


def test_a_differential_keeps_the_counts_nothing_committed_since(pg_template, area, vault):
    """With no commit in the instance since an earlier point's counts, a differential
    keeps them without connecting to the databases; one commit anywhere, or a transaction
    running at the earlier count that commits later, makes it count every database again;
    a drill checks the kept counts like any other."""
    pg = _cluster(pg_template, area)
    vault.add_server("drilled", pg)
    full = _counts(vault, vault.backup("drilled")["point_id"])["databases"]
    quiet = _counts(vault, vault.backup("drilled", "--type", "diff")["point_id"])["databases"]
    for db in ("postgres", "appdb"):
        assert quiet[db]["tables"] == full[db]["tables"], db
        assert quiet[db]["reused"] == sorted(full[db]["tables"])
        assert quiet[db]["counted_in"] == full[db]["snapshot"]
        assert quiet[db]["changed"] is False
        assert quiet[db]["position"] != full[db]["position"]  # taken now
    assert "error" in quiet["closed"]  # tried again: still takes no connections
    # the diff after it keeps them from that diff, the newest point with counts
    again = _counts(vault, vault.backup("drilled", "--type", "diff")["point_id"])["databases"]
    assert again["appdb"]["counted_in"] == full["appdb"]["snapshot"]
    assert again["appdb"]["snapshot"] == quiet["appdb"]["snapshot"]  # no xid since

    scratch = area / "scratch"
    out = _drill(vault, "drilled", scratch)
    assert out["state"] == "completed", out
    checks = {c["name"]: c for c in out["checks"]}
    assert checks["row_counts"]["ok"] and checks["row_counts"]["tables_compared"] == 5
    assert checks["row_counts"]["changed"] == []

    pg.execute("INSERT INTO ledger VALUES (11, 'y')")  # a commit in postgres only
    moved = _counts(vault, vault.backup("drilled", "--type", "diff")["point_id"])["databases"]
    assert moved["postgres"]["tables"] == {"public.ledger": 11}
    assert "reused" not in moved["postgres"] and "reused" not in moved["appdb"]

    with pg.connect("appdb") as running:  # runs across the next count, commits after it
        running.execute("BEGIN")
        running.execute("INSERT INTO plain VALUES (5000, 'late')")
        during = _counts(vault, vault.backup("drilled", "--type", "diff")["point_id"])
        running.execute("COMMIT")
    assert during["databases"]["appdb"]["tables"]["public.plain"] == 1234
    after = _counts(vault, vault.backup("drilled", "--type", "diff")["point_id"])["databases"]
    assert after["appdb"]["tables"]["public.plain"] == 1235
    assert "reused" not in after["appdb"]


def test_earlier_counts_are_kept_only_when_they_can_be_trusted(pg_template, area):
    """``still_true`` refuses counts taken with another cap, counts whose WAL position or
    snapshot lies ahead of the server's (an older copy of the data put back), and counts
    of a database that could not be counted."""
    pg = new_cluster(pg_template, area, "trusted")
    pg.execute("CREATE TABLE t (id int)")
    pg.execute("INSERT INTO t SELECT generate_series(1, 100)")
    conns = partial(connect, pg.port, str(pg.sockdir))
    earlier = stats.table_counts(conns, ["postgres"], stats.xact_mark(conns))
    kept = stats.still_true(conns, earlier, ["postgres"])
    assert kept["postgres"]["tables"] == {"public.t": 100}
    assert kept["postgres"]["reused"] == ["public.t"]
    assert stats.still_true(conns, earlier, ["postgres"], limit_bytes=0) == {}
    assert stats.still_true(conns, earlier, ["other"]) == {}

    def altered(**fields) -> dict:
        return {**earlier, "databases": {"postgres": {**earlier["databases"]["postgres"],
                                                      **fields}}}
    assert stats.still_true(conns, altered(position="FF/0"), ["postgres"]) == {}
    _, xmax, _ = earlier["databases"]["postgres"]["snapshot"].split(":")
    ahead = f"{int(xmax) + 1000}:{int(xmax) + 1000}:"
    assert stats.still_true(conns, altered(snapshot=ahead), ["postgres"]) == {}
    assert stats.still_true(conns, altered(error="no connections"), ["postgres"]) == {}
    pg.execute("DELETE FROM t WHERE id > 50")
    assert stats.still_true(conns, earlier, ["postgres"]) == {}


# --------------------------------------------------------------------------------------
# drills
# --------------------------------------------------------------------------------------

def test_drill_after_a_full_passes_and_cleans_up(pg_template, area, vault):
    pg = _cluster(pg_template, area)
    vault.add_server("drilled", pg)
    point = vault.backup("drilled")
    scratch = area / "scratch"
    out = _drill(vault, "drilled", scratch, "--amcheck")
    assert out["state"] == "completed", out
    assert out["point_id"] == point["point_id"] and out["failed_check"] is None
    assert out["rto_seconds"] > 0 and out["rpo_seconds"] >= 0
    started = datetime.fromisoformat(out["started"])
    assert out["rpo_seconds"] == round(
        (started - datetime.fromisoformat(point["end_time"])).total_seconds(), 3)
    checks = {c["name"]: c for c in out["checks"]}
    assert [c["name"] for c in out["checks"]] == ["restore", "connections", "databases",
                                                   "row_counts", "amcheck", "cleanup"]
    assert all(c["ok"] for c in out["checks"]), out["checks"]
    assert checks["restore"]["target"] == f"point {point['point_id']}"
    assert checks["restore"]["rto_seconds"] == out["rto_seconds"]
    assert sorted(checks["databases"]["answered"]) == ["appdb", "postgres", "template1"]
    assert checks["databases"]["not_checked"] == ["closed"]
    assert checks["row_counts"]["tables_compared"] == 5
    assert checks["row_counts"]["changed"] == []
    assert any("closed" in n for n in checks["row_counts"]["notes"])
    assert checks["amcheck"]["indexes_checked"] > 100  # the catalogs' and plain_pkey
    _assert_clean(scratch)

    listed = vault.ok("drills")
    assert [d["id"] for d in listed] == [out["id"]]
    assert listed[0]["state"] == "completed" and listed[0]["checks"] == out["checks"]
    assert vault.ok("drills", "--server", "drilled")[0]["rto_seconds"] == out["rto_seconds"]
    job = next(j for j in vault.jobs() if j["id"] == out["id"])
    assert job["type"] == "drill" and job["state"] == "completed"
    vault.fail("server.unknown", "drills", "--server", "nope")


def test_drill_restores_the_newest_instant_of_the_log_chain(pg_template, area, wal_vault):
    vault = wal_vault
    pg = _cluster(pg_template, area, "pitr")
    vault.add_server("pitr", pg)
    assert vault.ok("protect", "pitr", "--all", "--restart")["archiving_active"]
    full = vault.backup("pitr")
    pg.execute("INSERT INTO ledger SELECT g, 'later' FROM generate_series(11, 15) g")
    log = vault.backup("pitr", "--type", "log")
    scratch = area / "scratch"
    out = _drill(vault, "pitr", scratch)
    end = vault.chain("pitr")["log_ranges"][-1]
    checks = {c["name"]: c for c in out["checks"]}
    restore = checks["restore"]
    assert restore["target"].startswith("the end of the log chain")
    assert restore["base_point"] == full["point_id"] == out["point_id"]
    assert restore["restored_instant"] == end["end_time"] >= log["end_time"]
    started = datetime.fromisoformat(out["started"])
    assert out["rpo_seconds"] == round(
        (started - datetime.fromisoformat(end["end_time"])).total_seconds(), 3)
    assert restore["recovery_seconds"] > 0
    # The rows committed after the full are there: the ledger differs from its count,
    # as a change after the backup (a warning); the unchanged tables match.
    (changed,) = checks["row_counts"]["changed"]
    assert (changed["database"], changed["table"]) == ("postgres", "public.ledger")
    assert (changed["at_backup"], changed["restored"]) == (10, 15)
    assert changed["why"].startswith("changed after backup")
    assert out["state"] == "completed_with_warnings"
    assert checks["row_counts"]["tables_compared"] == 5
    # The full alone: the counts match exactly.
    alone = _drill(vault, "pitr", scratch, "--point", full["point_id"])
    assert alone["state"] == "completed" and alone["checks"][0]["target"] == \
        f"point {full['point_id']}"
    assert {c["name"]: c for c in alone["checks"]}["row_counts"]["changed"] == []
    _assert_clean(scratch)


def test_a_failed_check_fails_the_drill_and_still_cleans_up(pg_template, area, vault):
    pg = _cluster(pg_template, area)
    vault.add_server("drilled", pg)
    point = vault.backup("drilled")
    counts = _counts(vault, point["point_id"])
    counts["databases"]["appdb"]["tables"]["public.plain"] += 1  # the restore "lost" a row
    with _catalog(vault) as db:
        db.execute("UPDATE recovery_points SET table_counts = ? WHERE point_id = ?",
                   (json.dumps(counts), point["point_id"]))
        # A drill killed earlier left its scratch cluster running.
        db.execute("INSERT INTO jobs (id, type, server, state, start_time, pid) VALUES "
                   "('drill-killed', 'drill', 'drilled', 'running', '2020-01-01', 999999999)")
        db.execute("INSERT INTO drills (id, server, started, state) VALUES "
                   "('drill-killed', 'drilled', '2020-01-01', 'running')")
    scratch = area / "scratch"
    scratch.mkdir()
    killed = scratch / "drill-killed"
    killed.mkdir()
    chown_postgres(killed)
    leftover = new_cluster(pg_template, killed, "pgdata")
    assert leftover.running
    (scratch / "drill-keep-other-vault").mkdir()  # not this vault's: left alone

    out = vault.fail("drill.check_failed", "drill", "run", "drilled", "--scratch-root",
                     scratch)
    message = out["error"]["message"]
    assert "row_counts" in message and "appdb.public.plain: 1235 at backup, 1234 restored" \
        in message
    report = out["report"]
    assert report["state"] == "failed" and report["failed_check"] == "row_counts"
    assert report["error_code"] == "drill.check_failed"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["row_counts"]["tables_mismatched"] == 1
    assert checks["row_counts"]["mismatched"] == [{"database": "appdb",
                                                   "table": "public.plain",
                                                   "at_backup": 1235, "restored": 1234}]
    assert checks["cleanup"]["ok"] is True
    assert checks["cleanup"]["stale_removed"] == ["drill-killed"]
    assert not killed.exists()
    _assert_clean(scratch)
    assert (scratch / "drill-keep-other-vault").is_dir()

    row, killed_row = vault.ok("drills")
    assert row["state"] == "failed" and row["failed_check"] == "row_counts"
    assert row["rto_seconds"] is None
    assert killed_row["state"] == "failed" and killed_row["error_code"] == "job.abandoned"
    job = next(j for j in vault.jobs() if j["id"] == row["id"])
    assert job["state"] == "failed" and job["error_code"] == "drill.check_failed"
    assert "row_counts" in job["error_message"]


def test_refusals(pg_template, area, vault):
    pg = new_cluster(pg_template, area, "empty")
    vault.add_server("empty", pg)
    vault.fail("drill.no_point", "drill", "run", "empty", "--scratch-root", area / "s")
    vault.fail("server.unknown", "drill", "run", "nope", "--scratch-root", area / "s")
    vault.backup("empty")
    vault.fail("point.unknown", "drill", "run", "empty", "--point", "nope",
               "--scratch-root", area / "s")
    link = area / "link"
    link.symlink_to(area)
    out = vault.fail("drill.scratch_unsafe", "drill", "run", "empty", "--scratch-root", link)
    assert "not a plain folder" in out["error"]["message"]
    assert vault.ok("drills") == []


def _children(pid: int) -> list[str]:
    """The command lines of a process's children."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                found.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
                             .decode())
    return found


def _interrupted_mid_drill(vault, scratch: Path) -> subprocess.Popen | None:
    """Start a drill and press Ctrl-C while its scratch cluster runs, before its cleanup;
    the drill (its process), or None when it got past that point first. The process is
    frozen (SIGSTOP) while the test looks: on a busy machine a drill of a second may
    otherwise end between the look and the signal."""
    proc = vault.popen("drill", "run", "drilled", "--scratch-root", scratch, "--amcheck",
                       "--json")
    deadline = time.monotonic() + 300
    while not list(scratch.glob("drill-*/pgdata/postmaster.pid")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        mid = (list(scratch.glob("drill-*/pgdata/postmaster.pid"))
               and not any(" stop" in c for c in _children(proc.pid)))
        if mid:
            os.kill(proc.pid, signal.SIGINT)  # pending: delivered when it runs again
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    if mid:
        return proc
    proc.communicate(timeout=300)
    for row in vault.ok("drills"):
        assert row["state"] == "completed", row
    return None


def test_ctrl_c_stops_and_removes_the_scratch_cluster(pg_template, area, vault):
    pg = _cluster(pg_template, area)
    pg.execute("CREATE TABLE wide AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g",
               "appdb")
    vault.add_server("drilled", pg)
    vault.backup("drilled")
    scratch = area / "scratch"
    for _attempt in range(3):
        proc = _interrupted_mid_drill(vault, scratch)
        if proc is not None:
            break
    else:
        raise AssertionError("three drills ended before they could be interrupted")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout + stderr
    _assert_clean(scratch)
    (row,) = [r for r in vault.ok("drills") if r["state"] != "completed"]
    assert row["state"] == "failed" and row["error_code"] == "job.interrupted"
    assert {c["name"]: c for c in row["checks"]}["cleanup"]["ok"] is True


def test_a_count_of_a_database_that_changed_during_backup_is_a_warning(pg_template, area,
                                                                       vault):
    pg = _cluster(pg_template, area)
    vault.add_server("drilled", pg)
    point = vault.backup("drilled")
    counts = _counts(vault, point["point_id"])
    counts["databases"]["appdb"]["tables"]["public.plain"] += 1
    counts["databases"]["appdb"]["changed"] = True  # as if a commit came after the stop
    with _catalog(vault) as db:
        db.execute("UPDATE recovery_points SET table_counts = ? WHERE point_id = ?",
                   (json.dumps(counts), point["point_id"]))
    out = _drill(vault, "drilled", area / "scratch")
    assert out["state"] == "completed_with_warnings" and out["failed_check"] is None
    (changed,) = {c["name"]: c for c in out["checks"]}["row_counts"]["changed"]
    assert changed["table"] == "public.plain" and changed["why"].startswith(
        "changed during backup")
    job = next(j for j in vault.jobs() if j["id"] == out["id"])
    assert job["state"] == "completed_with_warnings"
