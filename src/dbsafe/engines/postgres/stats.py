"""Row counts per table, taken right after a backup, and the evidence a restore drill needs
to tell a real mismatch from a database that simply changed (docs/drills.md).

A backup restores the state at its stop LSN, but the counts are taken a moment later, so a
transaction that commits in between makes them differ from the restored state. Before the
stop, a *mark* (the instance's transaction snapshot) is taken; each database is counted in
one REPEATABLE READ snapshot; a transaction that committed after the mark and before that
snapshot means the database may have changed between the stop and the count. Transaction
ids are the instance's, not a database's: a commit anywhere marks every database counted
after it. Counting reads a whole table, so tables larger than a cap are not counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.client import one_row
from dbsafe.engines.postgres.pages import PAGE_SIZE, page_lsn
from dbsafe.engines.postgres.wal import parse_lsn

if TYPE_CHECKING:
    import psycopg

ConnFactory = Callable[[str], "psycopg.Connection"]
# Counts known without counting, in the count's snapshot: (connection, WAL position taken
# before the snapshot, the snapshot, the tables) -> {table key: rows}. A differential that
# knows which relations changed since its base reuses the base's counts of the others
# (services/backup/counts.py).
KnownCounts = Callable[["psycopg.Connection", str, str, dict], dict[str, int]]

COUNTS_FORMAT = 1
DEFAULT_LIMIT_BYTES = 1 << 30   # tables above 1 GiB (main fork) are not counted
LOCK_TIMEOUT = "10s"            # a table locked by DDL is skipped, not waited for
MAX_XIDS_CHECKED = 1_000_000    # more transactions than this since the mark: "changed"
COUNT_WORKERS = 4               # databases counted at once (measured: 100 small ones in
                                # 2.6 s with 1, 1.4 s with 4, on 2 busy cores)

# Ordinary permanent tables (partitions counted one by one, parents not: a parent's count
# is its partitions'). Unlogged tables restore empty and are left out.
TABLES_SQL = """
    SELECT c.oid, n.nspname, c.relname, pg_relation_size(c.oid), pg_relation_filenode(c.oid),
           pg_relation_filepath(c.oid)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence = 'p'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    ORDER BY 2, 3
"""
POSITION_SQL = ("SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                "ELSE pg_current_wal_insert_lsn() END::text")
# Did one of these transactions commit? (ids are 64-bit, epoch included; ``running`` are
# excluded). PostgreSQL 12 has the same functions under their older names: txid_status,
# txid_current_snapshot (same text form); 13 brought pg_xact_status and xid8.
COMMITTED_SQL = """
    SELECT EXISTS (
      SELECT 1 FROM (SELECT unnest(%(xids)s::bigint[])
                     UNION ALL SELECT generate_series(%(lo)s::bigint, %(hi)s::bigint - 1)) c(x)
      WHERE x <> ALL (%(running)s::bigint[]) AND {status} = 'committed')
"""
# The newest transaction in [lo, hi) that is not running and may have committed (a status
# too old to be known, NULL, counts as committed), read from the newest down: on a busy
# instance the first one looked at usually answers.
NEWEST_COMMITTED_SQL = """
    SELECT x FROM generate_series(%(hi)s::bigint - 1, %(lo)s::bigint, -1) c(x)
    WHERE x <> ALL (%(running)s::bigint[]) AND coalesce({status}, 'committed') = 'committed'
    LIMIT 1
"""
# Which of these transactions (not running) committed, or are too old to tell.
COMMITTED_OF_SQL = """
    SELECT coalesce(array_agg(x), '{{}}') FROM unnest(%(xids)s::bigint[]) c(x)
    WHERE x <> ALL (%(running)s::bigint[]) AND coalesce({status}, 'committed') = 'committed'
