"""A point's files as the blocks to write: a full's own, or a differential's over its base's.

Restore and verify share this reading of docs/repository-format.md (*Differentials*): a
delta entry is the base file with the same path, cut or zero-extended to the delta's size,
with the delta's pages written over it. A differential whose base manifest is gone cannot
be restored; that is said before anything is written.
"""

from __future__ import annotations

from dbsafe.core.errors import DbsafeError
from dbsafe.services.lifecycle import manifest_checks
from dbsafe.vault.repository import Repository

PAGE_SIZE = 8192


def load_base(repo: Repository, manifest: dict) -> dict | None:
    """The base manifest of a differential (None for a full); point.base_missing if gone,
    vault.manifest_invalid if it breaks the format's rules."""
    if manifest["type"] != "diff":
        return None
    try:
        base = repo.load_manifest(manifest["base"])
    except KeyError:
        raise DbsafeError("point.base_missing", point_id=manifest["point_id"],
                          base=manifest["base"],
                          name=manifest["instance"]["server"]) from None
    return manifest_checks.checked(base, manifest["base"])


def file_writes(manifest: dict, base: dict | None) -> list[dict]:
    """One entry per file: ``path, size, mode, mtime`` and ``blocks``, the ids written at
    offsets 0, block_size, ... (each cut at ``size``); a delta entry adds ``pages``: per
    delta block, ``(id, [(file offset, offset in block, length), ...])``, written after
    every block of ``blocks``."""
    if base is None:
        return manifest["files"]
    base_files = {e["path"]: e for e in base["files"]}
    bs = manifest["block_size"]
    out = []
    for entry in manifest["files"]:
        delta = entry.get("delta")
        if delta is None:
            out.append(entry)
            continue
        under = base_files.get(entry["path"])
        if under is None:
            raise DbsafeError("vault.manifest_invalid", point_id=manifest["point_id"],
                              entry=f"delta {entry['path'][:200]!r}",
                              rule="has no file of that path in its base")
        used = -(-min(entry["size"], under["size"]) // bs)
        out.append({**entry, "blocks": under["blocks"][:used],
                    "pages": _scatter(delta, entry["blocks"])})
    return out


def _scatter(delta: dict, blocks: list[str]) -> list[tuple[str, list[tuple[int, int, int]]]]:
    """Where each delta block's pages go: runs of consecutive pages become one write."""
    pages = (p for first, count in delta["pages"] for p in range(first, first + count))
    out = []
    for id_hex, n in zip(blocks, delta["block_pages"], strict=True):
        writes: list[list[int]] = []
        for i in range(n):
            page = next(pages)
            if writes and writes[-1][0] + writes[-1][2] == page * PAGE_SIZE:
                writes[-1][2] += PAGE_SIZE
            else:
                writes.append([page * PAGE_SIZE, i * PAGE_SIZE, PAGE_SIZE])
        out.append((id_hex, [(w[0], w[1], w[2]) for w in writes]))
    return out


def blocks_used(manifest: dict, base: dict | None) -> dict[str, tuple[int, list[str]]]:
    """Each distinct block a restore of the point reads: its size and the files using it."""
    used: dict[str, tuple[int, list[str]]] = {}
    bs = manifest.get("block_size", 0)  # a log point has none (and no files)

    def add(id_hex: str, size: int, path: str) -> None:
        used.setdefault(id_hex, (size, []))[1].append(path)

    for entry in file_writes(manifest, base) + manifest["wal"]:
        for i, id_hex in enumerate(entry["blocks"]):
            add(id_hex, min(bs, entry["size"] - i * bs), entry["path"])
        for id_hex, writes in entry.get("pages", ()):
            add(id_hex, sum(w[2] for w in writes), entry["path"])
    return used
