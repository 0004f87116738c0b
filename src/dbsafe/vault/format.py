"""Constants and codecs of repository format 1: config, block ids, sealed objects.

See docs/repository-format.md; change that page in the same commit as this file.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

import blake3
import zstandard

FORMAT = 1
DEFAULT_BLOCK_SIZE = 1 << 20
SEAL_MAGIC = b"DBSAFE1\n"
KIND_INDEX = b"I"
KIND_MANIFEST = b"M"
KIND_WAL = b"W"
PACK_MAGIC = b"DBSPACK1"
CODEC_RAW = 0
CODEC_ZSTD = 1


class SealError(ValueError):
    """A sealed object failed its checks (wrong magic, kind or hash)."""


def new_config(region: str | None, block_size: int = DEFAULT_BLOCK_SIZE) -> dict:
    if block_size % 8192:
        raise ValueError("block_size must be a multiple of 8192")
    return {
        "format": FORMAT,
        "vault_id": secrets.token_hex(16),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "block_size": block_size,
        "id_hash": "blake3-keyed",
        "id_key": secrets.token_hex(32),
        "region": region,
    }


class Keyed:
    """The vault's keyed hash: block ids, file checksums and seals all use it."""

    def __init__(self, key_hex: str) -> None:
        self.key = bytes.fromhex(key_hex)

    def digest(self, data: bytes | memoryview) -> bytes:
        # blake3 releases the GIL on large inputs, so hashing runs in parallel threads.
        return blake3.blake3(data, key=self.key).digest()

    def seal(self, kind: bytes, document: object) -> bytes:
        payload = zstandard.ZstdCompressor(level=3).compress(
            json.dumps(document, separators=(",", ":")).encode())
        return SEAL_MAGIC + kind + self.digest(payload) + payload

    def unseal(self, kind: bytes, data: bytes) -> object:
        if len(data) < 41 or data[:8] != SEAL_MAGIC:
            raise SealError("bad magic")
        if data[8:9] != kind:
            raise SealError(f"kind {data[8:9]!r}, expected {kind!r}")
        payload = data[41:]
        if self.digest(payload) != data[9:41]:
            raise SealError("hash mismatch")
        return json.loads(zstandard.ZstdDecompressor().decompress(payload))
