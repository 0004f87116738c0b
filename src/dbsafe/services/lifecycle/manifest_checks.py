"""A manifest is checked before a restore, a drill, a verify or a differential acts on it.

The repository's rules (vault/manifest_rules.py: relative normalised paths, plain modes,
consistent sizes) and PostgreSQL's layout (engines/postgres/layout_rules.py: tablespaces,
base/, global/, WAL names) together; the first break refuses the point with
``vault.manifest_invalid``, naming the entry and the rule, before any target exists.
"""

from __future__ import annotations

from collections.abc import Iterator

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import layout_rules
from dbsafe.vault import manifest_rules
from dbsafe.vault.records import FileEntry
from dbsafe.vault.repository import Repository


def checked(manifest: dict, point_id: str, repo: Repository | None = None) -> dict:
    """``manifest`` when it keeps every rule; else ``vault.manifest_invalid``. Its file
    entries in parts (vault/entries.py) are checked as ``files`` reads them, from
    ``repo``."""
    try:
        manifest_rules.check(manifest)
    except manifest_rules.ManifestProblem as problem:
        raise DbsafeError("vault.manifest_invalid", point_id=point_id, entry=problem.entry,
                          rule=problem.rule) from None
    for entry, rule in layout_rules.problems(manifest):
        raise DbsafeError("vault.manifest_invalid", point_id=point_id, entry=entry, rule=rule)
    if "entries" in manifest:
        assert repo is not None, "a manifest in parts is read from its repository"
        setattr(manifest, _READER, lambda: _checked_parts(repo, manifest, point_id))
    return manifest


_READER = "checked_files"


def files(manifest: dict) -> Iterator[FileEntry]:
    """The file entries of a manifest ``checked`` returned, one at a time (from its parts,
    each checked against the rules as it comes; inline ones were checked with it). A
    reader that acts on them reads them all before it writes anything (a restore keeps
    what it read in a local spool and writes from there)."""
    reader = getattr(manifest, _READER, None)
    if reader is not None:
        yield from reader()
    else:
        for entry in manifest["files"]:
            yield FileEntry(entry)


def _checked_parts(repo: Repository, manifest: dict, point_id: str) -> Iterator[FileEntry]:
    rules = manifest_rules.FileRules(manifest)
    major, oids = layout_rules.major_of(manifest), layout_rules.tablespace_oids(manifest)
    for i, entry in enumerate(repo.files_of(manifest)):
        name = manifest_rules.shown("files", i, entry)
        try:
            rules.check(name, entry)
        except manifest_rules.ManifestProblem as problem:
            raise DbsafeError("vault.manifest_invalid", point_id=point_id,
                              entry=problem.entry, rule=problem.rule) from None
        rule = layout_rules.entry_problem(entry, False, major, oids)
        if rule:
            raise DbsafeError("vault.manifest_invalid", point_id=point_id, entry=name,
                              rule=rule)
        yield entry


def check_wal_names(names: list[str], where: str) -> None:
    """WAL names that become files (staged for recovery): PostgreSQL's names only."""
    for name in names:
        rule = layout_rules.wal_name_problem(name)
        if rule:
            raise DbsafeError("vault.manifest_invalid", point_id=where,
                              entry=f"WAL file {str(name)[:200]!r}", rule=rule)
