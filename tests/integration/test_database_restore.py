"""Per-database protection and single-database restore into a live server."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    Pg,
    Vault,
    chown_postgres,
    free_port,
    make_area,
    make_vault,
    new_cluster,
    remove_area,
    restored,
)

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
    manifest = vault.repository().load_manifest_whole(full["point_id"])
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
                   area / "r", "--port", str(free_port()), "--start")
    assert out["databases_left_out"] == ["skip"] and out["databases_dropped"] == ["skip"]
    got = restored(area / "r", out["port"])
    assert got.scalar("SELECT count(*) FROM t", "keep") == 20000
    assert got.scalar("SELECT count(*) FROM pg_database WHERE datname = 'skip'") == 0
    got.execute("CREATE DATABASE fresh")  # from template1, restored whole
    assert got.scalar("SELECT count(*) FROM pg_class", "fresh") > 0
    # a selective restore of one database of a point that holds several
    out = vault.ok("restore", "src", "--point", full["point_id"], "--db", "keep",
                   "--to-pgdata", area / "only-keep", "--port", str(free_port()),
                   "--start")
    assert "ro" in out["databases_left_out"] and "keep" not in out["databases_left_out"]
    got = restored(area / "only-keep", out["port"])
    assert got.scalar("SELECT count(*) FROM t", "keep") == 20000


# --- owners, grants and settings; where the copy is staged -----------------------------

# roles of the source; the target has all but ``ghost``
SOURCE_ROLES = ("app_owner", "app_reader", "ghost")
OWNED_SETUP = [
    "CREATE SCHEMA s AUTHORIZATION app_owner",
    "CREATE TABLE s.t (id int PRIMARY KEY, v text)",
    "ALTER TABLE s.t OWNER TO app_owner",
    "INSERT INTO s.t SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
    "COMMENT ON TABLE s.t IS 'the t table'",
    "COMMENT ON COLUMN s.t.v IS 'a hash'",
    "GRANT USAGE ON SCHEMA s TO app_reader, ghost",
    "GRANT SELECT ON s.t TO app_reader",
    "GRANT SELECT, INSERT ON s.t TO ghost",
    "CREATE TABLE s.g (id int)",
    "ALTER TABLE s.g OWNER TO ghost",
    "INSERT INTO s.g VALUES (1), (2)",
    "ALTER TABLE s.t ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY readers ON s.t TO app_reader USING (id < 100)",
    "CREATE POLICY ghosts ON s.t TO ghost USING (true)",
    "ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA s GRANT SELECT ON TABLES TO "
    "app_reader",
    "CREATE TABLE s.far (id int) TABLESPACE far",
    "INSERT INTO s.far SELECT generate_series(1, 100)",
]
DATABASE_SETUP = [
    "ALTER DATABASE app OWNER TO app_owner",
    "COMMENT ON DATABASE app IS 'the app, as it was'",
    "REVOKE ALL ON DATABASE app FROM PUBLIC",
    "GRANT CONNECT ON DATABASE app TO app_reader, ghost",
    "ALTER DATABASE app SET work_mem = '7MB'",
    "ALTER DATABASE app SET search_path = 's', public",
    "ALTER ROLE app_reader IN DATABASE app SET statement_timeout = '42s'",
    "ALTER ROLE ghost IN DATABASE app SET statement_timeout = '43s'",
    "ALTER DATABASE app SET default_transaction_read_only = on",  # last: it applies to the load
]


@dataclass
class Copying:
    area: Path
    vault: Vault
    src: Pg
    tgt: Pg
    point: str


@pytest.fixture(scope="module")
def copying(pg_template, cli_env) -> Iterator[Copying]:
    """A source whose database ``app`` has owners, grants, comments, a policy, a table in
    a tablespace and database-level settings, backed up once; a running target with every
    role of it but ``ghost``."""
    area = make_area("dbcopy-")
    try:
        src = new_cluster(pg_template, area, "src")
        tgt = new_cluster(pg_template, area, "tgt")
        for role in SOURCE_ROLES:
            src.execute(f"CREATE ROLE {role}")
        for role in SOURCE_ROLES[:2]:
            tgt.execute(f"CREATE ROLE {role}")
        (area / "far").mkdir()
        chown_postgres(area / "far")
        src.execute(f"CREATE TABLESPACE far LOCATION '{area / 'far'}'")
        src.execute("CREATE DATABASE app")
        for sql in OWNED_SETUP:
            src.execute(sql, "app")
        for sql in DATABASE_SETUP:
            src.execute(sql)
        vault = make_vault(cli_env, area / "vault")
        vault.add_server("src", src)
        vault.add_server("tgt", tgt)
        vault.ok("protect", "src", "--all", "--recovery-model", "simple")
        yield Copying(area, vault, src, tgt, vault.backup("src")["point_id"])
    finally:
        remove_area(area)


def _database_facts(pg: Pg, db: str) -> dict:
    with pg.connect(db) as conn:
        def one(sql: str) -> object:
            return conn.execute(sql).fetchone()[0]

        return {
            "owner": one("SELECT pg_get_userbyid(datdba) FROM pg_database "
                         "WHERE datname = current_database()"),
            "acl": one("SELECT datacl::text FROM pg_database WHERE datname = current_database()"),
            "comment": one("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                           "WHERE datname = current_database()"),
            "settings": dict(conn.execute(
                "SELECT coalesce(r.rolname, '*'), array_to_string(s.setconfig, ' | ') "
                "FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole "
                "WHERE s.setdatabase = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())").fetchall()),
            "tables": dict(conn.execute(
                "SELECT c.relname, pg_get_userbyid(c.relowner) || ' ' || "
                "coalesce(c.relacl::text, '-') FROM pg_class c "
                "WHERE c.relnamespace = 's'::regnamespace AND c.relkind = 'r'").fetchall()),
            "schema": one("SELECT pg_get_userbyid(nspowner) FROM pg_namespace "
                          "WHERE nspname = 's'"),
            "comments": (one("SELECT obj_description('s.t'::regclass, 'pg_class')"),
                         one("SELECT col_description('s.t'::regclass, 2)")),
            "policies": dict(conn.execute(
                "SELECT policyname, array_to_string(roles, ',') FROM pg_policies").fetchall()),
            "default_acl": one("SELECT array_agg(pg_get_userbyid(defaclrole) || ' ' || "
                               "defaclacl::text) FROM pg_default_acl"),
            "rows": one("SELECT (SELECT count(*) FROM s.t) + (SELECT count(*) FROM s.g) "
                        "+ (SELECT count(*) FROM s.far)"),
        }


def test_the_check_says_before_the_restore_which_roles_the_target_lacks(copying):
    """The restore's note is known before it starts: `--check` (the portal's Check) names
    the role the target lacks, as a warning of a check that passes; a target with every
    role says owners and grants will be kept."""
    c = copying
    checked = c.vault.ok("restore", "src", "--db", "app", "--point", c.point,
                         "--target-server", "tgt", "--as", "app_checked", "--check")
    roles = next(x for x in checked["checks"] if x["check"] == "roles")
    assert checked["ok"] and roles["ok"] and roles["warning"]
    assert "lacks ghost" in roles["message"] and "will belong to postgres" in roles["message"]
    into_itself = c.vault.ok("restore", "src", "--db", "app", "--point", c.point,
                             "--target-server", "src", "--as", "app_again", "--check")
    roles = next(x for x in into_itself["checks"] if x["check"] == "roles")
    assert roles["ok"] and not roles["warning"]
    assert "owners, grants, comments and database settings will be kept" in roles["message"]
    assert not any(x["warning"] for x in into_itself["checks"])


def test_owners_grants_and_settings_survive_and_what_a_missing_role_held_is_named(copying):
    """Restored into another running server, the database keeps its owner, privileges,
    comment and settings, its objects' owners, grants, comments and policies, for every
    role the target has; what named ``ghost`` (not a role of the target) is not kept, is
    owned by the role the target is loaded as, and is listed. The copy is staged next to
    the target's data directory, and that folder is gone afterwards."""
    c = copying
    out = c.vault.ok("restore", "src", "--db", "app", "--point", c.point,
                     "--target-server", "tgt", "--as", "app_copy")
    got = _database_facts(c.tgt, "app_copy")
    source = _database_facts(c.src, "app")
    # the database itself
    assert got["owner"] == source["owner"] == "app_owner"
    assert got["acl"] == "{app_owner=CTc/app_owner,app_reader=c/app_owner}"
    assert got["comment"] == source["comment"] == "the app, as it was"
    assert got["settings"] == {
        "*": "work_mem=7MB | search_path=s, public | default_transaction_read_only=on",
        "app_reader": "statement_timeout=42s"}
    # its objects
    assert got["schema"] == "app_owner" and got["comments"] == source["comments"]
    assert got["tables"]["t"] == \
        "app_owner {app_owner=arwdDxt/app_owner,app_reader=r/app_owner}"
    assert got["tables"]["g"] == "postgres -"          # ghost's table: the loader's
    assert got["tables"]["far"] == source["tables"]["far"]  # the target's own tablespace
    assert got["policies"] == {"readers": "app_reader"}
    assert got["default_acl"] == source["default_acl"] and got["default_acl"]
    assert got["rows"] == source["rows"] == 2102
    # what could not be kept, named
    assert out["roles_missing"] == ["ghost"]
    assert {(n["what"], n["object"]) for n in out["not_kept"]} == {
        ("owner", "table s.g"), ("privileges", "table s.t"), ("privileges", "schema s"),
        ("privileges", "database app_copy"), ("policy", "policy ghosts on table s.t"),
        ("settings", "database app_copy (statement_timeout=43s)")}
    assert {n["role"] for n in out["not_kept"]} == {"ghost"}
    assert "ghost" in out["note"] and "belongs to postgres" in out["note"]
    # staged on the target's file system, next to its data directory; removed
    staged = Path(out["staged_in"])
    assert staged.parent == c.tgt.pgdata.parent and staged.name.startswith("dbsafe-staging-")
    assert os.stat(staged.parent).st_dev == os.stat(c.tgt.pgdata).st_dev
    assert not staged.exists() and not list(c.area.glob("dbsafe-staging-*"))


