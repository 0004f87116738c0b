"""The host boundary: what the processes dbsafe starts receive, which programs it runs, and
what it reads as root from folders the ``postgres`` OS user writes.

One module setup (two clusters, one vault, the production server restarted by ``protect``,
one full backup), shared by the tests in order. The dbsafe command line runs with secrets in
its environment, as in production (``DBSAFE_PASSPHRASE``, the object stores' keys,
``PGPASSWORD``): none may reach a PostgreSQL server dbsafe starts, where any database
superuser reads them (``pg_read_file('/proc/self/environ')``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import secrets_guard
from conftest import (
    Pg,
    Vault,
    as_postgres,
    chown_postgres,
    free_port,
    make_area,
    make_vault,
    new_cluster,
    remove_area,
    restored,
)

from dbsafe.services.handle.vault_handle import Vault as VaultService

SECRETS = {
    "DBSAFE_PASSPHRASE": "hostboundary-passphrase-4711",
    "DBSAFE_SMTP_PASSWORD": "hostboundary-smtp-password-0815",
    "AWS_ACCESS_KEY_ID": "HOSTBOUNDARYKEYID0001",
    "AWS_SECRET_ACCESS_KEY": "hostboundary-aws-secret-key-2342",
    "AZURE_STORAGE_KEY": "hostboundary-azure-storage-key-1337",
    "PGPASSWORD": "hostboundary-pgpassword-9000",
}
SECRET_PREFIXES = ("DBSAFE_", "AWS_", "AZURE_")
# database names that pg_dump would read as a connection string, and as an option
CONNINFO_NAME = "host=127.0.0.1 dbname=postgres"
DASH_NAME = "-evil"


@dataclass
class Host:
    area: Path
    vault: Vault
    src: Pg
    tgt: Pg
    full: str  # a full backup's point id


def postmaster_environ(pgdata: Path) -> dict[str, str]:
    """The environment of the postmaster of ``pgdata`` (its pid from postmaster.pid)."""
    pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(v.split("=", 1) for v in raw.decode().split("\0") if "=" in v)


def assert_no_secrets(pgdata: Path) -> None:
    env = postmaster_environ(pgdata)
    leaked = sorted(k for k in env if k.startswith(SECRET_PREFIXES) or k == "PGPASSWORD")
    assert not leaked, f"the postmaster of {pgdata} holds {leaked}"
    assert not secrets_guard.leaks_in("\n".join(env.values()))
    assert env.get("PATH")  # it did get an environment: the allow-listed one


@pytest.fixture(scope="module")
def host(pg_template: Path, cli_env: dict[str, str]) -> Iterator[Host]:
    secrets_guard.register(*SECRETS.values())
    area = make_area("host-")
    try:
        src = new_cluster(pg_template, area, "src")
        tgt = new_cluster(pg_template, area, "tgt")
        for db, marker in ((CONNINFO_NAME, "conninfo"), (DASH_NAME, "dash")):
            with src.connect() as conn:
                conn.execute(f'CREATE DATABASE "{db}"')
            src.execute("CREATE TABLE marker (what text)", db)
            src.execute("INSERT INTO marker VALUES (%s)", db, (marker,))
        src.execute("CREATE TABLE marker (what text)")
        src.execute("INSERT INTO marker VALUES ('postgres')")
        env = {**cli_env, **SECRETS, "DBSAFE_RUN_DIR": str(area / "run")}
        vault = make_vault(env, area / "vault")
        vault.add_server("src", src)
        vault.add_server("tgt", tgt)
        vault.ok("protect", "src", "--all", "--restart")
        full = vault.backup("src")["point_id"]
        yield Host(area, vault, src, tgt, full)
    finally:
        remove_area(area)


def test_the_production_server_restarted_by_protect_has_no_secrets(host):
    assert_no_secrets(host.src.pgdata)


def test_a_restored_server_started_by_dbsafe_has_no_secrets(host):
    target = host.area / "restored"
    out = host.vault.ok("restore", "src", "--point", host.full, "--to-pgdata", target,
                        "--port", free_port(), "--start")
    pg = restored(target, out["port"])
    try:
        assert_no_secrets(target)
    finally:
        pg.stop("immediate")


@pytest.mark.parametrize("db", [CONNINFO_NAME, DASH_NAME], ids=["conninfo", "dash"])
def test_a_database_name_is_never_read_as_an_option_or_a_connection(host, db):
    """pg_dump and pg_restore get ``--dbname`` as a connection string: the database named
    ``host=127.0.0.1 dbname=postgres`` is dumped, not the staging server's postgres over
    TCP; ``-evil`` is a name, not an option."""
    new_name = f"copy of {db}"
    host.vault.ok("restore", "src", f"--db={db}", "--point", host.full,
                  "--target-server", "tgt", f"--as={new_name}")
    expected = "conninfo" if db == CONNINFO_NAME else "dash"
    assert host.tgt.execute("SELECT what FROM marker", new_name) == [(expected,)]


def _client(area: Path) -> Path:
    (client,) = (area / "run").glob("*/dbsafe-wal")
    return client


def test_planted_files_in_pg_wal_are_refused_and_archiving_goes_on(host):
    """The postgres user puts a FIFO and a link to /dev/zero in pg_wal, marked ready: the
    agent (root) refuses both at once, without holding the vault's writer lock (a backup
    runs meanwhile), and the next real WAL file is archived."""
    wal = host.src.pgdata / "pg_wal"
    fifo, link = "000000010000000A000000F0", "000000010000000A000000F1"
    planted = [wal / fifo, wal / link, wal / "archive_status" / f"{fifo}.ready",
               wal / "archive_status" / f"{link}.ready"]
    as_postgres(["mkfifo", str(wal / fifo)], check=True)
    as_postgres(["ln", "-s", "/dev/zero", str(wal / link)], check=True)
    for ready in planted[2:]:
        as_postgres(["touch", str(ready)], check=True)
    try:
        for name, what in ((fifo, "a FIFO"), (link, "symbolic link")):
            # the timeout only guards the run against a hang (a FIFO blocks an open)
            pushed = as_postgres([str(_client(host.area)), "push", f"pg_wal/{name}"],
                                 cwd=host.src.pgdata, timeout=120)
            assert pushed.returncode == 1 and what in pushed.stderr, pushed.stderr
        host.src.execute("CREATE TABLE after_planting AS SELECT 1 AS x")
        # a log backup switches WAL and waits until the agent stored it (with the writer
        # lock, which reading the FIFO used to hold forever, and a free archiving worker)
        log = host.vault.backup("src", "--type", "log")
        assert log["type"] == "log" and log["segments"] > 0
    finally:
        for path in planted:
            path.unlink(missing_ok=True)


def test_a_catalog_row_pointing_at_an_unsafe_bin_dir_is_refused_at_use(host):
    """Registered with the packaged folder, then the row changed (a shared catalog, or a
    postmaster started from a planted binary): nothing is run from that folder."""
    planted = host.area / "planted-bin"  # postgres's folder, like anything under /var/tmp
    planted.mkdir()
    marker = host.area / "planted-ran"
    for name in ("pg_ctl", "postgres", "pg_dump", "pg_restore"):
        (planted / name).write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")
        (planted / name).chmod(0o755)
    chown_postgres(planted, recursive=True)
    service = VaultService.open(host.vault.path)
    rows = {s["name"]: s for s in service.catalog.list_servers()}
    try:
        for name in ("src", "tgt"):
            service.catalog.update_instance(rows[name]["instance_id"], bin_dir=str(planted))
        restores = [j for j in host.vault.jobs() if j["type"] == "restore"]
        out = host.vault.fail("server.bin_dir_unsafe", "restore", "src", "--point", host.full,
                              "--to-pgdata", host.area / "refused", "--port", free_port(),
                              "--start")
        assert f"from {planted}: /var/tmp: the folder is writable" in out["error"]["message"]
        # refused before anything was written: no restore job, no target
        assert [j for j in host.vault.jobs() if j["type"] == "restore"] == restores
        assert not (host.area / "refused").exists()
        host.vault.fail("server.bin_dir_unsafe", "restore", "src", "--db", "postgres",
                        "--point", host.full, "--target-server", "tgt", "--as", "refused")
        assert "refused" not in [r[0] for r in host.tgt.execute(
            "SELECT datname FROM pg_database")]
        assert not list(host.area.glob("dbsafe-staging-*"))
    finally:
        for name in ("src", "tgt"):
            service.catalog.update_instance(rows[name]["instance_id"],
                                            bin_dir=rows[name]["bin_dir"])
        service.catalog.close()
    assert not marker.exists()


def test_registering_a_bin_dir_others_can_change_is_refused(host, cli_env):
    """Only `dbsafe server add --bin-dir` picks the folder (the API has no such field), and
    only a folder root alone can change."""
    other = make_vault({**cli_env}, host.area / "vault2")
    group_writable = Path("/var/lib") / f"dbsafe-test-gw-{os.getpid()}"
    theirs = Path("/var/lib") / f"dbsafe-test-theirs-{os.getpid()}"
    for folder in (group_writable, theirs):
        folder.mkdir()
        for name in ("pg_ctl", "postgres"):
            (folder / name).write_text("#!/bin/sh\nexit 0\n")
            (folder / name).chmod(0o755)
    group_writable.chmod(0o775)
    chown_postgres(theirs)
    try:
        for folder, why in ((group_writable, "writable by its group"),
                            (theirs, "owned by postgres")):
            out = other.fail("server.bin_dir_unsafe", "server", "add", "x", "--pgdata",
                             host.src.pgdata, "--port", host.src.port, "--bin-dir", folder)
            assert f"{folder}: the folder is {why}" in out["error"]["message"]
        assert other.ok("server", "list") == []
    finally:
        shutil.rmtree(group_writable)
        shutil.rmtree(theirs)
