"""What a running server says about itself: primary or standby, its major version, where it
writes WAL now, whether base backups stream from it.

The one place these questions are asked (services decide what the answers mean). Every
function works on PostgreSQL 12 to 18, the versions dbsafe supports; each docstring names
the version the SQL it sends works from, and what it does on the versions that differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dbsafe.engines.postgres.client import one_row

if TYPE_CHECKING:
    import psycopg


def is_in_recovery(conn: psycopg.Connection) -> bool:
    """Whether the server is in recovery: a standby, or a restored copy not yet promoted
    (or paused at its target). Its WAL is then another server's: it writes none of its own,
    takes no writes, and cannot switch WAL. ``pg_is_in_recovery()``: PostgreSQL 9.0 on."""
    return one_row(conn.execute("SELECT pg_is_in_recovery()"))[0]


def server_major(conn: psycopg.Connection) -> int:
    """The server's major version (12, ..., 18), as the server reports it (its catalog row
    may be older than an upgrade). ``server_version_num``: PostgreSQL 8.2 on; since 10 the
    major version is that number // 10000."""
    return int(one_row(conn.execute("SHOW server_version_num"))[0]) // 10000


def current_wal(conn: psycopg.Connection) -> tuple[str, str]:
    """(the current WAL write LSN as text, the name of the segment it is in) of a primary:
    the segment name starts with the timeline. PostgreSQL 10 on (``pg_current_wal_lsn``,
    ``pg_walfile_name``); both raise on a server in recovery (ask ``is_in_recovery``
    first)."""
    return one_row(conn.execute(
        "SELECT l::text, pg_walfile_name(l) FROM pg_current_wal_lsn() AS l"))


BASE_BACKUPS_SQL = "SELECT count(*) FROM pg_stat_progress_basebackup"
# PostgreSQL 12 has no such view: a walsender sending a base backup is in state 'backup'
BASE_BACKUPS_SQL_12 = "SELECT count(*) FROM pg_stat_replication WHERE state = 'backup'"


def base_backups_streaming(conn: psycopg.Connection) -> int:
    """How many base backups stream from the server over the replication protocol right
    now (pg_basebackup, Barman, ...; dbsafe's own backups are not among them).
    ``pg_stat_progress_basebackup``: PostgreSQL 13 on; on 12, the walsenders in state
    'backup' of ``pg_stat_replication``."""
    return one_row(conn.execute(BASE_BACKUPS_SQL if conn.info.server_version >= 130000
                        else BASE_BACKUPS_SQL_12))[0]
