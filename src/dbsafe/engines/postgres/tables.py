"""One table, with what belongs to it, from one running server into another: the SQL and
the programs of a table restore (services/access/tables.py).

The table is read from an instant instance of the vault (a disposable server whose writes
stay local): renamed there when it is to come back under a new name, then dumped with
``pg_dump -t`` (which takes its indexes, constraints, triggers, the sequences it owns,
its grants and comments) and loaded with ``pg_restore --single-transaction``: into the
live target, either the whole table or nothing. Names are identifiers passed as such
(``psycopg.sql.Identifier``; ``pg_dump -t`` gets them double-quoted), never pasted SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.logical import conninfo, run_client

if TYPE_CHECKING:
    import psycopg

MAX_NAME = 63  # NAMEDATALEN - 1: a longer name is cut by PostgreSQL, and would name another


def split_name(text: str) -> tuple[str, str]:
    """``schema.table`` (or ``table``, in ``public``) as (schema, table); refuses what
    cannot be a table's name."""
    schema, _, table = text.rpartition(".")
    schema = schema or "public"
    for part in (schema, table):
        if not part or len(part.encode()) > MAX_NAME or "\0" in part or '"' in part:
            raise DbsafeError("restore.table_name", table=text)
    return schema, table


def table_kind(conn: psycopg.Connection, schema: str, table: str) -> str | None:
    """The relkind of ``schema.table`` (``r`` a table, ``p`` a partitioned one, ...), None
    when there is no relation of that name."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, table)).fetchone()
    return None if row is None else str(row[0])


def schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                        (schema,)).fetchone() is not None


def table_owner(conn: psycopg.Connection, schema: str, table: str) -> str:
    row = conn.execute(
        "SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, table)).fetchone()
    return str(row[0]) if row else ""


def role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() \
        is not None


def rename_with_dependents(conn: psycopg.Connection, schema: str, table: str,
                           new: str) -> dict[str, str]:
    """Rename ``schema.table`` to ``new`` with its indexes (their constraints follow) and
    the sequences it owns: a name that starts with the table's gets the new name instead
    (``orders_pkey`` → ``orders_before_pkey``), others get ``_<new>`` appended, so that
    none clashes with the live table's. Only on an instant instance: it is disposable.
    Returns the old name of each renamed relation by its new one."""
    from psycopg import sql

    rows = conn.execute(
        "SELECT i.relname, 'INDEX' FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = %(s)s AND t.relname = %(t)s "
        "UNION ALL "
        "SELECT q.relname, 'SEQUENCE' FROM pg_depend d JOIN pg_class q ON q.oid = d.objid "
        "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n "
        "ON n.oid = t.relnamespace WHERE q.relkind = 'S' AND d.deptype IN ('a', 'i') "
        "AND n.nspname = %(s)s AND t.relname = %(t)s", {"s": schema, "t": table}).fetchall()
    renamed = {new: table}
    for old, kind in rows:
        name = new + old[len(table):] if old.startswith(table) else f"{old}_{new}"
        name = name[:MAX_NAME]
        conn.execute(sql.SQL("ALTER {} {}.{} RENAME TO {}").format(
            sql.SQL(kind), sql.Identifier(schema), sql.Identifier(old), sql.Identifier(name)))
        renamed[name] = old
    conn.execute(sql.SQL("ALTER TABLE {}.{} RENAME TO {}").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(new)))
    return renamed


def copy_tables(bin_dir: str, source: tuple[str, int], target: tuple[str, int], db: str,
                tables: list[tuple[str, str]], dump: Path, owner: str,
                keep_owners: bool) -> None:
    """Dump ``tables`` of database ``db`` from ``source`` into file ``dump`` and load them
    into ``db`` at ``target`` in one transaction; both programs run as ``owner``."""
    patterns = [f'--table="{s}"."{t}"' for s, t in tables]
    run_client(owner, [str(Path(bin_dir) / "pg_dump"), f"--dbname={conninfo(source, db)}",
                       "-Fc", "--no-tablespaces", *patterns, "-f", str(dump)], "pg_dump")
    drop_owners = [] if keep_owners else ["--no-owner", "--no-privileges"]
    run_client(owner, [str(Path(bin_dir) / "pg_restore"), "--single-transaction",
                       "--exit-on-error", "--no-tablespaces", *drop_owners,
                       f"--dbname={conninfo(target, db)}", str(dump)], "pg_restore")
