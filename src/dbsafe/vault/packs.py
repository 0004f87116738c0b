"""Pack files: blobs back to back, then a header listing them (format doc, *Packs*).

A ``PackWriter`` streams blobs into one storage object; nothing is visible until ``finish``
commits it. Blob entries are ``[id_hex, offset, length, raw_length, codec]``.
"""

from __future__ import annotations

import json
import secrets
import struct

import zstandard

from dbsafe.storage.base import ObjectWriter, Storage
from dbsafe.vault.format import PACK_MAGIC

BlobEntry = list  # [id_hex, offset, length, raw_length, codec]


def pack_name(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


class PackWriter:
    def __init__(self, storage: Storage) -> None:
        self.pack_id = secrets.token_hex(16)
        self._writer: ObjectWriter = storage.writer(pack_name(self.pack_id))
        self.blobs: list[BlobEntry] = []

    @property
    def size(self) -> int:
        return self._writer.tell()

    def add(self, block_id: bytes, blob: bytes, raw_length: int, codec: int) -> BlobEntry:
        entry = [block_id.hex(), self._writer.tell(), len(blob), raw_length, codec]
        self._writer.write(blob)
        self.blobs.append(entry)
        return entry

    def finish(self) -> int:
        """Write the header and commit; returns the header's size in bytes."""
        header = zstandard.ZstdCompressor(level=3).compress(
            json.dumps({"blobs": self.blobs}, separators=(",", ":")).encode())
        trailer = header + struct.pack("<I", len(header)) + PACK_MAGIC
        self._writer.write(trailer)
        self._writer.commit()
        return len(trailer)

    def abort(self) -> None:
        self._writer.abort()


def read_pack_header(storage: Storage, pack_id: str) -> list[BlobEntry]:
    """The blob list stored at the end of a pack (used to rebuild index files)."""
    data = storage.get(pack_name(pack_id))
    if data[-8:] != PACK_MAGIC:
        raise ValueError("bad pack magic")
    (length,) = struct.unpack("<I", data[-12:-8])
    header = data[-12 - length:-12]
    return json.loads(zstandard.ZstdDecompressor().decompress(header))["blobs"]
