"""``verify --deep``: a point's relation pages against the live data directory's.

A page the server has not changed since a point started (its LSN is below the point's
start LSN) must be in the point exactly as it is on disk: the checkpoint that started the
backup wrote every page changed before it, and every change since moves the page's LSN.
So comparing those pages checks, on the server's own data, what a synthetic full assumes:
that the change map named every page that changed (services/backup/synthetic.py). Pages
changed since, files created or dropped since, and other forks are not comparable and are
only counted. The point is read as a restore would write it (services/restore/combine.py),
one block at a time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dbsafe.core.concurrency import run_parallel
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.base import SourceFile
from dbsafe.engines.postgres import discover
from dbsafe.engines.postgres import files as pgfiles
from dbsafe.engines.postgres.delta import compare_unchanged, tracks_changes
from dbsafe.engines.postgres.pages import PAGE_SIZE
from dbsafe.engines.postgres.wal import parse_lsn
from dbsafe.services.backup.copy import open_source
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import open_instance
from dbsafe.services.restore import combine

MAX_LISTED = 100


@dataclass
class _Tally:
    files: int = 0
    pages_compared: int = 0
    pages_changed_since: int = 0
    files_gone_since: int = 0
    differ: list[dict] = field(default_factory=list)
    differ_count: int = 0


def compare_point(vault: Vault, server: dict, manifest: dict, workers: int,
                  on_bytes) -> dict:
    """The live comparison of one point of ``server`` (whose files this host reads)."""
    if manifest["type"] == "log" or not (manifest.get("files")
                                         or manifest.get("entries", {}).get("files")):
        return {"compared": None, "files": 0, "pages_compared": 0, "pages_differ": 0,
                "differ": [], "ok": True, "note": "a log point holds no files"}
    if manifest["instance"]["system_identifier"] != server["system_identifier"]:
        raise DbsafeError("server.system_changed", pgdata=server["pgdata"],
                          name=server["name"], found=server["system_identifier"],
                          expected=manifest["instance"]["system_identifier"])
    with open_instance(server) as conn:
        tablespaces = discover.tablespace_locations(conn)
    live = {f.path: f for f in pgfiles.walk(Path(server["pgdata"]), tablespaces)[0]}
    entries = combine.file_writes(manifest, combine.load_base(vault.repo, manifest))
    since = parse_lsn(manifest["start_lsn"])
    whole_pages = bool(manifest["instance"].get("data_checksums"))
    tally, lock = _Tally(), threading.Lock()

    def calls() -> Iterator[tuple[Callable, tuple]]:  # as the point's entries are read
        for entry in entries:
            source = live.get(entry["path"])
            if source is None:
                with lock:
                    tally.files_gone_since += _is_relation(entry)
            elif tracks_changes(source) and entry["size"] % PAGE_SIZE == 0:
                yield _compare_file, (vault, entry, source, since, whole_pages, tally, lock,
                                      on_bytes)
    run_parallel(workers, "dbsafe-deep", calls())
    return {"compared": "bytes" if whole_pages else "lsn", "files": tally.files,
            "pages_compared": tally.pages_compared,
            "pages_changed_since": tally.pages_changed_since,
            "files_gone_since": tally.files_gone_since,
            "pages_differ": tally.differ_count,
            "differ": sorted(tally.differ, key=lambda d: (d["path"], d["page"])),
            "ok": tally.differ_count == 0}


def _is_relation(entry: dict) -> bool:
    return pgfiles.RELATION_FILE.match(entry["path"].rsplit("/", 1)[-1]) is not None


def _compare_file(vault: Vault, entry: dict, source: SourceFile, since: int,
                  whole_pages: bool, tally: _Tally, lock: threading.Lock, on_bytes) -> None:
    repo, bs = vault.repo, vault.repo.block_size
    used = entry.get("blocks_size", entry["size"])
    overlay, beyond = combine.pages_by_block(entry, bs)
    for id_hex, writes in beyond:  # pages past the blocks: an overlay of blocks of zeros
        for file_offset, at, n in writes:
            overlay.setdefault(file_offset // bs, []).append(
                (id_hex, at, file_offset % bs, n))
    recent = combine.RecentBlocks(repo.read_block)
    size = min(entry["size"], source.size)
    compared = changed = 0
    differ: list[dict] = []
    fd = open_source(source)
    if fd is None:  # dropped since the walk
        with lock:
            tally.files_gone_since += 1
        return
    try:
        for b in range(-(-size // bs)):
            length = min(bs, size - b * bs)
            read = b < len(entry["blocks"]) and b * bs < used
            data = repo.read_block(bytes.fromhex(entry["blocks"][b])) if read else b""
            mine = combine.patched_block(data, used - b * bs, length, overlay.get(b, []),
                                         lambda id_hex: recent.get(bytes.fromhex(id_hex)))
            live = os.pread(fd, length, b * bs)
            result = compare_unchanged(mine, live, since, whole_pages)
            compared, changed = compared + result.compared, changed + result.changed
            differ += [{"path": entry["path"], "page": b * bs // PAGE_SIZE + i}
                       for i in result.differ]
            on_bytes(length)
    finally:
        os.close(fd)
    with lock:
        tally.files += 1
        tally.pages_compared += compared
        tally.pages_changed_since += changed
        tally.differ_count += len(differ)
        tally.differ += differ[:max(0, MAX_LISTED - len(tally.differ))]
