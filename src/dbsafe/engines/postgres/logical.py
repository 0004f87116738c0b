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

Programs newer than the target server (a bin folder whose client tools come from another
package) write a ``CREATE DATABASE`` the older server rejects (``LOCALE_PROVIDER``, 15+):
then dbsafe creates the database itself, with the source's encoding, locale and owner in
the target's own syntax, and pg_restore loads everything else (``--create`` with the
``DATABASE`` entry left out of its list: the database's properties, privileges and
comment still come along).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import open_dir, read_regular, write_new
from dbsafe.engines.postgres.client import connect, default_user, one_row
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


def run_client(owner: str, argv: list[str], what: str) -> str:
    """Run a client program as ``owner``; its output, or ``restore.copy_failed``."""
    proc = run_as_owner(owner, argv, client=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise DbsafeError("restore.copy_failed", step=what,
                          reason=lines[-1] if lines else f"exit {proc.returncode}")
    return proc.stdout


def conninfo(endpoint: tuple[str, int], dbname: str) -> str:
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
    pg_restore = str(Path(bin_dir) / "pg_restore")
    run_client(owner, [str(Path(bin_dir) / "pg_dump"), f"--dbname={conninfo(source, source_db)}",
                 "--create", "-Fd", "-j", str(jobs), "-Z", "0", "-f", str(dump)], "pg_dump")
    drop_owners = [] if keep_owners else ["--no-owner", "--no-privileges"]
    with connect(target[1], target[0]) as tconn:
        target_major = tconn.info.server_version // 10000
    if program_major(owner, pg_restore) <= target_major:
        run_client(owner, [pg_restore, "--create", "--no-tablespaces", "-j", str(jobs),
                     "--exit-on-error", *drop_owners, f"--dbname={conninfo(target, 'postgres')}",
                     str(dump)], "pg_restore")
        return
    _load_into_older(bin_dir, source, source_db, target, jobs, dump, owner, drop_owners)


def _load_into_older(bin_dir: str, source: tuple[str, int], source_db: str,
                     target: tuple[str, int], jobs: int, dump: Path, owner: str,
                     drop_owners: list[str]) -> None:
    """Load ``dump`` into a server older than its pg_restore: the database-level entries
    as a script (pg_restore --create -f) whose CREATE DATABASE is replaced by ours, run by
    psql; then the contents by pg_restore into that database. ``source_db`` is one of
    dbsafe's staging names (``dbsafe_restore_<hex>``): a plain identifier, so the line to
    replace is known exactly and no text of the dump's can forge it."""
    if not _STAGED_NAME.fullmatch(source_db):
        raise ValueError(f"not a staging database name: {source_db!r}")
    pg_restore, psql = str(Path(bin_dir) / "pg_restore"), str(Path(bin_dir) / "psql")
    with connect(source[1], source[0], source_db) as sconn:
        create = create_like(sconn, source_db).as_string(sconn)
    listed = run_client(owner, [pg_restore, "--create", "-l", str(dump)], "pg_restore")
    _write_new(dump, LIST_FILE, "".join(line for line in listed.splitlines(keepends=True)
                                        if _DATABASE_LEVEL.match(line)))
    run_client(owner, [pg_restore, "--create", *drop_owners, "-L", str(dump / LIST_FILE),
                 "-f", str(dump / SCRIPT_FILE), str(dump)], "pg_restore")
    folder = open_dir(dump)
    try:
        script = (read_regular(folder, SCRIPT_FILE) or b"").decode()
    finally:
        os.close(folder)
    head = f"CREATE DATABASE {source_db} "
    lines = script.splitlines(keepends=True)
    if sum(line.startswith(head) for line in lines) != 1:
        raise DbsafeError("restore.copy_failed", step="pg_restore",
                          reason=f"its script does not create database {source_db} once")
    _write_new(dump, SQL_FILE, "".join(create + ";\n" if line.startswith(head) else line
                                       for line in lines))
    run_client(owner, [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                 f"--dbname={conninfo(target, 'postgres')}", "-f", str(dump / SQL_FILE)],
         "psql")
    run_client(owner, [pg_restore, "--no-tablespaces", "-j", str(jobs), "--exit-on-error",
                 *drop_owners, f"--dbname={conninfo(target, source_db)}", str(dump)],
         "pg_restore")


def _write_new(folder: Path, name: str, text: str) -> None:
    """A new file in the owner's dump folder, written by root: never through a name the
    owner planted (fdtree: no link followed, nothing existing opened)."""
    fd = open_dir(folder)
    try:
        write_new(fd, name, text.encode(), 0o644)
    finally:
        os.close(fd)


LIST_FILE, SCRIPT_FILE, SQL_FILE = ("dbsafe-database.list", "dbsafe-database-pg_restore.sql",
                                    "dbsafe-database.sql")
_STAGED_NAME = re.compile(r"dbsafe_restore_[0-9a-f]+")
# pg_restore -l lines of what belongs to the database itself rather than its contents:
# "215; 1262 16384 DATABASE - x owner", "0 0 DATABASE PROPERTIES - x", "COMMENT - DATABASE x"
_DATABASE_LEVEL = re.compile(
    r"^\d+; \d+ \d+ (DATABASE( PROPERTIES)? - |(COMMENT|ACL|SECURITY LABEL) - DATABASE )")


def program_major(owner: str, program: str) -> int:
    """The major version of a PostgreSQL client program (``pg_restore (PostgreSQL) 15.10``)."""
    out = run_client(owner, [program, "--version"], Path(program).name)
    found = re.search(r"\(PostgreSQL\) (\d+)", out)
    if found is None:
        raise DbsafeError("restore.copy_failed", step=Path(program).name,
                          reason=f"unrecognised version {out.strip()!r}")
    return int(found.group(1))


def create_like(sconn: psycopg.Connection, name: str) -> psycopg.sql.Composed:
    """``CREATE DATABASE name`` with the encoding and locale (and locale provider, 15+) of
    database ``name`` at ``sconn``'s server, in a syntax every server from 12 on takes (the
    target is never older than the source)."""
    from psycopg import sql

    version = sconn.info.server_version
    provider = ("datlocprovider, datlocale" if version >= 170000 else
                "datlocprovider, daticulocale" if version >= 150000 else "'c', NULL")
    encoding, collate, ctype, kind, locale = one_row(sconn.execute(
        "SELECT pg_encoding_to_char(encoding), datcollate, datctype, "  # noqa: S608 - fixed
        f"{provider} FROM pg_database WHERE datname = %s",
        (name,)))
    parts = [sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} "
                     "LC_CTYPE {}").format(sql.Identifier(name), sql.Literal(encoding),
                                           sql.Literal(collate), sql.Literal(ctype))]
    if kind == "i":
        parts.append(sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(locale)))
    elif kind == "b":
        parts.append(sql.SQL("LOCALE_PROVIDER builtin BUILTIN_LOCALE {}").format(
            sql.Literal(locale)))
    return sql.SQL(" ").join(parts)
