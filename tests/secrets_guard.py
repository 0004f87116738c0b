"""Secrets hygiene: every secret a test hands to dbsafe (passphrases,
object-store credentials, catalog passwords, plain master keys) is registered here, and
everything the test run writes is searched for it: the output of every dbsafe command
(--json and errors), and every file left in a test area when it is removed (logs, job
records in the catalog, manifests, PostgreSQL's configuration, the vault's objects).

Key files are where a key belongs (`key`, `*.key`): they are skipped. Relation data and
WAL of PostgreSQL clusters are skipped too (dbsafe writes no configuration there; the
configuration files beside them are searched), and so are files over 16 MiB: full packs of
compressed blocks, where a configuration file's text would not appear as it is anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

SECRETS: set[str] = set()
MIN_LENGTH = 12  # shorter strings turn up in random bytes by chance
MAX_BYTES = 16 << 20
SKIPPED_DIRS = {"base", "global", "pg_wal", "pg_xact", "pg_multixact", "pg_tblspc",
                "node_modules"}


def register(*secrets: str) -> None:
    for secret in secrets:
        assert len(secret) >= MIN_LENGTH, "register only secrets of 12+ characters"
        SECRETS.add(secret)


def leaks_in(text: str) -> list[str]:
    return sorted(s for s in SECRETS if s in text)


def _is_key_file(path: Path) -> bool:
    return path.name == "key" or path.suffix == ".key"


def scan_tree(root: Path) -> list[str]:
    """``path: secret`` for every registered secret found in a file under ``root``."""
    if not SECRETS or not root.exists():
        return []
    needles = [(s, s.encode()) for s in SECRETS]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if _is_key_file(path) or not path.is_file() or path.stat().st_size > MAX_BYTES:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {s!r}" for s, raw in needles if raw in data]
    return found
