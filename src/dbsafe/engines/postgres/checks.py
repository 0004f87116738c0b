"""Checks run against a restored cluster: its databases answer, and optionally amcheck
finds every btree index consistent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.stats import ConnFactory, error_line

if TYPE_CHECKING:
    import psycopg

# Valid, ready btree indexes of permanent or unlogged relations (temporary ones are not
# restored); the system catalogs' indexes are checked too.
BTREE_SQL = """
    SELECT c.oid, n.nspname || '.' || c.relname
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = c.relam
    WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
    ORDER BY 2
"""


def databases(conn: psycopg.Connection) -> list[tuple[str, bool]]:
    """(name, takes connections) of every database but template0."""
    return conn.execute("SELECT datname, datallowconn FROM pg_database "
                        "WHERE datname <> 'template0' ORDER BY 1").fetchall()


def answers(conns: ConnFactory, db: str) -> str | None:
    """None when ``db`` answers ``SELECT 1``; else why not."""
    import psycopg

    try:
        with conns(db) as conn:
            conn.execute("SELECT 1").fetchone()
        return None
    except (psycopg.Error, DbsafeError) as exc:
        return error_line(exc)


def amcheck(conns: ConnFactory, db: str) -> tuple[int, list[dict]]:
    """``bt_index_check`` on every btree index of ``db`` (the extension is created: the
    cluster is a scratch copy). Returns (indexes checked, failures)."""
    import psycopg

    failures = []
    with conns(db) as conn:
        conn.execute("SET default_transaction_read_only = off")  # a read-only database
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        indexes = conn.execute(BTREE_SQL).fetchall()
        for oid, name in indexes:
            try:
                conn.execute("SELECT bt_index_check(%s::oid::regclass)", (oid,))
            except psycopg.Error as exc:
                failures.append({"database": db, "index": name, "error": error_line(exc)})
    return len(indexes), failures
