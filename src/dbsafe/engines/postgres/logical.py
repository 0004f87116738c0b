"""Copying one database between two running servers: pg_dump and pg_restore, in parallel.

Used by the single-database restore: the database is recovered in a staging cluster, then
copied into the live target under a new name. The directory format with ``-j`` dumps and
loads several tables at once; the target's own (newer or equal) programs are used, since
pg_dump reads older servers but not newer ones. Owners and grants are not copied
(``--no-owner --no-privileges``): the target may not have the source's roles.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.child_env import client_env
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.client import default_user

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
    from psycopg import sql

    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rename(conn: psycopg.Connection, old: str, new: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old),
                                                                  sql.Identifier(new)))


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=client_env())
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise DbsafeError("restore.copy_failed", step=what,
                          reason=lines[-1] if lines else f"exit {proc.returncode}")


def copy_database(bin_dir: str, source: tuple[str, int], source_db: str,
                  target: tuple[str, int], target_db: str, jobs: int, workdir: Path) -> None:
    """Dump ``source_db`` from (host, port) ``source`` and load it into ``target_db``."""
    bin_path = Path(bin_dir)
    user = default_user()
    dump = workdir / "dump"
    _run([str(bin_path / "pg_dump"), "-h", source[0], "-p", str(source[1]), "-U", user,
          "-Fd", "-j", str(jobs), "-Z", "0", "-f", str(dump), source_db], "pg_dump")
    _run([str(bin_path / "pg_restore"), "-h", target[0], "-p", str(target[1]), "-U", user,
          "-j", str(jobs), "--no-owner", "--no-privileges", "--exit-on-error", "-d", target_db,
          str(dump)], "pg_restore")
