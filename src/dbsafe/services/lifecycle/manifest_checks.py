"""A manifest is checked before a restore, a drill, a verify or a differential acts on it.

The repository's rules (vault/manifest_rules.py: relative normalised paths, plain modes,
consistent sizes) and PostgreSQL's layout (engines/postgres/layout_rules.py: tablespaces,
base/, global/, WAL names) together; the first break refuses the point with
``vault.manifest_invalid``, naming the entry and the rule, before any target exists.
"""

from __future__ import annotations

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import layout_rules
from dbsafe.vault import manifest_rules


def checked(manifest: dict, point_id: str) -> dict:
    """``manifest`` when it keeps every rule; else ``vault.manifest_invalid``."""
    try:
        manifest_rules.check(manifest)
    except manifest_rules.ManifestProblem as problem:
        raise DbsafeError("vault.manifest_invalid", point_id=point_id, entry=problem.entry,
                          rule=problem.rule) from None
    for entry, rule in layout_rules.problems(manifest):
        raise DbsafeError("vault.manifest_invalid", point_id=point_id, entry=entry, rule=rule)
    return manifest


def check_wal_names(names: list[str], where: str) -> None:
    """WAL names that become files (staged for recovery): PostgreSQL's names only."""
    for name in names:
        rule = layout_rules.wal_name_problem(name)
        if rule:
            raise DbsafeError("vault.manifest_invalid", point_id=where,
                              entry=f"WAL file {str(name)[:200]!r}", rule=rule)
