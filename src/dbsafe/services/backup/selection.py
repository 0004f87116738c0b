"""Which databases a backup covers and a restore writes.

A database's files are ``base/<oid>/...`` and ``pg_tblspc/<tablespace>/PG_*/<oid>/...``;
everything else (global/, pg_xact/, ...) belongs to the instance and is always taken, as
are the small non-relation files of every database folder, and template0 (never listed by
discovery, never changed, needed by CREATE DATABASE).
Template databases are always taken (a restored instance needs a whole template1 for
CREATE DATABASE). A database left out is recorded by its files' names and sizes: a restore
creates them as sparse, all-zero files, as pgBackRest's selective restore does, so that WAL
replay finds every file it touches (the first change of each page after the backup's
checkpoint carries a full page image). Such a database is not usable after the restore:
connecting to it fails, and a restore that brings the server up drops it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.base import SourceFile
from dbsafe.vault.records import Database

DB_FILE = re.compile(r"^(?:base|pg_tblspc/\d+/PG_[^/]+)/(\d+)/(\d+(?:_\w+)?(?:\.\d+)?)$")
# a relation file, or the folder's relation map (a database left out of a restore keeps
# only its PG_VERSION)
DB_FOLDER_FILE = re.compile(
    r"^(?:base|pg_tblspc/\d+/PG_[^/]+)/(\d+)/(\d+(?:_\w+)?(?:\.\d+)?|pg_filenode\.map)$")


def database_oid(path: str) -> int | None:
    """The database a relation file belongs to; None for every other file (a database's
    PG_VERSION and pg_filenode.map are always kept, so the folder stays a database)."""
    m = DB_FILE.match(path)
    return int(m.group(1)) if m else None


def choose(dbs: list[dict], wanted: list[str] | None, protected: list[str],
           backup_type: str, server_name: str) -> tuple[list[Database], set[int]]:
    """(databases with an ``included`` flag, OIDs to leave out) for one backup run.

    ``wanted`` (from --db) wins; else the protected databases; else all of them.
    """
    names = {d["name"] for d in dbs}
    chosen = set(wanted or protected or names)
    for name in chosen - names:
        raise DbsafeError("protect.unknown_database", name=server_name, database=name,
                          valid=", ".join(sorted(names)))
    if wanted and backup_type in ("diff", "log"):
        for d in dbs:
            if d["name"] in chosen and d["read_only"]:
                raise DbsafeError("backup.read_only_db", database=d["name"])
    listed = [Database.new(name=d["name"], oid=d["oid"], template=is_template(d),
                           included=d["name"] in chosen or is_template(d)) for d in dbs]
    return listed, {d["oid"] for d in listed if not d["included"]}


def is_template(db: dict) -> bool:
    """Template databases (template1, and any marked as one) are always taken and restored
    whole: a restored instance needs them for CREATE DATABASE. Manifests written before the
    ``template`` flag existed know template1 by its name."""
    return bool(db.get("is_template") or db.get("template") or db.get("name") == "template1")


def split_files(files: Iterable[SourceFile], skip: set[int]
                ) -> tuple[Iterator[SourceFile], list[dict]]:
    """(files to copy, as they come; entries of files left out: path, size, mode, complete
    once the files to copy are all taken)."""
    skipped: list[dict] = []

    def kept() -> Iterator[SourceFile]:
        for f in files:
            if skip and database_oid(f.path) in skip:
                skipped.append({"path": f.path, "size": f.size, "mode": f.mode})
            else:
                yield f
    return kept(), skipped


@dataclass
class RestorePlan:
    """What a restore of some databases writes: every file of the point but those of the
    databases ``left_out`` (by oid, ``drop``), which it creates as sparse zero files, as it
    does the point's own ``skipped`` ones."""

    skipped: list[dict]
    left_out: list[str]
    drop: set[int]

    def keeps(self, entry: dict) -> bool:
        """Whether ``entry`` is written (else it is created as a sparse zero file)."""
        m = DB_FOLDER_FILE.match(entry["path"])
        return m is None or int(m.group(1)) not in self.drop


def restore_plan(manifest: dict, wanted: list[str] | None) -> RestorePlan:
    """The plan of a restore of ``wanted`` databases (None: all the point holds).

    A database left out keeps its folder, so that WAL replay finds every file it touches,
    but its relation files are sparse zeros and so is its ``pg_filenode.map``: connecting to
    it fails ("relation mapping file ... contains invalid data", as after pgBackRest's
    selective restore) instead of showing empty or half-replayed catalogs. A restore that
    brings the server up drops it (services/restore/instance.py)."""
    listed = {d["name"]: d for d in manifest.get("databases", [])}
    if wanted:
        for name in wanted:
            if name not in listed or not listed[name]["included"]:
                raise DbsafeError("restore.database_not_in_point", database=name,
                                  point_id=manifest["point_id"],
                                  held=", ".join(n for n, d in listed.items() if d["included"]))
        left_out = sorted(n for n, d in listed.items() if n not in wanted and not is_template(d))
    else:
        left_out = sorted(n for n, d in listed.items() if not d["included"])
    return RestorePlan(list(manifest.get("skipped", [])), left_out,
                       {listed[n]["oid"] for n in left_out})


def control_database(manifest: dict, left_out: list[str]) -> str:
    """A database to ask a restored server things in: ``postgres`` when the point holds it,
    else ``template1`` (templates are always held)."""
    names = {d["name"] for d in manifest.get("databases", [])} or {"postgres"}
    return "postgres" if "postgres" in names and "postgres" not in left_out else "template1"
