"""Which files of a data directory a base backup copies.

The rules follow PostgreSQL's own base backup (src/backend/backup/basebackup.c and the
"Backing Up the Data Directory" section of the manual): the contents of pg_wal and of
runtime-only folders are skipped (the folders themselves are kept, empty), as are
postmaster.pid/.opts, temporary files and temporary relations, relcache init files, and the
main forks of unlogged
relations (only their init fork is kept; PostgreSQL rebuilds them from it at startup).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

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
    if top_level and name in SKIP_TOP_FILES:
        return True
    return name.startswith("pgsql_tmp") or name.startswith("pg_internal.init")


def _unlogged_main_forks(names: list[str]) -> set[str]:
    """Files of relations that have an init fork, except the init fork itself."""
    with_init = {m.group(1) for n in names
                 if (m := RELATION_FILE.match(n)) and m.group(3) == "init"}
    if not with_init:
        return set()
    return {n for n in names if (m := RELATION_FILE.match(n))
            and m.group(1) in with_init and m.group(3) != "init"}


def _is_relation_dir(rel: str) -> bool:
    parts = rel.split("/")
    if parts[0] == "global" and len(parts) == 1:
        return True
    if parts[0] == "base" and len(parts) == 2:
        return True
    # pg_tblspc/<oid>/PG_xx_yyy/<dboid>
    return parts[0] == "pg_tblspc" and len(parts) == 4


def walk(pgdata: Path) -> tuple[list[SourceFile], list[dict], list[dict]]:
    """(files to copy, directories to recreate, tablespaces) of a data directory.

    Tablespace links in pg_tblspc are followed; their files are listed under
    ``pg_tblspc/<oid>/...`` and each tablespace is returned as ``{"oid", "location"}``.
    """
    pgdata = Path(pgdata)
    files: list[SourceFile] = []
    dirs: list[dict] = []
    tablespaces: list[dict] = []

    def visit(abs_dir: str, rel_dir: str) -> None:
        try:
            entries = list(os.scandir(abs_dir))
        except FileNotFoundError:
            return  # removed while we walked (a dropped database): nothing to copy
        names = [e.name for e in entries]
        unlogged = _unlogged_main_forks(names) if _is_relation_dir(rel_dir) else set()
        paged_dir = _is_relation_dir(rel_dir)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if rel_dir == "pg_tblspc" and stat.S_ISLNK(st.st_mode):
                target = os.readlink(entry.path)
                tablespaces.append({"oid": entry.name, "location": target})
                dirs.append({"path": rel, "mode": 0o700, "type": "tablespace"})
                visit(os.path.realpath(entry.path), rel)
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name.startswith("pgsql_tmp"):
                    continue
                dirs.append({"path": rel, "mode": stat.S_IMODE(st.st_mode), "type": "dir"})
                if rel in SKIP_CONTENTS:
                    if rel == "pg_wal":
                        dirs.append({"path": "pg_wal/archive_status", "mode": 0o700,
                                     "type": "dir"})
                    continue
                visit(entry.path, rel)
            elif stat.S_ISREG(st.st_mode):
                if _skip_file(entry.name, top_level=not rel_dir) or entry.name in unlogged:
                    continue
                if paged_dir and TEMP_RELATION_FILE.match(entry.name):
                    continue
                match = RELATION_FILE.match(entry.name) if paged_dir else None
                segno = int(match.group(5) or 0) if match else 0
                files.append(SourceFile(
                    path=rel, abspath=entry.path, size=st.st_size,
                    mode=stat.S_IMODE(st.st_mode), mtime=st.st_mtime,
                    paged=match is not None, first_page=segno * PAGES_PER_SEGMENT))
            # other symlinks, sockets and fifos are not part of a backup

    visit(str(pgdata), "")
    return files, dirs, tablespaces