"""
XACT_STATUS = "pg_xact_status(x::text::xid8)"
XACT_STATUS_12 = "txid_status(x)"


def error_line(exc: BaseException) -> str:
    """The first line of a database or dbsafe error."""
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _snapshot(text: str) -> tuple[int, int, list[int]]:
    xmin, xmax, xip = text.split(":")
    return int(xmin), int(xmax), [int(x) for x in xip.split(",") if x]


def snapshot(conn: psycopg.Connection) -> str:
    """The current transaction snapshot of the instance, as text."""
    function = "pg_current_snapshot" if _since_13(conn) else "txid_current_snapshot"
    return one_row(conn.execute(f"SELECT {function}()::text"))[0]


def _since_13(conn: psycopg.Connection) -> bool:
    return conn.info.server_version >= 130000


def xact_mark(conns: ConnFactory) -> str | None:
    """The mark taken just before a backup's stop; None when it could not be taken (every
    database then counts as changed)."""
    import psycopg

    try:
        with conns("postgres") as conn:
            return snapshot(conn)
    except (psycopg.Error, DbsafeError):
        return None


def _any_committed(conn: psycopg.Connection, xids: list[int], lo: int, hi: int,
                   running: list[int]) -> bool:
    sql = COMMITTED_SQL.format(status=XACT_STATUS if _since_13(conn) else XACT_STATUS_12)
    return bool(one_row(conn.execute(sql, {"xids": xids, "lo": lo, "hi": max(lo, hi),
                                   "running": running}))[0])


def committed_between(conn: psycopg.Connection, since: str | None, until: str) -> bool:
    """Whether a transaction committed that was not finished in snapshot ``since`` and was
    finished in the later snapshot ``until`` (pg_snapshot text: xmin:xmax:xip,...).
    Unknown (no ``since``, or too many transactions to check) counts as yes."""
    if since is None:
        return True
    _, lo, xip = _snapshot(since)
    _, hi, running = _snapshot(until)
    if hi - lo > MAX_XIDS_CHECKED:
        return True
    return _any_committed(conn, [x for x in xip if x < hi], lo, hi, running)


def running_then_committed(conn: psycopg.Connection, then: str) -> bool:
    """Whether a transaction running in snapshot ``then`` (of the source) has committed in
    this cluster (a restored copy recovered past ``then``)."""
    _, hi, running = _snapshot(snapshot(conn))
    _, _, xip = _snapshot(then)
    return _any_committed(conn, [x for x in xip if x < hi], 0, 0, running)


def still_true(conns: ConnFactory, earlier: dict | None, databases: Iterable[str],
               limit_bytes: int | None = DEFAULT_LIMIT_BYTES) -> dict[str, dict]:
    """The ``earlier`` counts (``table_counts``' result, an earlier backup's of this
    instance on the timeline it still runs on) of the ``databases`` that nothing can have
    changed since they were counted, as records of a count taken now, without a connection
    to those databases.

    A ``count(*)`` in a snapshot depends only on which transactions it sees committed: if
    no transaction that a database's earlier snapshot did not see (running in it, or
    started after it) has committed since, every table of it holds the same rows, under the
    same filenodes (DDL commits too). Transaction ids are the instance's, so one commit
    anywhere since a database's snapshot voids its reuse: on a busy instance every
    database is counted again. The snapshot now (one connection to ``postgres``) must not
    be behind the earlier one, nor the WAL position behind the earlier count's (a data
    directory put back from an older copy counts again). Each record is the earlier one
    with this snapshot and position, ``changed: false`` (nothing committed since before
    this backup's mark), every table listed under ``reused`` and the snapshot the rows
    were really counted in as ``counted_in``."""
    import psycopg

    if not earlier or earlier.get("format") != COUNTS_FORMAT \
            or earlier.get("limit_bytes") != limit_bytes:
        return {}
    taken = earlier.get("databases") or {}
    candidates = {db: rec for db in databases
                  if isinstance(rec := taken.get(db), dict) and "error" not in rec
                  and rec.get("snapshot") and rec.get("position")}
    if not candidates:
        return {}
    try:
        with conns("postgres") as conn:
            position = wal_position(conn)
            now = snapshot(conn)
            _, hi, running = _snapshot(now)
            snaps = {db: _snapshot(rec["snapshot"]) for db, rec in candidates.items()
                     if parse_lsn(rec["position"]) <= parse_lsn(position)}
            snaps = {db: snap for db, snap in snaps.items() if snap[1] <= hi}
            if not snaps:
                return {}
            lo = min(xmax for _, xmax, _ in snaps.values())
            if hi - lo > MAX_XIDS_CHECKED:
                return {}
            status = XACT_STATUS if _since_13(conn) else XACT_STATUS_12
            row = conn.execute(NEWEST_COMMITTED_SQL.format(status=status),
                               {"lo": lo, "hi": hi, "running": running}).fetchone()
            newest = row[0] if row else -1
            xips = sorted({x for _, _, xip in snaps.values() for x in xip if x < hi})
            committed = set(one_row(conn.execute(COMMITTED_OF_SQL.format(status=status),
                                                 {"xids": xips, "running": running}))[0])
    except (psycopg.Error, DbsafeError):
        return {}
    return {db: {"position": position, "snapshot": now, "changed": False,
                 "tables": candidates[db].get("tables", {}),
                 "filenodes": candidates[db].get("filenodes", {}),
                 "not_counted": candidates[db].get("not_counted", {}),
                 "reused": sorted(candidates[db].get("tables", {})),
                 "counted_in": candidates[db].get("counted_in", candidates[db]["snapshot"])}
            for db, (_, xmax, xip) in snaps.items()
            if newest < xmax and not committed.intersection(xip)}


def wal_position(conn: psycopg.Connection) -> str:
    """The server's WAL position now, as LSN text, in one statement: the last replayed LSN
    when in recovery (a standby, a restored copy), else the current insert LSN.
    ``pg_last_wal_replay_lsn``, ``pg_current_wal_insert_lsn``: PostgreSQL 10 on."""
    return one_row(conn.execute(POSITION_SQL))[0]


def relation_filepath(conn: psycopg.Connection, oid: int) -> str:
    """The main fork's path of relation ``oid``, relative to the data directory.
    ``pg_relation_filepath``: PostgreSQL 9.0 on."""
    return one_row(conn.execute("SELECT pg_relation_filepath(%s::oid)", (oid,)))[0]


def pg_class_filepath(conn: psycopg.Connection) -> str:
    """The main fork's path of this database's pg_class (DDL that makes or drops a table
    changes it), relative to the data directory. ``pg_relation_filepath``: PostgreSQL 9.0
    on."""
    return one_row(conn.execute("SELECT pg_relation_filepath('pg_class')"))[0]


def list_tables(conn: psycopg.Connection) -> dict[str, dict]:
    """Every table that is counted, by "schema.table": oid, schema, name, main fork bytes,
    filenode and the main fork's path in the data directory."""
    return {f"{schema}.{name}": {"oid": oid, "schema": schema, "name": name, "size": size,
                                 "filenode": filenode, "path": path}
            for oid, schema, name, size, filenode, path
            in conn.execute(TABLES_SQL).fetchall()}


def count_rows(conn: psycopg.Connection, table: dict) -> int:
    from psycopg import sql

    return one_row(conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
        sql.Identifier(table["schema"], table["name"]))))[0]


