"""Log backups, the log chain and point-in-time restore, on real clusters with real WAL
archiving through the dbsafe agent."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from conftest import Pg, free_port, new_cluster, restored

LEDGER = "CREATE TABLE ledger (id int PRIMARY KEY, note text)"


def _protected(pg_template, area, vault, name="pitr", settings=None) -> Pg:
    pg = new_cluster(pg_template, area, name,
                     settings={"track_commit_timestamp": "on", **(settings or {})})
    vault.add_server(name, pg)
    out = vault.ok("protect", name, "--all", "--restart")
    assert out["recovery_model"] == "FULL" and out["archiving_active"], out
    assert out["restarted"] is True
    return pg


def _commit_rows(pg: Pg, first: int, count: int, pause: float = 0.02) -> None:
    for i in range(first, first + count):
        pg.execute("INSERT INTO ledger VALUES (%s, md5(%s::text))", params=(i, i))
        time.sleep(pause)


def _commit_times(pg: Pg) -> dict[int, datetime]:
    return {i: t for i, t in pg.execute(
        "SELECT id, pg_xact_commit_timestamp(xmin) FROM ledger ORDER BY id")}


def _ids(pg: Pg) -> list[int]:
    return [r[0] for r in pg.execute("SELECT id FROM ledger ORDER BY id")]


def test_point_in_time_drill(pg_template, area, wal_vault):
    """Rows committed while fulls and log backups run; restores to random instants hold
    exactly the rows committed at or before each instant."""
    vault = wal_vault
    pg = _protected(pg_template, area, vault)
    pg.execute(LEDGER)
    _commit_rows(pg, 1, 20)
    first_full = vault.backup("pitr", "--type", "full")
    _commit_rows(pg, 21, 30)
    log1 = vault.backup("pitr", "--type", "log")
    assert log1["type"] == "log" and not log1["warnings"]
    pg.execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS v "
               "FROM generate_series(1, 60000) g")  # a few more segments
    _commit_rows(pg, 51, 15)
    assert vault.backup("pitr", "--type", "diff")["type"] == "diff"
    _commit_rows(pg, 66, 15)
    vault.backup("pitr", "--type", "full")
    _commit_rows(pg, 81, 15)
    vault.backup("pitr", "--type", "diff")
    _commit_rows(pg, 96, 15)
    vault.backup("pitr", "--type", "log")
    times = _commit_times(pg)

    chain = vault.chain("pitr")
    assert chain["gaps"] == []
    (rng,) = chain["log_ranges"]
    start, end = datetime.fromisoformat(rng["start_time"]), datetime.fromisoformat(rng["end_time"])
    # the range starts with the first full (not a wall-clock margin after the first commit:
    # a loaded machine may take seconds to start the backup)
    assert start <= datetime.fromisoformat(first_full["end_time"]) and end >= times[110]
    # Instants between commits inside the range, plus one exactly on a commit.
    inside = sorted(t for t in times.values() if start < t < end)
    rnd = random.Random(7)
    pairs = list(zip(inside, inside[1:], strict=False))
    instants = [a + (b - a) / 2 for a, b in rnd.sample(pairs, 4)]
    instants.append(rnd.choice(inside[:-1]))
    for n, instant in enumerate(sorted(instants)):
        target = area / f"r{n}"
        out = vault.ok("restore", "pitr", "--time", instant.isoformat(), "--to-pgdata", target)
        assert out["recovery"]["paused"] is False
        got = restored(target, out["port"])
        got.start()
        try:
            expected = [i for i, t in times.items() if t <= instant]
            assert _ids(got) == expected, instant
            assert got.scalar("SELECT pg_is_in_recovery()") is False
            assert got.scalar("SELECT current_setting('archive_mode')") == "off"
        finally:
            got.stop()


def test_no_recovery_pauses_at_the_target(pg_template, area, wal_vault):
    vault = wal_vault
    pg = _protected(pg_template, area, vault)
    pg.execute(LEDGER)
    vault.backup("pitr")
    _commit_rows(pg, 1, 10)
    pg.execute("SELECT pg_create_restore_point('before_mistake')")
    pg.execute("DELETE FROM ledger")  # the mistake
    log = vault.backup("pitr", "--type", "log")
    target = area / "paused"
    out = vault.ok("restore", "pitr", "--restore-point", "before_mistake", "--no-recovery",
                   "--to-pgdata", target)
    assert out["recovery"]["paused"] is True and out["started"] is True
    got = restored(target, out["port"])
    assert got.scalar("SELECT pg_is_in_recovery()") is True
    assert got.scalar("SELECT pg_get_wal_replay_pause_state()") == "paused"
    assert _ids(got) == list(range(1, 11))
    got.execute("SELECT pg_promote()")
    deadline = time.monotonic() + 60
    while got.scalar("SELECT pg_is_in_recovery()") and time.monotonic() < deadline:
        time.sleep(0.1)
    got.execute("INSERT INTO ledger VALUES (99, 'after promotion')")
    assert _ids(got)[-1] == 99
    got.stop()
    # A log point restores to its end: everything, including the mistake.
    whole = vault.ok("restore", "pitr", "--point", log["point_id"], "--to-pgdata",
                     area / "at-log", "--port", str(free_port()), "--start")
    assert _ids(restored(area / "at-log", whole["port"])) == []


def test_refusals(pg_template, area, wal_vault):
    vault = wal_vault
    pg = new_cluster(pg_template, area, "plain")
    vault.add_server("plain", pg)
    vault.ok("protect", "plain", "--all", "--recovery-model", "simple")
    vault.backup("plain")
    vault.fail("backup.log_simple", "backup", "plain", "--type", "log")
    vault.fail("restore.simple_model", "restore", "plain", "--time",
               datetime.now(UTC).isoformat(), "--to-pgdata", area / "x")
    vault.fail("protect.no_databases", "protect", "plain")
    vault.fail("protect.unknown_database", "protect", "plain", "--db", "nope")

    other = new_cluster(pg_template, area, "other", settings={
        "archive_mode": "on",
        "archive_command": "'pgbackrest --stanza=main archive-push %p'"})
    vault.add_server("other", other)
    out = vault.fail("protect.archive_owned", "protect", "other", "--all")
    assert "pgBackRest" in out["error"]["message"]
    assert "pgbackrest" in other.scalar("SELECT current_setting('archive_command')")

    pg2 = _protected(pg_template, area, vault, "full")
    pg2.execute(LEDGER)
    vault.backup("full")
    _commit_rows(pg2, 1, 5)
    vault.backup("full", "--type", "log")
    (rng,) = vault.chain("full")["log_ranges"]
    late = datetime.fromisoformat(rng["end_time"]) + timedelta(hours=1)
    out = vault.fail("restore.outside_chain", "restore", "full", "--time", late.isoformat(),
                     "--to-pgdata", area / "y")
    assert rng["start_time"] in out["error"]["message"]
    early = datetime.fromisoformat(rng["start_time"]) - timedelta(hours=1)
    vault.fail("restore.outside_chain", "restore", "full", "--time", early.isoformat(),
               "--to-pgdata", area / "y")
    assert not (area / "y").exists()


def test_gap_is_reported(pg_template, area, wal_vault):
    vault = wal_vault
    pg = _protected(pg_template, area, vault)
    pg.execute(LEDGER)
    vault.backup("pitr")
    for i in range(4):
        _commit_rows(pg, i * 10 + 1, 3, pause=0)
        pg.execute("SELECT pg_switch_wal()")
    vault.backup("pitr", "--type", "log")
    chain = vault.chain("pitr")
    segs = sorted((vault.path / "wal").rglob("0000000100000000000000*"))
    lost = segs[-3]  # a segment in the middle of the chain goes missing
    lost.unlink()
    import sqlite3

    with sqlite3.connect(vault.path / "catalog.sqlite") as db:
        db.execute("DELETE FROM wal_files WHERE name = ?", (lost.name,))
    chain = vault.chain("pitr")
    (gap,) = chain["gaps"]
    assert gap["first_missing"] == lost.name and gap["missing_segments"] == 1
    assert gap["start_time"] and gap["end_time"] and gap["start_time"] < gap["end_time"]
    _commit_rows(pg, 100, 2, pause=0)
    out = vault.backup("pitr", "--type", "log")
    assert out["warnings"] and out["warnings"][0]["code"] == "chain.broken"
    jobs = [j for j in vault.jobs() if j["id"] == out["job_id"]]
    assert jobs[0]["state"] == "completed_with_warnings"


def test_log_backup_times_out_when_the_agent_is_down(pg_template, area, wal_vault):
    vault = wal_vault
    _protected(pg_template, area, vault)
    vault.ok("agent", "stop")
    out = vault.fail("backup.log_timeout", "backup", "pitr", "--type", "log", "--wait", "3")
    assert "segment" in out["error"]["message"]
    vault.ok("agent", "start")
    assert vault.backup("pitr", "--type", "log")["type"] == "log"


def test_points_json_shape(pg_template, area, wal_vault):
    vault = wal_vault
    _protected(pg_template, area, vault)
    vault.backup("pitr")
    vault.backup("pitr", "--type", "log")
    out = vault.chain("pitr")
    assert set(out) >= {"points", "log_ranges", "gaps", "recovery_model"}
    (rng,) = out["log_ranges"]
    assert set(rng) >= {"start_time", "end_time", "start_lsn", "end_lsn", "timeline"}
    assert [p["type"] for p in out["points"]] == ["full", "log"]


def test_chain_continues_after_a_promotion(pg_template, area, wal_vault):
    """A standby promoted after its primary stopped: the history file is archived, the new
    timeline's WAL joins the same chain, and instants before and after the promotion
    restore (the base is the old primary's full)."""
    from conftest import PG_BIN, as_postgres, free_port

    vault = wal_vault
    primary = _protected(pg_template, area, vault, "primary")
    primary.execute(LEDGER)
    _commit_rows(primary, 1, 10)
    vault.backup("primary")
    standby_dir = area / "standby"
    proc = as_postgres([str(PG_BIN / "pg_basebackup"), "-h", str(primary.sockdir), "-p",
                        str(primary.port), "-U", "postgres", "-D", str(standby_dir), "-R",
                        "-X", "stream", "--no-sync"])
    assert proc.returncode == 0, proc.stderr
    standby = Pg(standby_dir, free_port(), area, area / "standby.log")
    standby.start()
    vault.add_server("standby", standby)
    _commit_rows(primary, 11, 10)
    lsn = primary.scalar("SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + 60
    while standby.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", params=(lsn,)) \
            is not True and time.monotonic() < deadline:
        time.sleep(0.1)
    before = _commit_times(primary)
    primary.stop()
    assert as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(standby_dir), "promote", "-w"]) \
        .returncode == 0
    vault.ok("protect", "standby", "--all")  # same archive_command: nothing to change
    _commit_rows(standby, 21, 10)
    log = vault.backup("standby", "--type", "log")
    assert log["timeline"] == 2 and not log["warnings"], log
    assert (vault.path / "wal").rglob("00000002.history")
    chain = vault.chain("standby")
    assert chain["gaps"] == []
    assert [r["timeline"] for r in chain["log_ranges"]] == [1, 2]
    after = _commit_times(standby)
    for n, instant in enumerate([before[15] + (before[16] - before[15]) / 2,
                                 after[25] + (after[26] - after[25]) / 2]):
        out = vault.ok("restore", "standby", "--time", instant.isoformat(), "--to-pgdata",
                       area / f"t{n}")
        got = restored(area / f"t{n}", out["port"])
        got.start()
        try:
            assert _ids(got) == [i for i, t in after.items() if t <= instant]
        finally:
            got.stop()
