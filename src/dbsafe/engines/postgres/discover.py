"""What an instance holds: its identity and settings, and its databases."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.client import one_row

if TYPE_CHECKING:
    import psycopg

SYSTEM_DATABASES = ("postgres", "template1")


def instance_facts(conn: psycopg.Connection) -> dict:
    """System identifier, version, data checksums, WAL level and recovery model.

    The recovery model follows SQL Server's words: FULL when WAL is archived (point-in-time
    restore possible), SIMPLE when it is not (full backups only). Bulk-logged has no
    PostgreSQL counterpart: PostgreSQL logs every change (wal_level=minimal skips some WAL,
    but then no physical backup is possible at all), so it is not offered.
    """
    import psycopg

    try:
        row = _facts_row(conn)
    except psycopg.errors.InsufficientPrivilege:
        raise DbsafeError("server.not_superuser", user=conn.info.user) from None
    system_id, version_num, checksums, wal_level, archive_mode, archive_command, data_dir, \
        in_recovery, segment_size = row
    archive_library = ""
    if version_num >= 150000:
        archive_library = one_row(conn.execute("SELECT current_setting('archive_library')"))[0]
    archiving = archive_mode in ("on", "always") and bool(archive_command or archive_library)
    return {
        "system_identifier": system_id,
        "version_num": version_num,
        "major": version_num // 10000,
        "data_checksums": checksums == "on",
        "wal_level": wal_level,
        "archive_mode": archive_mode,
        "archive_command": archive_command,
        "recovery_model": "FULL" if archiving else "SIMPLE",
        "data_directory": data_dir,
        "in_recovery": in_recovery,
        "wal_segment_size": int(segment_size),
    }


def tablespace_locations(conn: psycopg.Connection) -> dict[str, str]:
    """oid → location of the server's tablespaces outside the data directory: the only
    links a walk of its files follows (files.walk)."""
    rows = conn.execute("SELECT oid::text, pg_tablespace_location(oid) FROM pg_tablespace "
                        "WHERE pg_tablespace_location(oid) <> ''").fetchall()
    return dict(rows)


def _facts_row(conn: psycopg.Connection) -> tuple:
    return one_row(conn.execute(
        "SELECT (SELECT system_identifier::text FROM pg_control_system()), "
        "current_setting('server_version_num')::int, current_setting('data_checksums'), "
        "current_setting('wal_level'), current_setting('archive_mode'), "
        "current_setting('archive_command'), current_setting('data_directory'), "
        "pg_is_in_recovery(), "
        "(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')"))


def _count_files(folder: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return 0


def databases(conn: psycopg.Connection, pgdata: Path) -> list[dict]:
    """Every database but template0, with size, file count and whether it takes writes;
    also whether it is a template, allows connections, or is invalid (datconnlimit -2: a
    DROP DATABASE interrupted half-way, PostgreSQL 15.4 and later). A database whose files
    PostgreSQL cannot find (a tablespace link pointing nowhere) has size 0: pg_database_size
    says NULL then."""
    rows = conn.execute(
        """
        SELECT d.datname, d.oid::bigint, coalesce(pg_database_size(d.oid), 0), d.datallowconn,
               coalesce((SELECT bool_or(s.cfg ~* '^default_transaction_read_only=(on|true|1|yes)$')
                         FROM pg_db_role_setting r, unnest(r.setconfig) AS s(cfg)
                         WHERE r.setdatabase = d.oid AND r.setrole = 0), false),
               d.dattablespace::bigint, d.datistemplate, d.datconnlimit = -2
        FROM pg_database d
        WHERE d.datname <> 'template0'
        ORDER BY d.datname
        """).fetchall()
    tablespace_dirs = _tablespace_version_dirs(Path(pgdata))
    result = []
    for name, oid, size, allow_conn, ro_setting, _tablespace, template, invalid in rows:
        files = _count_files(Path(pgdata) / "base" / str(oid))
        files += sum(_count_files(d / str(oid)) for d in tablespace_dirs)
        result.append({
            "name": name,
            "oid": oid,
            "size_bytes": size,
            "file_count": files,
            "read_only": bool(ro_setting) or not allow_conn,
            "kind": "system" if name in SYSTEM_DATABASES else "user",
            "is_template": template,
            "allow_connections": allow_conn,
            "invalid": invalid,
        })
    return result


def _tablespace_version_dirs(pgdata: Path) -> list[Path]:
    """pg_tblspc/<oid>/PG_<major>_<catversion> folders (one per tablespace)."""
    found: list[Path] = []
    tblspc = pgdata / "pg_tblspc"
    if tblspc.is_dir():
        for link in tblspc.iterdir():
            found.extend(p for p in link.iterdir() if p.name.startswith("PG_") and p.is_dir())
    return found
