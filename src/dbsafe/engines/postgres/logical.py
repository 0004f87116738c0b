"""Copying one database between two running servers: pg_dump and pg_restore, in parallel.

Used by the single-database restore: the database is recovered in a staging cluster, then
copied into the live target under a new name. The directory format with ``-j`` dumps and
loads several tables at once; the target's own (newer or equal) programs are used, since
pg_dump reads older servers but not newer ones. Owners and grants are not copied
(``--no-owner --no-privileges``): the target may not have the source's roles. Both programs
run as the target cluster's OS user (never as root), with an allow-listed environment.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.client import default_user
from dbsafe.engines.postgres.cluster import run_as_owner

if TYPE_CHECKING:
    import psycopg


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() \
        is not None


def create_like(source: psycopg.Connection, source_db: str, target: psycopg.Connection,
                new_name: str) -> None:
    """An empty database on the target with the source database's encoding and locale."""
    from psycopg import sql

    encoding, collate, ctype = source.execute(
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
        "WHERE datname = %s", (source_db,)).fetchone()
    target.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} "
                           "LC_CTYPE {}").format(sql.Identifier(new_name), sql.Literal(encoding),
                                                 sql.Literal(collate), sql.Literal(ctype)))


def drop(conn: psycopg.Connection, name: str) -> None:
    """Drop a database even while sessions use it (``WITH (FORCE)``, PostgreSQL 13+; on 12
    new connections are refused first, then the sessions ended, as FORCE does)."""
    from psycopg import sql

    if conn.info.server_version >= 130000:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        return
    if not database_exists(conn, name):
        return
    conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(
        sql.Identifier(name)))
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def rename(conn: psycopg.Connection, old: str, new: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old),
                                                                  sql.Identifier(new)))


def _run(owner: str, argv: list[str], what: str) -> None:
    proc = run_as_owner(owner, argv, client=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise DbsafeError("restore.copy_failed", step=what,
                          reason=lines[-1] if lines else f"exit {proc.returncode}")


def _conninfo(endpoint: tuple[str, int], dbname: str) -> str:
    """``--dbname`` as a connection string: a database name is then never read as an option
    (``-x``) or as a connection string of its own (``host=... dbname=...``)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo("", host=endpoint[0], port=endpoint[1], user=default_user(),
                         dbname=dbname)


def copy_database(bin_dir: str, source: tuple[str, int], source_db: str,
                  target: tuple[str, int], target_db: str, jobs: int, workdir: Path,
                  owner: str) -> None:
    """Dump ``source_db`` from (host, port) ``source`` and load it into ``target_db``, both
    programs run as ``owner`` (the target cluster's), the dump in ``workdir/dump``, a
    folder made for that user."""
    dump = workdir / "dump"
    dump.mkdir(mode=0o700)
    user = pwd.getpwnam(owner)
    os.chown(dump, user.pw_uid, user.pw_gid, follow_symlinks=False)
    _run(owner, [str(Path(bin_dir) / "pg_dump"), f"--dbname={_conninfo(source, source_db)}",
                 "-Fd", "-j", str(jobs), "-Z", "0", "-f", str(dump)], "pg_dump")
    _run(owner, [str(Path(bin_dir) / "pg_restore"), f"--dbname={_conninfo(target, target_db)}",
                 "-j", str(jobs), "--no-owner", "--no-privileges", "--exit-on-error",
                 str(dump)], "pg_restore")
