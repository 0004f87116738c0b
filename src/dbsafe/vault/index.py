"""The map from block id to where its blob lies, loaded from ``index/``.

A vault of 2 TB in 1 MiB blocks has 2 million blocks: as a dict of objects that is ~300 MB
in every process, rebuilt from every index file at every start. So the map is a sorted
table of fixed-size records (numpy arrays, ~70 bytes a block) plus a small dict of the
packs added since (``OVERLAY_MAX`` blocks at most, then merged into the table). With a
client folder, the table is kept there (``blocks.idx``, docs/repository-format.md,
*Clients*) and mapped from the file: a process reads only the index files written since,
and holds in memory only the pages of the table it looks at.

Packs that garbage collection has tombstoned are *excluded*: their blocks can still be read
(a backup that started before the tombstone may use them), but a writer must not
deduplicate against them (``in`` says no), so it stores such blocks again. A block stored
in several packs keeps all its places: a lookup gives one in a pack not excluded when there
is one, and a pack swept away takes only its own places with it.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np  # the arrays' type; numpy itself is imported when first needed

OVERLAY_MAX = 200_000  # blocks held as objects before they are merged into the table
CACHE_NAME = "blocks.idx"
CACHE_MAGIC = b"DBSIDX1\n"
NO_KEY = 0xFFFF


@functools.cache
def _numpy() -> Any:
    """numpy, imported when a table is first made or read: a small vault's index never
    needs it, and a backup's process stays without it (tests/unit/test_backup_imports.py)."""
    import numpy
    return numpy


@functools.cache
def _record() -> Any:
    """A table's record (little-endian, packed): the block id, the pack and key by number,
    where the blob lies and how it is coded."""
    return _numpy().dtype([("id", "V32"), ("pack", "<u4"), ("offset", "<u8"),
                           ("length", "<u4"), ("raw_length", "<u4"), ("codec", "u1"),
                           ("key", "<u2")])


class BlobLocation(NamedTuple):
    pack_id: str
    offset: int
    length: int
    raw_length: int
    codec: int
    key_id: str | None  # the data key of an encrypted pack