def _count_database(conn: psycopg.Connection, limit_bytes: int | None,
                    mark: str | None, known: KnownCounts | None = None) -> dict:
    import psycopg

    # The WAL position before the snapshot: a change the count does not see was written
    # after it, or belongs to a transaction running at the snapshot (services/restore/drills.py
    # looks for both in a restored copy that recovered past the count).
    position = wal_position(conn)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    snap = snapshot(conn)  # the first query: it fixes the transaction's snapshot
    tables: dict[str, int] = {}
    filenodes: dict[str, int] = {}
    not_counted: dict[str, str] = {}
    listed = list_tables(conn)
    reused = known(conn, position, snap, listed) if known is not None else {}
    for key, table in listed.items():
        if key in reused:
            tables[key] = reused[key]
            filenodes[key] = table["filenode"]
            continue
        if limit_bytes is not None and table["size"] > limit_bytes:
            not_counted[key] = f"{table['size']} bytes, over the {limit_bytes}-byte cap"
            continue
        conn.execute("SAVEPOINT dbsafe_count")
        try:
            tables[key] = count_rows(conn, table)
            filenodes[key] = table["filenode"]
            conn.execute("RELEASE SAVEPOINT dbsafe_count")
        except psycopg.Error as exc:  # locked by DDL, dropped meanwhile: skip this one
            conn.execute("ROLLBACK TO SAVEPOINT dbsafe_count")
            not_counted[key] = error_line(exc)
    conn.execute("COMMIT")
    return {"position": position, "snapshot": snap,
            "changed": committed_between(conn, mark, snap),
            "tables": tables, "filenodes": filenodes, "not_counted": not_counted,
            **({"reused": sorted(reused)} if reused else {})}


def table_counts(conns: ConnFactory, databases: Iterable[str], mark: str | None = None,
                 limit_bytes: int | None = DEFAULT_LIMIT_BYTES,
                 workers: int = COUNT_WORKERS,
                 known_for: Callable[[str], KnownCounts | None] | None = None) -> dict:
    """Exact ``count(*)`` of every ordinary table of each database, one REPEATABLE READ
    snapshot per database, with whether it changed since ``mark`` (see the module note).

    ``conns(dbname)`` opens an autocommit connection. Databases are counted ``workers`` at
    a time (with many small databases, opening connections is most of the cost). Never
    raises for a database: one that cannot be counted (takes no connections, ...) is
    recorded with its error. ``known_for(db)``: counts of that database known without
    counting (``KnownCounts``), listed under "reused". The result (stored as JSON with the
    point)::

        {"format": 1, "limit_bytes": ..., "mark": "xmin:xmax:xip", "taken": ISO time,
         "databases": {db: {"tables": {"schema.table": rows}, "not_counted": {key: why},
                            "changed": bool, "snapshot": ..., "position": LSN,
                            "filenodes": {key: filenode}, "reused": [key]}
                            or {"error": why}}}
    """
    import psycopg

    def one(db: str) -> dict:
        try:
            with conns(db) as conn:
                return _count_database(conn, limit_bytes, mark,
                                       known_for(db) if known_for is not None else None)
        except (psycopg.Error, DbsafeError) as exc:
            return {"error": error_line(exc)}

    names = list(databases)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="dbsafe-count") as pool:
        counted = dict(zip(names, pool.map(one, names), strict=True))
    return {"format": COUNTS_FORMAT, "limit_bytes": limit_bytes, "mark": mark,
            "taken": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "databases": counted}


def changed_pages_between(pgdata: Path, relpath: str, after: int, upto: int) -> bool:
    """Whether a page of a (stopped or checkpointed) relation's main fork carries an LSN in
    (``after``, ``upto``]: a change replayed after the count. Pages a drill's own queries
    dirtied (hint bits) carry LSNs above ``upto``."""
    base = Path(pgdata) / relpath
    segno = 0
    while True:
        path = base if segno == 0 else base.with_name(f"{base.name}.{segno}")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            for offset in range(0, size - size % PAGE_SIZE, PAGE_SIZE):
                if after < page_lsn(os.pread(fd, 8, offset)) <= upto:
                    return True
        finally:
            os.close(fd)
        segno += 1
