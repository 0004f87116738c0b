"""A point's files as the blocks to write: a full's own, or a differential's over its base's.

Restore and verify share this reading of docs/repository-format.md (*Differentials*,
*Synthetic fulls*): a delta entry is the base file with the same path, cut or zero-extended
to the delta's size, with the delta's pages written over it; a layered entry (a synthetic
full's) is its read blocks with each layer's pages written over them in order. A
differential whose base manifest is gone cannot be restored; that is said before anything
is written.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from dbsafe.core.errors import DbsafeError
from dbsafe.services.lifecycle import manifest_checks
from dbsafe.vault.entries import path_key
from dbsafe.vault.records import FileEntry, layered_blocks
from dbsafe.vault.repository import Repository

PAGE_SIZE = 8192


def load_base(repo: Repository, manifest: dict) -> dict | None:
    """The base manifest of a differential (None for a full); point.base_missing if gone,
    vault.manifest_invalid if it breaks the format's rules (its entries in parts: as they
    are read)."""
    if manifest["type"] != "diff":
        return None
    try:
        base = repo.load_manifest(manifest["base"])
    except KeyError:
        raise DbsafeError("point.base_missing", point_id=manifest["point_id"],
                          base=manifest["base"],
                          name=manifest["instance"]["server"]) from None
    return manifest_checks.checked(base, manifest["base"], repo)


class BaseFiles:
    """A base's file entries by path, for a differential's entries asked in their order:
    entries in parts (path order) are read in step with them, one part at a time; inline
    ones (manifests of before) are held by path."""

    def __init__(self, base: dict | None) -> None:
        self._by_path: dict[str, dict] | None = None
        self._next: Iterator[FileEntry] | None = None
        self._at: dict | None = None
        if base is None:
            self._by_path = {}
        elif "files" in base:
            self._by_path = {e["path"]: e for e in base["files"]}
        else:
            self._next = manifest_checks.files(base)
            self._at = next(self._next, None)

    def get(self, path: str) -> dict | None:
        """The base's entry of ``path``; None when it has none (or, in step, when ``path``
        comes before one asked already: a differential in path order never asks so)."""
        if self._by_path is not None:
            return self._by_path.get(path)
        assert self._next is not None
        key = path_key(path)
        while self._at is not None and path_key(self._at["path"]) < key:
            self._at = next(self._next, None)
        return self._at if self._at is not None and self._at["path"] == path else None


def file_writes(manifest: dict, base: dict | None,
                entries: Iterable[dict] | None = None) -> Iterator[dict]:
    """One entry per file of ``entries`` (default: all the point's,
    ``manifest_checks.files``), one at a time: ``path, size, mode, mtime``; ``blocks``, the
    ids written at offsets 0, block_size, ... (each cut at ``blocks_size`` when given, else
    at ``size``); and for a delta or layered entry ``pages``: per block of changed pages,
    ``(id, [(file offset, offset in block, length), ...])``, written after every block of
    ``blocks``. No two page writes of a file overlap (a later layer's page replaces an
    earlier one's), so they may run in any order."""
    base_files = BaseFiles(base)
    bs = manifest.get("block_size", 0)
    for entry in entries if entries is not None else manifest_checks.files(manifest):
        delta = entry.get("delta")
        if delta is not None:
            under = base_files.get(entry["path"])
            if under is None:
                raise DbsafeError("vault.manifest_invalid", point_id=manifest["point_id"],
                                  entry=f"delta {entry['path'][:200]!r}",
                                  rule="has no file of that path in its base")
            limit = min(entry["size"], under["size"])
            if not delta["pages"] and not under.get("layers"):  # most files of a diff
                yield {**entry, "blocks": under["blocks"][:-(-limit // bs)],
                       "blocks_size": limit, "pages": []}
                continue
            read, layers = _layers(under, limit)
            layers.append(_Layer(delta["pages"], entry["blocks"], delta["block_pages"],
                                 entry["size"]))
        elif entry.get("layers") is not None:
            limit = entry["size"]
            read, layers = _layers(entry, limit)
        else:
            yield entry
            continue
        yield {**entry, "blocks": read[:-(-limit // bs)], "blocks_size": limit,
               "pages": _resolve(layers)}


@dataclass
class _Layer:
    """Pages written over a file: runs, the blocks holding them (``per_block`` pages
    each), and the file's size they are cut at."""

    runs: list
    blocks: list[str]
    per_block: list[int]
    size: int


def _layers(entry: dict, limit: int) -> tuple[list[str], list[_Layer]]:
    """A whole or layered entry as its read blocks and its layers, cut at ``limit``."""
    read, layers = layered_blocks(entry)
    return read, [_Layer(layer["pages"], blocks, layer["block_pages"], limit)
                  for layer, blocks in layers]


def _resolve(layers: list[_Layer]) -> list[tuple[str, list[tuple[int, int, int]]]]:
    """The page writes of ``layers`` (oldest first): each page from the newest layer that
    has it, none at or past the size its layer is cut at; runs of consecutive pages of one
    block become one write."""
    taken: set[int] = set()
    out = []
    for layer in reversed(layers):
        end = layer.size // PAGE_SIZE
        pages = (p for first, count in layer.runs for p in range(first, first + count))
        mine: list[int] = []
        for id_hex, n in zip(layer.blocks, layer.per_block, strict=True):
            writes: list[list[int]] = []
            for i in range(n):
                page = next(pages)
                if page >= end or page in taken:
                    continue
                mine.append(page)
                if writes and writes[-1][0] + writes[-1][2] == page * PAGE_SIZE \
                        and writes[-1][1] + writes[-1][2] == i * PAGE_SIZE:
                    writes[-1][2] += PAGE_SIZE
                else:
                    writes.append([page * PAGE_SIZE, i * PAGE_SIZE, PAGE_SIZE])
            if writes:
                out.append((id_hex, [(w[0], w[1], w[2]) for w in writes]))
        taken.update(mine)
    return out


Overlay = dict[int, list[tuple[str, int, int, int]]]


class RecentBlocks:
    """The last blocks of changed pages readers fetched (``keep`` of them, shared by the
    threads): a block holds up to 128 pages, and a file's pages come in file order, so
    each one serves the file blocks its pages fall on, read one after the other, without
    being fetched and decompressed again for each."""

    def __init__(self, read: Callable[[bytes], bytes], keep: int = 8) -> None:
        self._read, self._keep = read, keep
        self._blocks: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, block_id: bytes) -> bytes:
        with self._lock:
            data = self._blocks.get(block_id)
        if data is None:
            data = self._read(block_id)
            with self._lock:
                self._blocks[block_id] = data
                if len(self._blocks) > self._keep:
                    self._blocks.popitem(last=False)
        return data


def patched_block(data: bytes | memoryview, keep: int, length: int,
                  patches: list[tuple[str, int, int, int]],
                  page_block: Callable[[str], bytes]) -> bytearray:
    """``length`` bytes of a file block: the first ``keep`` bytes of ``data``, zeros after,
    with ``patches`` (``pages_by_block``'s, their blocks from ``page_block``) written over
    them, cut at ``length``."""
    out = bytearray(length)
    keep = max(0, min(keep, len(data), length))
    out[:keep] = memoryview(data)[:keep]
    for page_id, at, into, n in patches:
        if into < length:
            n = min(n, length - into)
            out[into:into + n] = memoryview(page_block(page_id))[at:at + n]
    return out


def pages_by_block(entry: dict, block_size: int
                   ) -> tuple[Overlay, list[tuple[str, list[tuple[int, int, int]]]]]:
    """An entry's page writes (``file_writes``) as ``(block index → [(page block id,
    offset in it, offset in the file block, length)])`` for those that fall on one of its
    ``blocks``, so that a reader patches a block before it writes or compares it; and the
    others (past its blocks), as ``pages`` writes."""
    overlay: Overlay = {}
    beyond = []
    count = len(entry["blocks"])
    for id_hex, writes in entry.get("pages", ()):
        rest = []
        for file_offset, at, length in writes:
            end = file_offset + length
            while file_offset < end:
                b = file_offset // block_size
                n = min(end, (b + 1) * block_size) - file_offset
                if b < count:
                    overlay.setdefault(b, []).append(
                        (id_hex, at, file_offset - b * block_size, n))
                else:
                    rest.append((file_offset, at, n))
                file_offset, at = file_offset + n, at + n
        if rest:
            beyond.append((id_hex, rest))
    return overlay, beyond


def blocks_used(manifest: dict, base: dict | None) -> dict[str, int]:
    """Each distinct block a restore of the point reads, with its size (what verify reads;
    ``files_using`` names the files of those it finds damaged)."""
    used: dict[str, int] = {}
    for _entry, id_hex, size in _reads(manifest, base):
        used.setdefault(id_hex, size)
    return used


def files_using(manifest: dict, base: dict | None, ids: set[str]) -> dict[str, list[str]]:
    """The files a restore of the point writes from each block of ``ids``."""
    users: dict[str, list[str]] = {}
    for entry, id_hex, _size in _reads(manifest, base):
        if id_hex in ids:
            users.setdefault(id_hex, []).append(entry["path"])
    return users


def _reads(manifest: dict, base: dict | None) -> Iterator[tuple[dict, str, int]]:
    """(entry, block id, bytes used of it) of every block read of a restore of the point."""
    bs = manifest.get("block_size", 0)  # a log point has none (and no files)
    for entry in itertools.chain(file_writes(manifest, base), manifest["wal"]):
        for i, id_hex in enumerate(entry["blocks"]):
            yield entry, id_hex, min(bs, entry.get("blocks_size", entry["size"]) - i * bs)
        for id_hex, writes in entry.get("pages", ()):
            yield entry, id_hex, sum(w[2] for w in writes)
