"""What each protected item of a backup takes: the size of its files and the new bytes they
added to the vault, for the reports' usage per database (manifest ``stats.usage``,
docs/repository-format.md).

Counted as each file's entry is made, from figures the copy already has (the file's size,
the bytes ``BlockSink.store`` said it added): nothing is read again. A database's files are
found by their path (``selection.database_oid``); every other file, the backup's WAL and
what is not a file's block (pack headers, index files, entry parts) count for the instance,
so the items' ``stored`` add up to the point's ``bytes_stored``.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from dbsafe.services.backup.selection import database_oid
from dbsafe.vault.records import Database


class Usage:
    """Bytes and new bytes per database oid (None: the instance), added to from the copy's
    threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: dict[int | None, int] = defaultdict(int)
        self._stored: dict[int | None, int] = defaultdict(int)

    def add(self, path: str, size: int, stored: int = 0) -> None:
        oid = database_oid(path)
        with self._lock:
            self._bytes[oid] += size
            self._stored[oid] += stored

    def summary(self, databases: list[Database], bytes_stored: int, instance_bytes: int
                ) -> dict:
        """``stats.usage``: per database the backup holds (one it left out is not named:
        its size is not known here), and the instance with ``instance_bytes`` more (its
        WAL) and the rest of ``bytes_stored``. A file under a database folder no listed
        database owns (one created while the backup ran) counts for the instance."""
        names = {d["oid"]: d["name"] for d in databases if d["included"]}
        per_db = {name: {"bytes": self._bytes.get(oid, 0), "stored": self._stored.get(oid, 0)}
                  for oid, name in sorted(names.items(), key=lambda kv: kv[1])}
        db_stored = sum(d["stored"] for d in per_db.values())
        other_bytes = sum(n for oid, n in self._bytes.items() if oid not in names)
        return {"databases": per_db,
                "instance": {"bytes": other_bytes + instance_bytes,
                             "stored": max(0, bytes_stored - db_stored)}}
