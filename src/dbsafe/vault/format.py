"""Constants and codecs of repository format 1: config, block ids, sealed objects.

See docs/repository-format.md; change that page in the same commit as this file.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

import blake3
import zstandard

from dbsafe.vault import crypto
from dbsafe.vault.crypto import KeyRing

FORMAT = 1
DEFAULT_BLOCK_SIZE = 1 << 20
SEAL_MAGIC = b"DBSAFE1\n"
SEAL_MAGIC_ENCRYPTED = b"DBSAFEE\n"
KIND_INDEX = b"I"
KIND_MANIFEST = b"M"
KIND_WAL = b"W"
PACK_MAGIC = b"DBSPACK1"
PACK_MAGIC_ENCRYPTED = b"DBSPACKE"
CODEC_RAW = 0
CODEC_ZSTD = 1


class SealError(ValueError):
    """A sealed object failed its checks (wrong magic, kind or hash)."""


def new_config(region: str | None, block_size: int = DEFAULT_BLOCK_SIZE,
               encryption: dict | None = None) -> dict:
    """A new vault's config. An encrypted vault (``encryption``: cipher and key check) has
    no ``id_key``: its block ids are keyed by a key derived from the master key."""
    if block_size % 8192:
        raise ValueError("block_size must be a multiple of 8192")
    return {
        "format": FORMAT,
        "vault_id": secrets.token_hex(16),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "block_size": block_size,
        "id_hash": "blake3-keyed",
        "id_key": None if encryption else secrets.token_hex(32),
        "region": region,
        "encryption": encryption,
    }


class Keyed:
    """The vault's keyed hash and object codec: block ids, file checksums, sealed objects,
    and (in an encrypted vault, given its ``KeyRing``) the encryption of blobs, pack
    headers and sealed objects."""

    def __init__(self, key: bytes, ring: KeyRing | None = None) -> None:
        self.key = key
        self.ring = ring

    @property
    def encrypted(self) -> bool:
        return self.ring is not None

    def digest(self, data: bytes | memoryview) -> bytes:
        # blake3 releases the GIL on large inputs, so hashing runs in parallel threads.
        return blake3.blake3(data, key=self.key).digest()

    def seal(self, kind: bytes, document: object) -> bytes:
        payload = zstandard.ZstdCompressor(level=3).compress(
            json.dumps(document, separators=(",", ":")).encode())
        if self.ring is None:
            return SEAL_MAGIC + kind + self.digest(payload) + payload
        key_id, key = self.ring.current
        head = SEAL_MAGIC_ENCRYPTED + kind + key_id.encode()
        return head + crypto.encrypt(key, payload, head)

    def unseal(self, kind: bytes, data: bytes) -> object:
        magic = SEAL_MAGIC_ENCRYPTED if self.ring is not None else SEAL_MAGIC
        if data[:8] != magic:
            if data[:8] in (SEAL_MAGIC, SEAL_MAGIC_ENCRYPTED):
                raise SealError("encrypted object in a plain vault" if self.ring is None
                                else "plain object in an encrypted vault")
            raise SealError("bad magic")
        if data[8:9] != kind:
            raise SealError(f"kind {data[8:9]!r}, expected {kind!r}")
        if self.ring is None:
            if len(data) < 41:
                raise SealError("truncated")
            payload = data[41:]
            if self.digest(payload) != data[9:41]:
                raise SealError("hash mismatch")
        else:
            end = 9 + crypto.KEY_ID_LENGTH
            try:
                key = self.ring.key(data[9:end].decode())
                payload = crypto.decrypt(key, data[end:], data[:end])
            except (crypto.CryptoError, UnicodeDecodeError, FileNotFoundError) as exc:
                raise SealError(f"cannot decrypt: {exc}") from None
        return json.loads(zstandard.ZstdDecompressor().decompress(payload))

    # blobs (docs, *Encryption*): the block id is the associated data
    def encrypt_blob(self, key: bytes, block_id: bytes, blob: bytes | memoryview) -> bytes:
        return crypto.encrypt(key, blob, block_id)

    def decrypt_blob(self, key_id: str, block_id: bytes, blob: bytes) -> bytes:
        assert self.ring is not None
        return crypto.decrypt(self.ring.key(key_id), blob, block_id)
