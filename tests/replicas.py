"""Replica sets on this machine for the tests: a primary and standbys made with
pg_basebackup -R on other ports, failovers, and proof of which node a backup read.

Each node's data directory holds a file ``dbsafe_test_node`` naming the node. PostgreSQL
does not replicate it and a base backup copies it, so a point's manifest tells which data
directory the backup read; a WAL file record's ``server`` names the node whose pg_wal the
agent read the file from.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from types import SimpleNamespace

from conftest import PG_BIN, Pg, Vault, as_postgres, chown_postgres, free_port, new_cluster

MARKER = "dbsafe_test_node"
REGION = "West Europe"  # the test vaults' region
PRIMARY_SETTINGS = {"wal_level": "replica", "max_wal_senders": "10", "hot_standby": "on",
                    "wal_keep_size": "512MB"}


def mark(pg: Pg, node: str) -> None:
    path = pg.pgdata / MARKER
    path.write_text(node)
    chown_postgres(path)


def make_primary(template: Path, area: Path, name: str = "p1",
                 settings: dict[str, str] | None = None) -> Pg:
    pg = new_cluster(template, area, name, {**PRIMARY_SETTINGS, **(settings or {})})
    mark(pg, name)
    return pg


def make_standby(primary: Pg, area: Path, name: str, pgdata: Path | None = None,
                 port: int | None = None) -> Pg:
    """A streaming standby of ``primary`` (pg_basebackup -R), marked and started."""
    pgdata = pgdata or area / name
    if pgdata.exists():
        shutil.rmtree(pgdata)
    proc = as_postgres(basebackup_argv(str(primary.sockdir), primary.port, pgdata))
    assert proc.returncode == 0, proc.stderr
    standby = Pg(pgdata, port or free_port(), area, area / f"{name}.log")
    mark(standby, name)
    standby.start()
    wait_streaming(standby)
    return standby


def basebackup_argv(host: str, port: int, pgdata: Path) -> list[str]:
    """pg_basebackup of the primary at ``host`` (its socket folder, or its address from
    another simulated host) into ``pgdata``: -R makes it a standby of that primary, -X
    stream brings the WAL the copy needs."""
    return [str(PG_BIN / "pg_basebackup"), "-h", host, "-p", str(port), "-U", "postgres",
            "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast", "--no-sync"]


def wait_streaming(standby: Pg, timeout: float = 60) -> None:
    """Wait until ``standby`` streams; it may also be a simulated host's cluster
    (fleet/hosts.py's HostPg), whose psql answers in text: hence the str()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if str(standby.scalar("SELECT count(*) FROM pg_stat_wal_receiver "
                              "WHERE status = 'streaming'")) == "1":
            return
        time.sleep(0.1)
    raise AssertionError(f"standby {standby.pgdata} does not stream")


def wait_replayed(primary: Pg, standby: Pg, timeout: float = 60) -> None:
    lsn = primary.scalar("SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + timeout
    while standby.scalar("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", params=(lsn,)) \
            is not True:
        if time.monotonic() > deadline:
            raise AssertionError(f"standby {standby.pgdata} did not replay up to {lsn}")
        time.sleep(0.05)


def promote(pg: Pg) -> None:
    proc = as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pg.pgdata), "promote", "-w"])
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 60
    while pg.scalar("SELECT pg_is_in_recovery()"):
        assert time.monotonic() < deadline, "promotion did not finish"
        time.sleep(0.05)


def register(vault: Vault, name: str, pg: Pg, region: str | None = None) -> dict:
    args = ["server", "add", name, "--pgdata", pg.pgdata, "--port", pg.port]
    return vault.ok(*args, *(["--region", region] if region else []))


def protected_set(template: Path, area: Path, cli_env: dict[str, str],
                  standby_region: str = REGION, preference: str = "primary",
                  settings: dict[str, str] | None = None,
                  setup_sql: tuple[str, ...] = ()) -> SimpleNamespace:
    """A vault in REGION holding replica set ``rs``, protected with --all: primary p1
    (database ``app`` with table ``t`` of 1000 rows, then ``setup_sql`` run there) and its
    standby s1 in ``standby_region``. Its agent runs from ``area/run``."""
    env = {**cli_env, "DBSAFE_RUN_DIR": str(area / "run")}
    vault = Vault(area / "vault", env)
    vault.ok("vault", "init", "--region", REGION)
    p1 = make_primary(template, area, "p1", settings)
    p1.execute("CREATE DATABASE app")
    p1.execute("CREATE TABLE t (id int PRIMARY KEY, v text)", "app")
    p1.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g", "app")
    for sql in setup_sql:
        p1.execute(sql, "app")
    s1 = make_standby(p1, area, "s1")
    register(vault, "p1", p1)
    register(vault, "s1", s1)
    vault.ok("replicaset", "add", "rs", "--preference", preference)
    vault.ok("replicaset", "node", "add", "rs", "p1", "--region", REGION)
    shown = vault.ok("replicaset", "node", "add", "rs", "s1", "--region", standby_region)
    protected = vault.ok("protect", "rs", "--all", "--restart")
    assert protected["archiving_active"], protected
    wait_streaming(s1)
    return SimpleNamespace(vault=vault, p1=p1, s1=s1, sysid=shown["system_identifier"],
                           area=area, env=cli_env, template=template)


def node_read(vault: Vault, point_id: str) -> str:
    """The node whose data directory a base backup read (the marker file it copied). A
    differential reads a file only when its size or mtime changed: ``mark`` the nodes again
    before one."""
    repo = vault.repository()
    manifest = repo.load_manifest_whole(point_id)
    entry = next(f for f in manifest["files"] if f["path"] == MARKER)
    assert entry.get("blocks"), f"{point_id} did not read {MARKER} (taken from its base)"
    return b"".join(repo.read_block(bytes.fromhex(b)) for b in entry["blocks"]).decode()


def wal_taker(vault: Vault, system_identifier: str, segment: str) -> str:
    """The node whose pg_wal the agent read an archived WAL file from."""
    record = vault.repository().load_wal_record(system_identifier, segment)
    assert record is not None, f"{segment} is not in the vault"
    return record["server"]
