"""A recovery point's files, read in place from the vault: the tree and each file's bytes
at any offset, fetched block by block when first asked for.

This is the read side of instant access (docs/instant-access.md). A file of the point is
what a restore would write (``combine.file_writes``: a differential's file is its base's
blocks, cut at its size, with its changed pages over them; a synthetic full's layers
alike), but nothing is written: a read of ``length`` bytes at ``offset`` fetches only the
blocks under that range, checks them against their ids as every read of the vault does,
lays the changed pages over them and keeps the result in a bounded in-memory cache. A
block read twice (PostgreSQL reads a page, evicts it, reads it again) is fetched once while
it stays in the cache; two threads asking for the same block wait for one fetch.

The view counts what it fetched (``fetched_bytes``: stored bytes, as the vault holds them),
which is how the tests and the benchmark tell that a lookup read a few blocks of a large
instance rather than all of it.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbsafe.core.errors import DbsafeError
from dbsafe.services.lifecycle import manifest_checks
from dbsafe.services.restore import combine
from dbsafe.vault.index import BlobLocation
from dbsafe.vault.repository import BlockError, Repository


def _memory_share(part: int, low: int, high: int) -> int:
    """``1/part`` of this machine's memory, within [low, high] bytes."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return low
    return max(low, min(high, total // part))


# Decoded blocks kept in memory: a twelfth of the machine's memory, from 256 MiB to 2 GiB
# (a random read that misses decodes a whole block, 1 MiB, for one 8 KiB page: the share
# of the instance held decoded is what its random reads cost)
CACHE_BYTES = _memory_share(12, 256 << 20, 2 << 30)
# Blocks as stored, kept too (a 24th, 256 MiB to 1 GiB): a page read again after its
# decoded block left the cache is decoded again (about a millisecond) instead of fetched
# again (a GET on object storage). Compressed, they hold several times more of the instance
# (pgbench's: 25 times)
STORED_BYTES = _memory_share(24, 256 << 20, 1 << 30)
WAL_DIR = "pg_wal"


@dataclass
class ViewFile:
    """One regular file of the point: its size and mode, and where each block of it
    comes from (``blocks``, cut at ``kept``; ``patches``: changed pages per block index)."""

    number: int
    path: str
    size: int
    mode: int
    mtime: float
    blocks: list[str]
    kept: int
    patches: dict[int, list[tuple[str, int, int, int]]] = field(default_factory=dict)


@dataclass
class ViewDir:
    path: str
    mode: int


class BlockCache:
    """Blocks by key, least recently used first out, ``budget`` bytes in all (``len`` of
    each); a key being fetched is fetched once whatever the number of threads asking."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self._items: OrderedDict[object, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._fetching: dict[object, threading.Event] = {}

    def peek(self, key: object) -> Any:
        """The block when it is cached, without fetching it."""
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def get(self, key: object, fetch: Callable[[], Any]) -> Any:
        while True:
            with self._lock:
                data = self._items.get(key)
                if data is not None:
                    self._items.move_to_end(key)
                    return data
                waiting = self._fetching.get(key)
                if waiting is None:
                    done = self._fetching[key] = threading.Event()
                    break
            waiting.wait()  # another thread fetches it: take its result (or fetch anew)
        try:
            data = fetch()
            with self._lock:
                self._items[key] = data
                self._bytes += len(data)
                while self._bytes > self.budget and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)
            return data
        finally:
            with self._lock:
                del self._fetching[key]
            done.set()


class PointView:
    """The files and folders of one recovery point (``manifest``, over ``base`` when it is
    a differential), and reads of their bytes through ``cache``."""

    def __init__(self, repo: Repository, manifest: dict, base: dict | None,
                 cache: BlockCache | None = None) -> None:
        self.repo = repo
        self.point_id: str = manifest["point_id"]
        self.block_size: int = manifest["block_size"]
        self.cache = cache or BlockCache()
        self.stored = BlockCache(STORED_BYTES)
        self.files: dict[str, ViewFile] = {}
        self.dirs: dict[str, ViewDir] = {"": ViewDir("", 0o700)}
        self.fetched_bytes = 0
        self.fetched_blocks = 0
        self._count = threading.Lock()
        for d in manifest["dirs"]:
            self._add_dir(d["path"], d.get("mode"))
        for entry in combine.file_writes(manifest, base, manifest_checks.files(manifest)):
            self._add_file(entry)
        for wal in manifest["wal"]:  # the WAL of the backup itself, in pg_wal as a restore
            self._add_file({**wal, "path": f"{WAL_DIR}/{wal['path']}", "mode": 0o600})

    # the tree ----------------------------------------------------------------------------
    def _add_dir(self, path: str, mode: int | None) -> None:
        parts = _parts(path)
        for depth in range(1, len(parts) + 1):
            here = "/".join(parts[:depth])
            if here in self.files:
                raise _invalid(self.point_id, path, "is a file and a folder")
            if here not in self.dirs:
                self.dirs[here] = ViewDir(here, 0o700)
        self.dirs["/".join(parts)].mode = stat.S_IMODE(mode or 0o700) | 0o700

    def _add_file(self, entry: dict) -> None:
        path = entry["path"]
        parts = _parts(path)
        parent = "/".join(parts[:-1])
        if parent not in self.dirs:
            self._add_dir(parent, None)
        if path in self.dirs or path in self.files:
            raise _invalid(self.point_id, path, "is listed twice")
        bs = self.block_size
        overlay, beyond = combine.pages_by_block(entry, bs)
        for id_hex, writes in beyond:  # pages past the blocks: on blocks of zeros
            for file_offset, at, n in writes:
                b = file_offset // bs
                overlay.setdefault(b, []).append((id_hex, at, file_offset - b * bs, n))
        self.files[path] = ViewFile(
            len(self.files), path, entry["size"], stat.S_IMODE(entry.get("mode") or 0o600),
            float(entry.get("mtime") or 0), entry["blocks"],
            entry.get("blocks_size", entry["size"]), overlay)

    # reading -----------------------------------------------------------------------------
    def read(self, file: ViewFile, offset: int, length: int) -> bytes:
        """``length`` bytes of ``file`` from ``offset`` (fewer at its end)."""
        out = self._read(file, offset, length, self._file_block)
        assert out is not None  # _file_block always has the block
        return out

    def read_cached(self, file: ViewFile, offset: int, length: int) -> bytes | None:
        """What ``read`` returns, when every block it needs is in the cache (None when one
        is not): the file system answers those reads at once, without handing them to a
        thread that could wait on the storage (most reads of a running server)."""
        return self._read(file, offset, length, self._cached_block)

    def _read(self, file: ViewFile, offset: int, length: int,
              block: Callable[[ViewFile, int], bytes | None]) -> bytes | None:
        end = min(file.size, offset + length)
        if offset >= end:
            return b""
        bs = self.block_size
        out = bytearray()
        b = offset // bs
        while offset < end:
            data = block(file, b)
            if data is None:
                return None
            into = offset - b * bs
            n = min(end - offset, bs - into)
            piece = memoryview(data)[into:into + n]
            out += piece
            if len(piece) < n:  # past the block's bytes: zeros
                out += bytes(n - len(piece))
            offset += n
            b += 1
        return bytes(out)

    def _file_block(self, file: ViewFile, b: int) -> bytes:
        """Block ``b`` of ``file`` as the file holds it (shorter at the file's end)."""
        bs = self.block_size
        length = max(0, min(bs, file.size - b * bs))
        patches = file.patches.get(b)
        raw_id = file.blocks[b] if b < len(file.blocks) else None
        keep = max(0, min(bs, file.kept - b * bs))
        if raw_id is not None and not patches and keep >= length:
            data = self._block(raw_id)
            return data if len(data) <= length else data[:length]
        return self.cache.get(("file", file.number, b), lambda: bytes(combine.patched_block(
            self._block(raw_id) if raw_id is not None else b"", keep, length,
            patches or [], self._block)))

    def _cached_block(self, file: ViewFile, b: int) -> bytes | None:
        length = max(0, min(self.block_size, file.size - b * self.block_size))
        patched = self.cache.peek(("file", file.number, b))
        if patched is not None:
            return patched
        raw_id = file.blocks[b] if b < len(file.blocks) else None
        keep = max(0, min(self.block_size, file.kept - b * self.block_size))
        if raw_id is None or file.patches.get(b) or keep < length:
            return None
        data = self.cache.peek(raw_id)
        return data if data is None or len(data) <= length else data[:length]

    def _block(self, id_hex: str) -> bytes:
        return self.cache.get(id_hex, lambda: self._decode(id_hex))

    def _decode(self, id_hex: str) -> bytes:
        """A block decoded from its stored bytes, fetched only when they are not kept."""
        block_id = bytes.fromhex(id_hex)
        stored = self.stored.get(id_hex, lambda: self._fetch(block_id))
        try:
            return self.repo.decode_block(block_id, stored.where, stored.blob)
        except BlockError as exc:
            raise exc.as_error(f"point {self.point_id}") from None

    def _fetch(self, block_id: bytes) -> _Stored:
        try:
            where, blob = self.repo.fetch_block(block_id)
        except BlockError as exc:
            raise exc.as_error(f"point {self.point_id}") from None
        with self._count:
            self.fetched_blocks += 1
            self.fetched_bytes += len(blob)
        return _Stored(where, blob)


@dataclass
class _Stored:
    """A block as the vault stores it (compressed, maybe encrypted) and where it lies."""

    where: BlobLocation
    blob: bytes

    def __len__(self) -> int:
        return len(self.blob)


def _parts(path: str) -> list[str]:
    parts = path.split("/") if path else []
    if any(p in ("", ".", "..") for p in parts):
        raise DbsafeError("vault.manifest_invalid", point_id="?", entry=repr(path[:200]),
                          rule="a path of plain names")
    return parts


def _invalid(point_id: str, path: str, rule: str) -> DbsafeError:
    return DbsafeError("vault.manifest_invalid", point_id=point_id, entry=repr(path[:200]),
                       rule=rule)
