"""PostgreSQL 17's own WAL summaries: the blocks its WAL summarizer saw changed, per range.

With ``summarize_wal = on`` the server keeps, in ``pg_wal/summaries``, which blocks of which
relation forks the WAL of each LSN range changes, and the *limit block* of a fork created or
cut in it (a create is a limit of 0: read it from the start). ``pg_available_wal_summaries``
lists the ranges, ``pg_wal_summary_contents`` reads one, ``pg_get_wal_summarizer_state``
says how far the summarizer got (src/backend/backup/walsummaryfuncs.c). A change map built
from them needs no WAL read at all (docs/change-map.md, *PostgreSQL 17 and later*).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dbsafe.engines.postgres.client import one_row
from dbsafe.engines.postgres.wal import format_lsn

if TYPE_CHECKING:
    import psycopg

FIRST_MAJOR = 17
WAIT_SECONDS = 10.0  # the summarizer lags the WAL by a moment; a backup waits this long

# (relfilenode, reltablespace, reldatabase, relforknumber, relblocknumber, is_limit_block)
Row = tuple[int, int, int, int, int, bool]


def summary_rows(conn: psycopg.Connection, major: int, timeline: int, start_lsn: int,
                 stop_lsn: int, wait: float = WAIT_SECONDS) -> tuple[list[Row] | None, str]:
    """The rows of the server's summaries covering ``[start_lsn, stop_lsn)`` on
    ``timeline`` (they may reach beyond it: more blocks, never fewer), or None and why
    not (an older major, summarize_wal off, a range the summaries do not cover whole)."""
    if major < FIRST_MAJOR:
        return None, f"PostgreSQL {major} keeps no WAL summaries"
    if one_row(conn.execute("SELECT current_setting('summarize_wal')"))[0] != "on":
        return None, "summarize_wal is off"
    deadline = time.monotonic() + wait
    while True:
        tli, done = one_row(conn.execute(
            "SELECT summarized_tli, (summarized_lsn - '0/0'::pg_lsn)::bigint "
            "FROM pg_get_wal_summarizer_state()"))
        if tli == timeline and done is not None and int(done) >= stop_lsn:
            break
        if time.monotonic() > deadline:
            return None, "the WAL summarizer has not reached the backup's start yet"
        time.sleep(0.1)
    ranges = _ranges(conn, timeline, start_lsn, stop_lsn)
    reached = start_lsn
    for first, end in ranges:
        if first > reached:
            break
        reached = max(reached, end)
    if reached < stop_lsn:
        return None, "the server's WAL summaries do not cover the range (kept too briefly?)"
    rows: list[Row] = []
    for first, end in ranges:
        rows += conn.execute(
            "SELECT relfilenode::bigint, reltablespace::bigint, reldatabase::bigint, "
            "relforknumber, relblocknumber, is_limit_block "
            "FROM pg_wal_summary_contents(%s, %s::pg_lsn, %s::pg_lsn)",
            (timeline, format_lsn(first), format_lsn(end))).fetchall()
    return rows, ""


def _ranges(conn: psycopg.Connection, timeline: int, start_lsn: int, stop_lsn: int
            ) -> list[tuple[int, int]]:
    found = conn.execute(
        "SELECT (start_lsn - '0/0'::pg_lsn)::bigint, (end_lsn - '0/0'::pg_lsn)::bigint "
        "FROM pg_available_wal_summaries() "
        "WHERE tli = %s AND end_lsn > %s::pg_lsn AND start_lsn < %s::pg_lsn "
        "ORDER BY start_lsn, end_lsn",
        (timeline, format_lsn(start_lsn), format_lsn(stop_lsn))).fetchall()
    return [(int(a), int(b)) for a, b in found]

