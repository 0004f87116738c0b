"""A consistent physical backup of a running cluster.

One session holds the backup from ``start`` to ``stop`` (non-exclusive pg_backup_start /
pg_backup_stop). Before starting, that session creates a *temporary* physical replication
slot that reserves WAL: every segment from the backup's start to its stop stays in pg_wal
until we copied it, and the slot vanishes with the session, even if dbsafe is killed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.base import BlockRead, SourceFile
from dbsafe.engines.postgres import discover, summaries
from dbsafe.engines.postgres import files as pgfiles
from dbsafe.engines.postgres.client import connect, one_row
from dbsafe.engines.postgres.delta import changed_pages, page_runs
from dbsafe.engines.postgres.pages import PAGE_SIZE, bad_pages, page_lsn
from dbsafe.engines.postgres.wal import parse_lsn, wal_segment_name

if TYPE_CHECKING:
    import psycopg


@dataclass
class BackupStop:
    stop_lsn: str
    backup_label: str
    tablespace_map: str
    timeline: int
    wal_segments: list[SourceFile] = field(default_factory=list)


class BackupSession:
    """Start a backup, list the files, read them block by block, stop it."""

    def __init__(self, pgdata: Path, port: int, host: str | None, major: int,
                 data_checksums: bool) -> None:
        self.pgdata = Path(pgdata)
        self.port = port
        self.host = host
        self.major = major
        self.verify_pages = data_checksums
        self.start_lsn = 0
        self.timeline = 0
        self.data_checksums: bool | None = None
        self._conn: psycopg.Connection | None = None


    def start(self, label: str, fast: bool = True) -> str:
        conn = self._conn = connect(self.port, self.host)
        wal_level = one_row(conn.execute("SELECT current_setting('wal_level')"))[0]
        if wal_level == "minimal":
            raise DbsafeError("server.wal_level", wal_level=wal_level)
        import psycopg

        try:
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true, true)",
                         (f"dbsafe_{secrets.token_hex(6)}",))
        except (psycopg.errors.ObjectNotInPrerequisiteState,
                psycopg.errors.ConfigurationLimitExceeded) as exc:
            raise DbsafeError("server.no_replication_slot",
                              reason=str(exc).strip().splitlines()[0]) from None
        except psycopg.errors.InsufficientPrivilege:
            raise DbsafeError("server.not_superuser", user=conn.info.user) from None
        try:
            if self.major >= 15:
                row = conn.execute("SELECT pg_backup_start(%s, %s)::text", (label, fast))
            else:
                row = conn.execute("SELECT pg_start_backup(%s, %s, false)::text", (label, fast))
        except psycopg.errors.InsufficientPrivilege:
            raise DbsafeError("server.not_superuser", user=conn.info.user) from None
        text = one_row(row)[0]
        self.start_lsn = parse_lsn(text)
        # the segment size; whether pages carry checksums now (pg_checksums rewrites every
        # page without WAL and without moving its LSN: no differential can see that,
        # differential.py); the timeline of the start's checkpoint (a restartpoint's on a
        # standby)
        size, checksums, timeline = one_row(conn.execute(
            "SELECT (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), "
            "current_setting('data_checksums'), timeline_id FROM pg_control_checkpoint()"))
        self.segment_size, self.data_checksums = int(size), checksums == "on"
        self.timeline = int(timeline)
        return text

    def summary_rows(self, since_lsn: int) -> tuple[list | None, str]:
        """The server's own WAL summaries of ``[since_lsn, start)`` (PostgreSQL 17 and
        later with summarize_wal on; summaries.py), or None and why not."""
        assert self._conn is not None
        return summaries.summary_rows(self._conn, self.major, self.timeline, since_lsn,
                                      self.start_lsn)

    def files(self) -> pgfiles.Walk:
        """The files to copy, one at a time in path order (files.py); tablespace links are
        followed only to where this session's server says its tablespaces are."""
        assert self._conn is not None
        return pgfiles.Walk(self.pgdata, discover.tablespace_locations(self._conn))

    def read_block(self, fd: int, source: SourceFile, offset: int, length: int) -> BlockRead:
        """Read ``length`` bytes at ``offset`` of an open file and check its pages.

        A page whose checksum fails is read again once, as pgBackRest does: a page being
        written while we read it is torn, not corrupt. A page whose LSN is at or after the
        backup's start is being changed now, and WAL replay will rewrite it: not corrupt.
        """
        data = os.pread(fd, length, offset)
        if not (self.verify_pages and source.paged and data):
            return BlockRead(data)
        return BlockRead(data, self._corrupt_pages(fd, source, offset, data))

    def read_changed(self, fd: int, source: SourceFile, offset: int, length: int,
                     since_lsn: int, base_size: int) -> BlockRead:
        """Read a block of a main-fork segment and select the pages changed since
        ``since_lsn`` (see delta.py); only the selected pages' checksums are checked, the
        others were checked by the backup that stored them."""
        data = os.pread(fd, length, offset)
        first_new = base_size // PAGE_SIZE - offset // PAGE_SIZE
        runs = page_runs(changed_pages(data, since_lsn, first_new))
        corrupt: list[int] = []
        if self.verify_pages:
            view = memoryview(data)
            for first, count in runs:
                corrupt += self._corrupt_pages(
                    fd, source, offset + first * PAGE_SIZE,
                    view[first * PAGE_SIZE:(first + count) * PAGE_SIZE])
        return BlockRead(data, corrupt, runs)

    def _corrupt_pages(self, fd: int, source: SourceFile, offset: int,
                       data: bytes | memoryview) -> list[int]:
        first = source.first_page + offset // PAGE_SIZE
        corrupt = []
        for i in bad_pages(data, first):
            page = data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]
            if page_lsn(page) >= self.start_lsn:
                continue
            again = os.pread(fd, PAGE_SIZE, offset + i * PAGE_SIZE)
            if len(again) < PAGE_SIZE or not bad_pages(again, first + i) or \
                    page_lsn(again) >= self.start_lsn:
                continue
            corrupt.append(first + i)
        return corrupt

    def stop(self) -> BackupStop:
        conn = self._conn
        assert conn is not None
        if self.major >= 15:
            row = one_row(conn.execute(
                "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"))
        else:
            row = one_row(conn.execute(
                "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"))
        stop_lsn, label, spcmap = row
        timeline = 1
        for line in label.splitlines():
            if line.startswith("START TIMELINE:"):
                timeline = int(line.split(":", 1)[1])
        segments = []
        owner = self.pgdata.stat().st_uid
        first = self.start_lsn // self.segment_size
        last = parse_lsn(stop_lsn) // self.segment_size
        for segno in range(first, last + 1):
            name = wal_segment_name(timeline, segno * self.segment_size, self.segment_size)
            path = self.pgdata / "pg_wal" / name
            st = path.lstat()  # a link is refused when the copy opens it (SourceFile.open)
            segments.append(SourceFile(path=name, abspath=str(path), size=st.st_size,
                                       mode=0o600, mtime=st.st_mtime,
                                       identity=(st.st_dev, st.st_ino), owner=owner))
        return BackupStop(stop_lsn=stop_lsn, backup_label=label, tablespace_map=spcmap or "",
                          timeline=timeline, wal_segments=segments)

    def close(self) -> None:
        """End the session: PostgreSQL aborts an unfinished backup and drops the slot."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
