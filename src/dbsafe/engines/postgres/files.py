"""Which files of a data directory a base backup copies.

The rules follow PostgreSQL's own base backup (src/backend/backup/basebackup.c and the
"Backing Up the Data Directory" section of the manual): the contents of pg_wal and of
runtime-only folders are skipped (the folders themselves are kept, empty), as are
postmaster.pid/.opts, temporary files and temporary relations, relcache init files, and the
main forks of unlogged
relations (only their init fork is kept; PostgreSQL rebuilds them from it at startup).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.base import SourceFile

# Folders whose contents are never copied (the folder itself is).
SKIP_CONTENTS = frozenset({
    "pg_wal", "pg_xlog", "pg_dynshmem", "pg_notify", "pg_replslot", "pg_serial",
    "pg_snapshots", "pg_stat_tmp", "pg_subtrans",
})
# Files never copied, wherever they are (by exact name, at the top level).
SKIP_TOP_FILES = frozenset({
    "postmaster.pid", "postmaster.opts", "postgresql.auto.conf.tmp", "current_logfiles.tmp",
    "backup_label", "backup_label.old", "tablespace_map", "tablespace_map.old",
    "backup_manifest", "recovery.signal", "standby.signal",
})
RELATION_FILE = re.compile(r"^(\d+)(_(fsm|vm|init))?(\.(\d+))?$")
# Files of temporary relations: t<backend id>_<relfilenode>[_fork][.segment]
TEMP_RELATION_FILE = re.compile(r"^t\d+_\d+")
PAGES_PER_SEGMENT = 131072  # RELSEG_SIZE: 1 GiB segments of 8 KiB pages


def _skip_file(name: str, top_level: bool) -> bool:
    return (top_level and name in SKIP_TOP_FILES) \
        or name.startswith(("pgsql_tmp", "pg_internal.init"))


def _unlogged_main_forks(relations: dict[str, re.Match[str]]) -> set[str]:
    """Files of relations that have an init fork, except the init fork itself
    (``relations``: a folder's names that are relation files, with their match)."""
    with_init = {m.group(1) for m in relations.values() if m.group(3) == "init"}
    if not with_init:
        return set()
    return {n for n, m in relations.items() if m.group(1) in with_init
            and m.group(3) != "init"}


def _is_relation_dir(rel: str) -> bool:
    parts = rel.split("/")
    if parts[0] == "global" and len(parts) == 1:
        return True
    if parts[0] == "base" and len(parts) == 2:
        return True
    # pg_tblspc/<oid>/PG_xx_yyy/<dboid>
    return parts[0] == "pg_tblspc" and len(parts) == 4


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def walk(pgdata: Path, tablespaces: dict[str, str] | None = None
         ) -> tuple[list[SourceFile], list[dict], list[dict]]:
    """(files to copy, directories to recreate, tablespaces) of a data directory, all at
    once (``Walk`` gives the files one at a time)."""
    found = Walk(pgdata, tablespaces)
    files = list(found)
    return files, found.dirs, found.tablespaces


class Walk:
    """The files to copy of a data directory, one at a time in path order (paths compared
    part by part: vault/entries.py, the order of a manifest's entries), so that a backup
    holds none of them longer than it copies them; ``dirs`` (directories to recreate) and
    ``tablespaces`` are complete once the iteration ends.

    The ``postgres`` OS user can put links anywhere in its data directory; dbsafe reads as
    root. So the walk goes from folder to folder by file descriptor and never follows a
    link (``O_NOFOLLOW``), except a tablespace's: ``tablespaces`` maps oid to location as
    the server reports them (``pg_tablespace``); a link ``pg_tblspc/<oid>`` is followed
    only when it names one of them with that very location, into a folder of the data
    directory's owner (``backup.tablespace_unsafe`` otherwise); any other link is left out.
    Its files are listed under ``pg_tblspc/<oid>/...`` and each tablespace is returned as
    ``{"oid", "location"}``. Each file carries what the walk saw of it (device, inode, the
    data directory's owner), which ``SourceFile.open`` holds the file to.
    """

    def __init__(self, pgdata: Path, tablespaces: dict[str, str] | None = None) -> None:
        self.pgdata = pgdata
        self._known = tablespaces or {}
        self.dirs: list[dict] = []
        self.tablespaces: list[dict] = []

    def __iter__(self) -> Iterator[SourceFile]:
        root = os.open(self.pgdata, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield from self._visit(root, str(self.pgdata), "", os.fstat(root).st_uid)
        finally:
            os.close(root)

    def _visit(self, fd: int, abs_dir: str, rel_dir: str, owner: int) -> Iterator[SourceFile]:
        # names only, sorted (a database folder may hold 100,000 files: a DirEntry and its
        # stat each would be ~800 bytes a file held for the whole folder)
        names = sorted(os.listdir(fd))
        paged_dir = _is_relation_dir(rel_dir)
        # each name matched once: a database folder may hold 100,000 files
        relations = {n: m for n in names if (m := RELATION_FILE.match(n))} if paged_dir \
            else {}
        unlogged = _unlogged_main_forks(relations)
        top_level = not rel_dir
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if rel_dir == "pg_tblspc" and stat.S_ISLNK(st.st_mode):
                location = _tablespace_location(fd, name, self._known)
                if location is None:
                    continue  # a link PostgreSQL does not know as a tablespace
                self.tablespaces.append({"oid": name, "location": location})
                self.dirs.append({"path": rel, "mode": 0o700, "type": "tablespace"})
                sub = _open_tablespace(name, location, owner)
                try:
                    yield from self._visit(sub, location, rel, owner)
                finally:
                    os.close(sub)
                continue
            if stat.S_ISDIR(st.st_mode):
                if name.startswith("pgsql_tmp"):
                    continue
                self.dirs.append({"path": rel, "mode": stat.S_IMODE(st.st_mode),
                                  "type": "dir"})
                if rel in SKIP_CONTENTS:
                    if rel == "pg_wal":
                        self.dirs.append({"path": "pg_wal/archive_status", "mode": 0o700,
                                          "type": "dir"})
                    continue
                try:
                    sub = os.open(name, DIR_FLAGS, dir_fd=fd)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # removed (a dropped database) or replaced while we walked
                except OSError as exc:
                    if exc.errno != errno.ELOOP:
                        raise
                    continue  # replaced by a link while we walked: never followed
                try:
                    yield from self._visit(sub, f"{abs_dir}/{name}", rel, owner)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                if _skip_file(name, top_level) or name in unlogged:
                    continue
                if paged_dir and name[:1] == "t" and TEMP_RELATION_FILE.match(name):
                    continue
                match = relations.get(name)
                segno = int(match.group(5) or 0) if match else 0
                yield SourceFile(
                    path=rel, abspath=f"{abs_dir}/{name}", size=st.st_size,
                    mode=stat.S_IMODE(st.st_mode), mtime=st.st_mtime,
                    paged=match is not None, first_page=segno * PAGES_PER_SEGMENT,
                    identity=(st.st_dev, st.st_ino), owner=owner)
            # other symlinks, sockets and fifos are not part of a backup


def _tablespace_location(fd: int, oid: str, tablespaces: dict[str, str]) -> str | None:
    """The location of the tablespace link ``oid`` (in the pg_tblspc folder ``fd``) when
    the server reports that tablespace there; None for a link it does not know."""
    if oid not in tablespaces:
        return None
    try:
        target = os.readlink(oid, dir_fd=fd)
    except FileNotFoundError:
        return None  # dropped while we walked
    if target != tablespaces[oid]:
        raise DbsafeError("backup.tablespace_unsafe", oid=oid, target=target,
                          reason=f"the server reports it at {tablespaces[oid]}")
    return target


def _open_tablespace(oid: str, location: str, owner: int) -> int:
    """The tablespace's folder, open, when the data directory's owner owns it (PostgreSQL
    requires it; a link to anyone else's folder would make root read that folder)."""
    try:
        fd = os.open(location, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise DbsafeError("backup.tablespace_unsafe", oid=oid, target=location,
                          reason=exc.strerror or str(exc)) from None
    uid = os.fstat(fd).st_uid
    if uid != owner:
        os.close(fd)
        raise DbsafeError("backup.tablespace_unsafe", oid=oid, target=location,
                          reason=f"that folder belongs to uid {uid}, not to the data "
                                 f"directory's owner (uid {owner})")
    return fd
