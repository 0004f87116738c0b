"""The in-memory map from block id to where its blob lies, loaded from ``index/``.

Memory: about 150 bytes per block (1 MiB blocks: ~150 MB for 1 TB of unique data). A
compact on-disk index is the next step when vaults grow past that.

Packs that garbage collection has tombstoned are *excluded*: their blocks can still be read
(a backup that started before the tombstone may use them), but a writer must not
deduplicate against them (``in`` says no), so it stores such blocks again.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple


class BlobLocation(NamedTuple):
    pack_id: str
    offset: int
    length: int
    raw_length: int
    codec: int
    key_id: str | None  # the data key of an encrypted pack


class BlobIndex:
    def __init__(self) -> None:
        self._blobs: dict[bytes, BlobLocation] = {}
        self.packs: set[str] = set()
        self.excluded: frozenset[str] = frozenset()
        self._lock = threading.Lock()  # writers of the maps; lookups need none

    def add_pack(self, pack_id: str, blobs: list[Any], key_id: str | None = None) -> None:
        with self._lock:
            self.packs.add(pack_id)
            for id_hex, offset, length, raw_length, codec in blobs:
                self._blobs.setdefault(bytes.fromhex(id_hex), BlobLocation(
                    pack_id, offset, length, raw_length, codec, key_id))

    def replace(self, other: BlobIndex) -> None:
        """Take ``other``'s content (a reload), keeping this object: sinks hold it."""
        with self._lock:
            self._blobs, self.packs = other._blobs, other.packs
            self.excluded = other.excluded

    def pack_ids(self) -> set[str]:
        with self._lock:
            return set(self.packs)

    def __contains__(self, block_id: bytes) -> bool:
        """Whether a writer may reuse the stored block instead of storing it again."""
        loc = self._blobs.get(block_id)
        return loc is not None and loc.pack_id not in self.excluded

    def get(self, block_id: bytes) -> BlobLocation | None:
        return self._blobs.get(block_id)

    def __len__(self) -> int:
        return len(self._blobs)
