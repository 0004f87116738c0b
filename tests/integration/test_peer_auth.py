"""A stock Debian cluster driven by root: pg_hba.conf lets the owner in over the socket by
``peer`` authentication only, and dbsafe (root) talks to it as the data directory's owner
(engines/postgres/client.py). The cluster is made as ``pg_createcluster`` makes it: initdb
as postgres with ``--auth-local peer --auth-host scram-sha-256``."""

from __future__ import annotations

import os
import shutil
import threading

from conftest import PG_BIN, Pg, as_postgres, free_port, new_cluster

from dbsafe.engines.postgres import client


def psql(pg: Pg, sql: str, db: str = "postgres") -> str:
    """``sql`` through psql run as the postgres OS user (root itself is refused: peer)."""
    proc = as_postgres([str(PG_BIN / "psql"), "-h", str(pg.sockdir), "-p", str(pg.port),
                        "-U", "postgres", "-d", db, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-c", sql])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_a_pg_createcluster_cluster_driven_as_root(area, wal_vault):
    vault = wal_vault
    pgdata = area / "main"
    proc = as_postgres([str(PG_BIN / "initdb"), "--auth-local", "peer", "--auth-host",
                        "scram-sha-256", "-U", "postgres", "-E", "UTF8", "--locale", "C",
                        "--no-sync", "-D", str(pgdata)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write("\nfsync = off\n")
    hba = (pgdata / "pg_hba.conf").read_bytes()
    pg = Pg(pgdata=pgdata, port=free_port(), sockdir=area, log=area / "main.log")
    pg.start()
    psql(pg, "CREATE TABLE notes (id int PRIMARY KEY, body text); "
             "INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 300) g")

    added = vault.add_server("main", pg)
    assert added["pg_version"] == 15
    out = vault.ok("protect", "main", "--all", "--restart")
    assert out["recovery_model"] == "FULL" and out["archiving_active"] and out["restarted"]
    full = vault.backup("main", "--type", "full")
    psql(pg, "INSERT INTO notes VALUES (301, 'after the full')")
    log = vault.backup("main", "--type", "log")
    assert log["type"] == "log" and not log["warnings"], log

    for point, rows in ((full["point_id"], "300"), (log["point_id"], "301")):
        target = area / f"r-{rows}"
        out = vault.ok("restore", "main", "--point", point, "--to-pgdata", target,
                       "--port", free_port(), "--start")
        copy = Pg(pgdata=target, port=out["port"], sockdir=target)
        try:
            assert psql(copy, "SELECT count(*) FROM notes") == rows
            # the copy keeps the source's rules: peer, which root alone cannot pass
            assert (target / "pg_hba.conf").read_bytes() == hba
        finally:
            copy.stop()
        shutil.rmtree(target)
    assert (pgdata / "pg_hba.conf").read_bytes() == hba  # never changed


def test_the_owner_id_is_the_connecting_thread_s_alone(area, pg_template):
    """While one thread connects as the owner, the others stay root; afterwards the
    connection serves any thread like another."""
    from dbsafe.engines.postgres._threadcred import set_thread_euid

    owner = os.stat(area).st_uid
    assert owner != 0
    seen: dict[str, int] = {}
    switched, looked = threading.Event(), threading.Event()

    def as_owner() -> None:
        set_thread_euid(owner)
        seen["thread"] = os.geteuid()
        switched.set()
        looked.wait(10)
        set_thread_euid(0)
        seen["thread after"] = os.geteuid()

    thread = threading.Thread(target=as_owner)
    thread.start()
    assert switched.wait(10)
    seen["main meanwhile"] = os.geteuid()
    looked.set()
    thread.join()
    assert seen == {"thread": owner, "main meanwhile": 0, "thread after": 0}

    pg = new_cluster(pg_template, area, "pg")
    with client._connect_as(owner, {"host": str(area), "port": pg.port, "dbname": "postgres",
                                    "user": "postgres", "autocommit": True}) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert os.geteuid() == 0