class _Table:
    """Sorted records (by block id; a block in several packs has several) with their
    8-byte id prefixes apart (the binary search runs on those), and the names of the
    packs and keys the records refer to by number."""

    def __init__(self, prefixes: np.ndarray, records: np.ndarray, packs: list[str],
                 keys: list[str]) -> None:
        self.prefixes, self.records, self.packs, self.keys = prefixes, records, packs, keys

    @classmethod
    def empty(cls) -> _Table:
        np = _numpy()
        return cls(np.zeros(0, ">u8"), np.zeros(0, _record()), [], [])

    def places(self, block_id: bytes) -> list[BlobLocation]:
        prefix = int.from_bytes(block_id[:8], "big")
        i = int(self.prefixes.searchsorted(prefix, "left"))
        out = []
        while i < len(self.prefixes) and int(self.prefixes[i]) == prefix:
            r = self.records[i]
            if r["id"].tobytes() == block_id:
                key = int(r["key"])
                out.append(BlobLocation(self.packs[int(r["pack"])], int(r["offset"]),
                                        int(r["length"]), int(r["raw_length"]),
                                        int(r["codec"]), None if key == NO_KEY else self.keys[key]))
            i += 1
        return out

    def merged(self, blobs: dict[bytes, list[BlobLocation]], drop: set[str]) -> _Table:
        """This table without the packs ``drop``, with ``blobs`` added."""
        np = _numpy()
        packs = [p for p in dict.fromkeys(self.packs + [loc.pack_id for locs in blobs.values()
                                                         for loc in locs]) if p not in drop]
        keys = list(dict.fromkeys(self.keys + [loc.key_id for locs in blobs.values()
                                               for loc in locs if loc.key_id is not None]))
        pack_no = {p: i for i, p in enumerate(packs)}
        key_no = {k: i for i, k in enumerate(keys)}
        old = self.records
        if drop and len(old):
            gone = np.array([p in drop for p in self.packs] + [False], bool)
            old = old[~gone[old["pack"]]]
        # renumber the old records' packs and keys into the new lists
        remap = np.array([pack_no.get(p, 0) for p in self.packs] + [0], "<u4")
        key_remap = np.array([key_no[k] for k in self.keys] + [NO_KEY], "<u2")
        old = old.copy()
        old["pack"] = remap[old["pack"]]
        old["key"] = key_remap[np.where(old["key"] == NO_KEY, len(self.keys), old["key"])]
        new = np.zeros(sum(len(locs) for locs in blobs.values()), _record())
        i = 0
        for block_id, locs in blobs.items():
            for loc in locs:
                new[i] = (block_id, pack_no[loc.pack_id], loc.offset, loc.length,
                          loc.raw_length, loc.codec,
                          NO_KEY if loc.key_id is None else key_no[loc.key_id])
                i += 1
        records = np.concatenate([old, new])
        prefixes = records["id"].copy().view(">u8").reshape(-1, 4)[:, 0].copy() \
            if len(records) else np.zeros(0, ">u8")
        order = np.argsort(prefixes, kind="stable")
        return _Table(prefixes[order], records[order], packs, keys)

    def save(self, path: Path, vault_id: str) -> None:
        """Write the table to ``path`` (a new file renamed over it, so a reader maps
        either the old table or the new one, never half of one)."""
        head = json.dumps({"vault_id": vault_id, "count": len(self.records),
                           "packs": self.packs, "keys": self.keys}).encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            out.write(CACHE_MAGIC + len(head).to_bytes(8, "little") + head)
            out.write(b"\0" * (-out.tell() % 8))
            out.write(self.prefixes.astype(">u8").tobytes())
            out.write(self.records.tobytes())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, vault_id: str) -> _Table | None:
        """The table saved at ``path`` for this vault, mapped from the file; None when
        there is none or it is not one (it is then built again from the index files)."""
        try:
            with open(path, "rb") as f:
                if f.read(8) != CACHE_MAGIC:
                    return None
                head = json.loads(f.read(int.from_bytes(f.read(8), "little")))
                start = f.tell() + (-f.tell() % 8)
            count = head["count"]
            if head["vault_id"] != vault_id or \
                    os.path.getsize(path) != start + count * (8 + _record().itemsize):
                return None
            np = _numpy()
            if not count:
                return cls(np.zeros(0, ">u8"), np.zeros(0, _record()), head["packs"],
                           head["keys"])
            prefixes = np.memmap(path, ">u8", "r", start, (count,))
            records = np.memmap(path, _record(), "r", start + 8 * count, (count,))
            return cls(prefixes, records, list(head["packs"]), list(head["keys"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


class BlobIndex:
    """Block id → blob location: a table (see the module) and the packs added since."""

    def __init__(self, cache: Path | None = None, vault_id: str = "") -> None:
        self._cache, self._vault_id = cache, vault_id
        # none until one is saved or merged: a small vault's index stays a dict
        self._table = _Table.load(cache, vault_id) if cache is not None and cache.exists() \
            else None
        self._overlay: dict[bytes, list[BlobLocation]] = {}
        self._overlay_packs: set[str] = set()
        self.excluded: frozenset[str] = frozenset()
        self._lock = threading.Lock()  # writers of the maps; lookups need none

    @property
    def packs(self) -> set[str]:
        return set(self._table.packs if self._table else ()) | self._overlay_packs

    def pack_ids(self) -> set[str]:
        with self._lock:
            return self.packs

    def add_pack(self, pack_id: str, blobs: list[Any], key_id: str | None = None) -> None:
        locations = [(bytes.fromhex(id_hex), BlobLocation(pack_id, offset, length,
                                                          raw_length, codec, key_id))
                     for id_hex, offset, length, raw_length, codec in blobs]
        with self._lock:
            self._overlay_packs.add(pack_id)
            for block_id, loc in locations:
                self._overlay.setdefault(block_id, []).append(loc)
            if len(self._overlay) > OVERLAY_MAX:
                self._merge(set())

    def drop_packs(self, gone: set[str]) -> None:
        """Forget the places of packs swept away (their blocks' other places stay)."""
        with self._lock:
            if self._table is not None:
                self._merge(gone)
                return
            kept = {k: [loc for loc in v if loc.pack_id not in gone]
                    for k, v in self._overlay.items()}
            self._overlay = {k: v for k, v in kept.items() if v}
            self._overlay_packs -= gone

    def unsaved(self) -> int:
        """Places added since the table was last merged (or loaded)."""
        return sum(len(v) for v in self._overlay.values())

    def save(self) -> None:
        """Merge what was added since into the table and keep it in the client folder."""
        with self._lock:
            if self._overlay:
                self._merge(set())

    def _merge(self, drop: set[str]) -> None:  # with ``_lock`` held
        overlay = {k: [loc for loc in v if loc.pack_id not in drop]
                   for k, v in self._overlay.items()}
        table = (self._table or _Table.empty()).merged(
            {k: v for k, v in overlay.items() if v}, drop)
        if self._cache is not None:
            table.save(self._cache, self._vault_id)
            table = _Table.load(self._cache, self._vault_id) or table
        self._table, self._overlay, self._overlay_packs = table, {}, set()

    def _places(self, block_id: bytes) -> list[BlobLocation]:
        table = self._table
        return self._overlay.get(block_id, []) + (table.places(block_id) if table else [])

    def __contains__(self, block_id: bytes) -> bool:
        """Whether a writer may reuse the stored block instead of storing it again."""
        return any(loc.pack_id not in self.excluded for loc in self._places(block_id))

    def get(self, block_id: bytes) -> BlobLocation | None:
        """Where to read the block: a place in a pack not excluded when there is one."""
        places = self._places(block_id)
        return next((loc for loc in places if loc.pack_id not in self.excluded),
                    places[0] if places else None)

    def __len__(self) -> int:
        return (len(self._table.records) if self._table else 0) + self.unsaved()