def test_a_staging_file_system_too_small_is_refused_before_anything_is_written(
        copying, pg_template):
    """A target whose data directory's file system cannot hold the staged copy, the dump
    and the load: ``restore.no_space`` naming the folder, what is needed and what is free,
    before a job, a folder or a database is made."""
    c = copying
    small = c.area / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    tgt = None
    try:
        tgt = new_cluster(pg_template, small, "tgt")
        c.vault.add_server("small", tgt)
        before = sorted(p.name for p in small.iterdir())
        jobs = [j["id"] for j in c.vault.jobs()]
        out = c.vault.fail("restore.no_space", "restore", "src", "--db", "app", "--point",
                           c.point, "--target-server", "small", "--as", "app_copy")
        message = out["error"]["message"]
        need, free = map(int, re.search(r"needs about (\d+) bytes, (\d+) are free",
                                        message).groups())
        assert f"{small}, the file system of small's data directory" in message
        assert need > free > 0
        assert sorted(p.name for p in small.iterdir()) == before  # no staging folder
        assert [j["id"] for j in c.vault.jobs()] == jobs          # no job started
        assert not tgt.scalar("SELECT count(*) FROM pg_database WHERE datname = 'app_copy'")
    finally:
        if tgt is not None:
            tgt.stop("immediate")
        subprocess.run(["umount", "-l", str(small)], check=False)
