"""Per-database protection and single-database restore into a live server."""

from __future__ import annotations

import threading
import time

from conftest import Pg, new_cluster, restored

APP_SETUP = [
    "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric)",
    "INSERT INTO accounts SELECT g, md5(g::text), g * 10 FROM generate_series(1, 5000) g",
    "CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), v jsonb)",
    "INSERT INTO events (v) SELECT jsonb_build_object('g', g) FROM generate_series(1, 3000) g",
    "CREATE INDEX ON events (at)",
    "CREATE VIEW rich AS SELECT * FROM accounts WHERE balance > 40000",
]


def _tables(pg: Pg, db: str) -> dict[str, str]:
    return {k.split(".", 1)[1]: v for k, v in pg.table_checksums().items()
            if k.startswith(f"{db}.")}


class _Writer:
    """Keeps committing to a database until stopped (both servers keep taking writes)."""

    def __init__(self, pg: Pg, db: str) -> None:
        self.pg, self.db = pg, db
        self.stop = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.pg.connect(self.db) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS busy (id serial, at timestamptz "
                         "DEFAULT clock_timestamp())")
            while not self.stop.is_set():
                conn.execute("INSERT INTO busy DEFAULT VALUES")
                self.count += 1
                time.sleep(0.01)

    def __enter__(self) -> _Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)


def test_one_database_into_a_live_server(pg_template, area, wal_vault):
    vault = wal_vault
    src = new_cluster(pg_template, area, "src")
    tgt = new_cluster(pg_template, area, "tgt")
    src.execute("CREATE DATABASE app")
    for sql in APP_SETUP:
        src.execute(sql, "app")
    vault.add_server("src", src)
    vault.add_server("tgt", tgt)
    vault.ok("protect", "src", "--all", "--restart")
    vault.backup("src")
    src.execute("UPDATE accounts SET balance = balance + 1 WHERE id % 7 = 0", "app")
    src.execute("DELETE FROM events WHERE id % 5 = 0", "app")
    time.sleep(0.2)
    instant = src.scalar("SELECT clock_timestamp()")
    expected = _tables(src, "app")
    rich = src.scalar("SELECT count(*) FROM rich", "app")
    time.sleep(0.2)
    src.execute("TRUNCATE events", "app")  # the mistake after the instant
    src.execute("UPDATE accounts SET balance = 0", "app")
    vault.backup("src", "--type", "log")
    tgt.execute("CREATE DATABASE app_restored")  # a name clash
    with _Writer(src, "postgres") as w1, _Writer(tgt, "postgres") as w2:
        vault.fail("restore.database_exists", "restore", "src", "--db", "app", "--time",
                   instant.isoformat(), "--target-server", "tgt", "--as", "app_restored")
        out = vault.ok("restore", "src", "--db", "app", "--time", instant.isoformat(),
                       "--target-server", "tgt", "--as", "app_restored", "--overwrite")
        assert w1.count > 0 and w2.count > 0
    assert out["new_name"] == "app_restored" and out["recovery"]["paused"] is False
    assert _tables(tgt, "app_restored") == expected
    assert tgt.scalar("SELECT count(*) FROM rich", "app_restored") == rich > 0  # views too
    assert src.scalar("SELECT count(*) FROM events", "app") == 0  # source untouched
    # the overwritten server's chain restarts: its next scheduled diff or log is a full
    servers = {s["name"]: s for s in vault.ok("server", "list")}
    assert "app_restored was overwritten" in servers["tgt"]["next_backup_full_because"]
    assert servers["src"]["next_backup_full_because"] is None
    # no staging cluster is left behind
    assert not list(area.glob("dbsafe-staging-*"))
    # a restore of one database at an instant starts from a backup that holds it
    vault.fail("restore.database_not_in_chain", "restore", "src", "--db", "nope",
               "--time", instant.isoformat(), "--target-server", "tgt", "--as", "x")


def test_protection_per_database(pg_template, area, wal_vault):
    vault = wal_vault
    src = new_cluster(pg_template, area, "src")
    for db in ("keep", "skip"):
        src.execute(f"CREATE DATABASE {db}")
        src.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 20000) g", db)
    src.execute("CREATE DATABASE ro")
    src.execute("ALTER DATABASE ro SET default_transaction_read_only = on")
    vault.add_server("src", src)
    out = vault.ok("protect", "src", "--db", "keep", "--db", "postgres", "--db", "ro",
                   "--recovery-model", "full", "--restart")
    assert out["databases"] == ["keep", "postgres", "ro"]
    full = vault.backup("src")
    manifest = vault.repository().load_manifest(full["point_id"])
    listed = {d["name"]: d["included"] for d in manifest["databases"]}
    assert listed["keep"] and not listed["skip"] and "template0" not in listed
    assert listed["template1"]  # templates are always taken: CREATE DATABASE needs them
    skip_oid = src.scalar("SELECT oid FROM pg_database WHERE datname = 'skip'")
    assert {int(f["path"].split("/")[1]) for f in manifest["skipped"]} == {skip_oid}
    kept = {f["path"].rsplit("/", 1)[1] for f in manifest["files"]
            if f["path"].startswith(f"base/{skip_oid}/")}
    assert kept == {"PG_VERSION", "pg_filenode.map"}  # the folder stays a database
    assert [p["point_id"] for p in vault.ok("points", "src", "--db", "keep")["points"]] == \
        [full["point_id"]]
    assert vault.ok("points", "src", "--db", "skip")["points"] == []
    # read-only databases take fulls only
    vault.fail("backup.read_only_db", "backup", "src", "--type", "log", "--db", "ro")
    vault.fail("backup.read_only_db", "backup", "src", "--type", "diff", "--db", "ro")
    # the point restores the protected databases; the others, whose data it does not
    # hold, are dropped once the restored server runs
    out = vault.ok("restore", "src", "--point", full["point_id"], "--to-pgdata",
                   area / "r", "--port", str(src.port + 1000), "--start")
    assert out["databases_left_out"] == ["skip"] and out["databases_dropped"] == ["skip"]
    got = restored(area / "r", out["port"])
    assert got.scalar("SELECT count(*) FROM t", "keep") == 20000
    assert got.scalar("SELECT count(*) FROM pg_database WHERE datname = 'skip'") == 0
    got.execute("CREATE DATABASE fresh")  # from template1, restored whole
    assert got.scalar("SELECT count(*) FROM pg_class", "fresh") > 0
    # a selective restore of one database of a point that holds several
    out = vault.ok("restore", "src", "--point", full["point_id"], "--db", "keep",
                   "--to-pgdata", area / "only-keep", "--port", str(src.port + 1001),
                   "--start")
    assert "ro" in out["databases_left_out"] and "keep" not in out["databases_left_out"]
    got = restored(area / "only-keep", out["port"])
    assert got.scalar("SELECT count(*) FROM t", "keep") == 20000
