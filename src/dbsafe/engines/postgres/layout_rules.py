"""Where PostgreSQL fixes a data directory's layout, a backup to restore must follow it.

The repository's own rules (vault/manifest_rules.py) keep every path of a manifest
relative and normalised; these add what only PostgreSQL knows, so that a forged manifest
cannot use the places a restore treats specially: a tablespace is ``pg_tblspc/<oid>``
with a digits-only oid, an absolute normalised location and, below it, only
``PG_<major>_<catalog version>/<database oid>/<file>``; ``base/`` holds only
``<database oid>/<file>``, ``global/`` only files; WAL files are named as PostgreSQL
names them (segments, ``.partial``, ``.history``, ``.backup``); and files a base backup
never holds (``backup_label``, ``recovery.signal`` …) are not restored from one.
Other files and folders of a data directory (configuration, logs) are the user's:
their names are free.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from dbsafe.core.path_rules import absolute_path_problem
from dbsafe.engines.postgres.files import SKIP_TOP_FILES

WAL_NAME = re.compile(r"[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history")
OID = re.compile(r"[1-9][0-9]{0,9}")
VERSION_DIR = re.compile(r"PG_(\d+)_\d+")
MAX_OID = 2**32 - 1
CONTROL_FILE, CONTROL_SIZE = "global/pg_control", 8192  # PG_CONTROL_FILE_SIZE

Problem = tuple[str, str]  # (the entry, the rule it breaks)


def wal_name_problem(name: object) -> str | None:
    """Why ``name`` is not the name of a WAL file PostgreSQL archives (None when it is)."""
    if not isinstance(name, str) or not WAL_NAME.fullmatch(name):
        return "is not a WAL file name (segment, .partial, .history or .backup)"
    return None


def _oid(text: object) -> bool:
    return isinstance(text, str) and bool(OID.fullmatch(text)) and int(text) <= MAX_OID


def major_of(doc: dict) -> object:
    """The manifest's PostgreSQL major version (``problems`` checked it is one)."""
    instance = doc.get("instance")
    return instance.get("pg_version") if isinstance(instance, dict) else None


def problems(doc: dict) -> Iterator[Problem]:
    """Every break of PostgreSQL's layout in a manifest the repository's rules accepted."""
    major = doc.get("instance", {}).get("pg_version") if isinstance(
        doc.get("instance"), dict) else None
    if (doc.get("files") or (doc.get("entries") or {}).get("files")) and \
            not isinstance(major, int):
        yield "instance.pg_version", "is not a PostgreSQL major version"
    oids: set[str] = set()
    for i, ts in enumerate(doc.get("tablespaces") or []):
        name = f"tablespaces[{i}]"
        if not isinstance(ts, dict) or not _oid(ts.get("oid")):
            yield name, "has an oid that is not digits only"
            continue
        if ts["oid"] in oids:
            yield name, f"lists tablespace {ts['oid']} twice"
        oids.add(ts["oid"])
        problem = absolute_path_problem(ts.get("location"))
        if problem:
            yield name, f"location {problem}"
    for key, is_dir in (("dirs", True), ("files", False), ("skipped", False)):
        for i, entry in enumerate(doc.get(key) or []):
            rule = entry_problem(entry, is_dir, major, oids)
            if rule:
                yield f"{key}[{i}] {entry['path'][:200]!r}", rule
    for i, entry in enumerate(doc.get("wal") or []):
        problem = wal_name_problem(entry["path"])
        if problem:
            yield f"wal[{i}] {entry['path'][:200]!r}", problem


def tablespace_oids(doc: dict) -> set[str]:
    """The oids of the manifest's tablespaces (``problems`` checked them)."""
    return {ts["oid"] for ts in doc.get("tablespaces") or [] if isinstance(ts, dict)}


def entry_problem(entry: dict, is_dir: bool, major: object, oids: set[str]) -> str | None:
    """What breaks PostgreSQL's layout in one entry of ``dirs`` (``is_dir``), ``files``
    or ``skipped``, or None; ``oids``: the manifest's tablespaces."""
    if entry["path"] == CONTROL_FILE and entry.get("size") != CONTROL_SIZE:
        return f"is not {CONTROL_SIZE} bytes, the size of PostgreSQL's control file"
    return _path_rule(entry["path"], is_dir, entry.get("type") == "tablespace", major, oids)


def _path_rule(path: str, is_dir: bool, is_link: bool, major: object,
               oids: set[str]) -> str | None:
    """What is wrong with ``path`` (a folder when ``is_dir``; a tablespace link when
    ``is_link``) in PostgreSQL's layout, or None."""
    parts = path.split("/")
    top, depth = parts[0], len(parts)
    if is_link and not (top == "pg_tblspc" and depth == 2):
        return "is a tablespace entry outside pg_tblspc/<oid>"
    if top == "base":
        if (is_dir and depth == 1) or (is_dir and depth == 2 and _oid(parts[1])) or \
                (not is_dir and depth == 3 and _oid(parts[1])):
            return None
        return "is not base/<database oid>/<file>"
    if top == "global":
        return None if (is_dir and depth == 1) or (not is_dir and depth == 2) else \
            "is not global/<file>"
    if top == "pg_tblspc":
        if depth == 1:
            return None if is_dir else "is a file where the pg_tblspc folder goes"
        if parts[1] not in oids:
            return "is in a tablespace the manifest does not list"
        if depth == 2:
            return None if is_link else "replaces a tablespace link"
        version = VERSION_DIR.fullmatch(parts[2])
        if not version or int(version.group(1)) != major:
            return f"is not in this backup's PG_{major}_<catalog version> folder"
        if (is_dir and depth == 3) or (is_dir and depth == 4 and _oid(parts[3])) or \
                (not is_dir and depth == 5 and _oid(parts[3])):
            return None
        return "is not pg_tblspc/<oid>/PG_<version>/<database oid>/<file>"
    if depth == 1 and not is_dir and top in SKIP_TOP_FILES:
        return "is a file a base backup never holds (the restore writes its own)"
    return None
