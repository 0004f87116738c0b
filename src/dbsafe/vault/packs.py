"""Pack files: blobs back to back, then a header listing them (format doc, *Packs*).

A ``PackWriter`` streams blobs into one storage object; nothing is visible until ``finish``
commits it. Blob entries are ``[id_hex, offset, length, raw_length, codec]``.
"""

from __future__ import annotations

import json
import secrets
import struct
from typing import Any

import zstandard

from dbsafe.core.errors import DbsafeError
from dbsafe.storage.base import ObjectWriter, Storage
from dbsafe.vault import crypto
from dbsafe.vault.format import (
    MAX_PACK_HEADER,
    PACK_MAGIC,
    PACK_MAGIC_ENCRYPTED,
    decompress_bounded,
)

BlobEntry = list[Any]  # [id_hex, offset, length, raw_length, codec]


def pack_name(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


class PackWriter:
    """``key``: (key id, data key) in an encrypted vault: the caller encrypts the blobs
    (``Keyed.encrypt_blob``), the writer encrypts the header with the same key."""

    def __init__(self, storage: Storage, key: tuple[str, bytes] | None = None) -> None:
        self.pack_id = secrets.token_hex(16)
        self.key = key
        self._writer: ObjectWriter = storage.writer(pack_name(self.pack_id))
        self.blobs: list[BlobEntry] = []

    @property
    def key_id(self) -> str | None:
        return None if self.key is None else self.key[0]

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
        if self.key is None:
            trailer = header + struct.pack("<I", len(header)) + PACK_MAGIC
        else:
            key_id, key = self.key
            header = crypto.encrypt(key, header, self.pack_id.encode()) + key_id.encode()
            trailer = header + struct.pack("<I", len(header)) + PACK_MAGIC_ENCRYPTED
        self._writer.write(trailer)
        self._writer.commit()
        return len(trailer)

    def abort(self) -> None:
        self._writer.abort()


def read_pack_header(storage: Storage, pack_id: str,
                     ring: crypto.KeyRing | None = None) -> tuple[list[BlobEntry], str | None]:
    """The blob list stored at the end of a pack (used to rebuild index files), and the
    data key id of an encrypted pack. ValueError when the header cannot be trusted (bad
    magic, a plain pack in an encrypted vault or the reverse, failed authentication, a
    header decompressing beyond ``MAX_PACK_HEADER``)."""
    data = storage.get(pack_name(pack_id))
    if len(data) < 12:
        raise ValueError("truncated pack")
    (length,) = struct.unpack("<I", data[-12:-8])
    if length > len(data) - 12:
        raise ValueError("pack header longer than the pack")
    header = data[-12 - length:-12]
    key_id = None
    if data[-8:] == PACK_MAGIC_ENCRYPTED:
        if ring is None:
            raise ValueError("encrypted pack in a plain vault")
        key_id = header[-crypto.KEY_ID_LENGTH:].decode()
        header = crypto.decrypt(ring.key(key_id), header[:-crypto.KEY_ID_LENGTH],
                                pack_id.encode())
    elif data[-8:] != PACK_MAGIC or ring is not None:
        raise ValueError("bad pack magic, or a plain pack in an encrypted vault")
    doc = json.loads(decompress_bounded(header, MAX_PACK_HEADER))
    if not isinstance(doc, dict) or not isinstance(doc.get("blobs"), list):
        raise ValueError("pack header lists no blobs")
    return doc["blobs"], key_id


class BlockError(Exception):
    """A block could not be read back intact. ``kind`` is 'missing' or 'corrupt'."""

    def __init__(self, kind: str, block_id: bytes, reason: str) -> None:
        super().__init__(f"{kind} block {block_id.hex()}: {reason}")
        self.kind = kind
        self.block_id = block_id
        self.reason = reason

    def as_error(self, path: str) -> DbsafeError:
        """What a reader says of it: the block of ``path`` (a file of a point, a WAL
        file) is missing from the vault or corrupt there."""
        code = "vault.block_missing" if self.kind == "missing" else "vault.block_corrupt"
        return DbsafeError(code, block_id=self.block_id.hex(), path=path, reason=self.reason)
