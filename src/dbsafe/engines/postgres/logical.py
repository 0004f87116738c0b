"""Copying one database between two running servers: pg_dump and pg_restore, in parallel.

Used by the single-database restore: the database is recovered in a staging cluster, then
copied into the live target under a new name. The directory format with ``-j`` dumps and
loads several tables at once; the target's own (newer or equal) programs are used, since
pg_dump reads older servers but not newer ones. The copy is whole: ``--create`` carries
what lives outside the database's contents (its encoding and locale, owner, privileges,
comment, ``ALTER DATABASE … SET`` and ``ALTER ROLE … IN DATABASE … SET``), and owners and
grants are restored, by role name, unless the staged copy could not be made to fit the
target's roles (engines/postgres/db_roles.py): then ``--no-owner --no-privileges``.
Tablespaces are not (``--no-tablespaces``): the target's are its own. Both programs run as
the target cluster's OS user (never as root), with an allow-listed environment.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.client import connect, default_user
from dbsafe.engines.postgres.cluster import run_as_owner

if TYPE_CHECKING:
    import psycopg


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() \
        is not None


def rename_staged(port: int, host: str, old: str, new: str) -> None:
    """Rename database ``old`` of a staging cluster (dbsafe's own, disposable) to ``new``,
    connected to another database: template1, or template0 to rename template1."""
    via = "template1"
    if old == via:  # template0 takes connections once told to
        with connect(port, host, via) as conn:
            conn.execute("ALTER DATABASE template0 ALLOW_CONNECTIONS true")
        via = "template0"
    with connect(port, host, via) as conn:
        rename_idle(conn, old, new)


def rename_idle(conn: psycopg.Connection, old: str, new: str, tries: int = 50) -> None:
    """Rename ``old`` (of a server dbsafe runs for itself: a staging cluster) after ending
    the sessions in it, which PostgreSQL requires (autovacuum may start one meanwhile)."""
    from psycopg import errors

    for attempt in range(tries):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (old,))
        try:
            rename(conn, old, new)
            return
        except errors.ObjectInUse:
            if attempt == tries - 1:
                raise
            time.sleep(0.1)


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
    (``-x``) or as a connection string of its own (``host=... dbname=...``). Every session
    may write: a database whose settings say ``default_transaction_read_only`` (a setting
    the copy restores early) would otherwise refuse the rest of the load."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo("", host=endpoint[0], port=endpoint[1], user=default_user(),
                         dbname=dbname, options="-c default_transaction_read_only=off")


def copy_database(bin_dir: str, source: tuple[str, int], source_db: str,
                  target: tuple[str, int], jobs: int, dump: Path, owner: str,
                  keep_owners: bool = True) -> None:
    """Dump ``source_db`` from (host, port) ``source`` into folder ``dump`` (made for
    ``owner``) and load it into the server at ``target`` as a new database of the same
    name (``--create``: it must not exist there), both programs run as ``owner`` (the
    target cluster's). ``keep_owners`` false: objects are owned by the role loading them,
    and no privileges are granted."""
    _run(owner, [str(Path(bin_dir) / "pg_dump"), f"--dbname={_conninfo(source, source_db)}",
                 "--create", "-Fd", "-j", str(jobs), "-Z", "0", "-f", str(dump)], "pg_dump")
    drop_owners = [] if keep_owners else ["--no-owner", "--no-privileges"]
    _run(owner, [str(Path(bin_dir) / "pg_restore"), f"--dbname={_conninfo(target, 'postgres')}",
                 "--create", "--no-tablespaces", "-j", str(jobs), "--exit-on-error",
                 *drop_owners, str(dump)], "pg_restore")
