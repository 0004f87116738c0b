"""The in-memory map from block id to where its blob lies, loaded from ``index/``.

Memory: about 150 bytes per block (1 MiB blocks: ~150 MB for 1 TB of unique data). A
compact on-disk index is the next step when vaults grow past that.
"""

from __future__ import annotations

from typing import NamedTuple


class BlobLocation(NamedTuple):
    pack_id: str
    offset: int
    length: int
    raw_length: int
    codec: int


class BlobIndex:
    def __init__(self) -> None:
        self._blobs: dict[bytes, BlobLocation] = {}
        self.packs: set[str] = set()

    def add_pack(self, pack_id: str, blobs: list) -> None:
        self.packs.add(pack_id)
        for id_hex, offset, length, raw_length, codec in blobs:
            self._blobs.setdefault(bytes.fromhex(id_hex),
                                   BlobLocation(pack_id, offset, length, raw_length, codec))

    def __contains__(self, block_id: bytes) -> bool:
        return block_id in self._blobs

    def get(self, block_id: bytes) -> BlobLocation | None:
        return self._blobs.get(block_id)

    def __len__(self) -> int:
        return len(self._blobs)
