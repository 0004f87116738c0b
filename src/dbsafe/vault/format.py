"""Constants and codecs of repository format 1: config, block ids, sealed objects.

See docs/repository-format.md; change that page in the same commit as this file.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import blake3
import orjson
import zstandard

from dbsafe.vault import crypto
from dbsafe.vault.crypto import KeyRing

FORMAT = 1
DEFAULT_BLOCK_SIZE = 1 << 20
MAX_BLOCK_SIZE = 64 << 20
ID_HASH = "blake3-keyed"
# Sealed objects: version 1 (read only), and version 2, bound to the vault and the name.
SEAL_MAGIC = b"DBSAFE1\n"
SEAL_MAGIC_ENCRYPTED = b"DBSAFEE\n"
SEAL2_MAGIC = b"DBSAFE2\n"
SEAL2_MAGIC_ENCRYPTED = b"DBSAFE2E"
PLAIN_MAGICS = (SEAL_MAGIC, SEAL2_MAGIC)
ENCRYPTED_MAGICS = (SEAL_MAGIC_ENCRYPTED, SEAL2_MAGIC_ENCRYPTED)
BOUND_MAGICS = (SEAL2_MAGIC, SEAL2_MAGIC_ENCRYPTED)
KIND_INDEX = b"I"
KIND_MANIFEST = b"M"
KIND_PART = b"F"  # a part of a manifest's file entries (*Entries in parts*)
KIND_WAL = b"W"
# The field by which each kind of document names itself: it MUST equal the object's name.
SELF_NAME = {KIND_INDEX: "pack", KIND_MANIFEST: "point_id", KIND_PART: "part",
             KIND_WAL: "name"}
# What a document may decompress to at most (a zstd frame declaring more is refused before
# anything is allocated): a manifest of a 10 TB instance in 1 MiB blocks is ~700 MB.
MAX_DOCUMENT = {KIND_INDEX: 256 << 20, KIND_MANIFEST: 1 << 30, KIND_PART: 64 << 20,
                KIND_WAL: 64 << 20}
MAX_PACK_HEADER = 256 << 20
PACK_MAGIC = b"DBSPACK1"
PACK_MAGIC_ENCRYPTED = b"DBSPACKE"
CODEC_RAW = 0
CODEC_ZSTD = 1
_VAULT_ID = re.compile(r"[0-9a-f]{32}")


class SealError(ValueError):
    """A sealed object failed its checks (wrong magic, kind, hash or name)."""


def new_config(region: str | None, block_size: int = DEFAULT_BLOCK_SIZE,
               encryption: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new vault's config. An encrypted vault (``encryption``: cipher, key check, wrapped
    id key and mac, filled in by the repository) has no plain ``id_key``."""
    if block_size % 8192:
        raise ValueError("block_size must be a multiple of 8192")
    return {
        "format": FORMAT,
        "vault_id": secrets.token_hex(16),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "block_size": block_size,
        "id_hash": ID_HASH,
        "id_key": None if encryption else secrets.token_hex(32),
        "region": region,
        "encryption": encryption,
    }


def config_problem(config: object) -> str | None:
    """Why ``config`` cannot be a vault's config (None when its fields are well formed)."""
    if not isinstance(config, dict):
        return "not a JSON object"
    if not isinstance(config.get("vault_id"), str) or not _VAULT_ID.fullmatch(config["vault_id"]):
        return "vault_id is not 32 hex digits"
    size = config.get("block_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 8192 <= size <= MAX_BLOCK_SIZE \
            or size % 8192:
        return "block_size is not a multiple of 8192 up to 64 MiB"
    if config.get("id_hash") != ID_HASH:
        return f"unknown id_hash {config.get('id_hash')!r}"
    encryption = config.get("encryption")
    if encryption is None:
        key = config.get("id_key")
        if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{64}", key):
            return "a plain vault's id_key is not 64 hex digits"
    elif not isinstance(encryption, dict) or not isinstance(encryption.get("key_check"), str):
        return "encryption has no key_check"
    return None


def trust_fields(config: dict[str, Any]) -> dict[str, Any]:
    """What a client pins of a vault (docs/repository-format.md, *Clients*): its id, format,
    block size, whether it is encrypted, and its key (the key check of an encrypted vault,
    a fingerprint of a plain vault's id key)."""
    encryption = config.get("encryption")
    if encryption:
        key = encryption["key_check"]
    else:
        key = "blake3:" + blake3.blake3(bytes.fromhex(config["id_key"])).hexdigest()
    return {"vault_id": config["vault_id"], "format": config["format"],
            "block_size": config["block_size"], "encrypted": bool(encryption), "key": key}


_TRUST_LABELS = {"vault_id": "vault id", "format": "format", "block_size": "block size",
                 "encrypted": "encryption", "key": "key check"}


def trust_differences(known: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """What differs between two ``trust_fields``, in words (for ``vault.tampered``)."""
    def shown(value: object) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value)[:16]

    return [f"{label} is {shown(found.get(k))}, this client knows {shown(known.get(k))}"
            for k, label in _TRUST_LABELS.items() if known.get(k) != found.get(k)]


def decompress_bounded(data: bytes | memoryview, cap: int,
                       dctx: zstandard.ZstdDecompressor | None = None) -> bytes:
    """One zstd frame that declares its size, at most ``cap`` bytes (every frame dbsafe
    writes does): a forged frame cannot make a reader allocate more. ValueError otherwise."""
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        raise ValueError("not a zstd frame") from None
    if size < 0:
        raise ValueError("the zstd frame does not declare its size")
    if size > cap:
        raise ValueError(f"the zstd frame declares {size} bytes, more than {cap}")
    try:
        out = (dctx or zstandard.ZstdDecompressor()).decompress(data)
    except zstandard.ZstdError as exc:
        raise ValueError(f"cannot decompress: {exc}") from None
    if len(out) != size:
        raise ValueError("the zstd frame holds another size than it declares")
    return out


JSON_SEPARATORS = (",", ":")
JSON_LIST_PIECE = 2000  # items of a long list encoded at a time


def compress_json(document: dict[str, Any]) -> bytes:
    """One zstd frame (level 3, declaring its size) of ``document``'s compact JSON, the
    bytes ``json.dumps`` gives, without holding them whole: a manifest of 600 k files is
    ~150 MB of JSON, twice over as a string and its bytes. The JSON is made twice, in
    pieces: once to count its bytes (a frame declares its size first), once to compress."""
    size = sum(len(piece) for piece in _json_pieces(document))
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, size=size,
                                                         closefd=False) as writer:
        for piece in _json_pieces(document):
            writer.write(piece)
    return out.getvalue()


def _json_pieces(document: dict[str, Any]) -> Iterator[bytes]:
    """``json.dumps(document, separators=JSON_SEPARATORS).encode()`` in pieces: each list
    of the document longer than ``JSON_LIST_PIECE`` items ``JSON_LIST_PIECE`` items at a
    time (the same C encoder, so the same bytes)."""
    long = {k for k, v in document.items() if isinstance(v, list) and len(v) > JSON_LIST_PIECE}
    if not long:
        yield json.dumps(document, separators=JSON_SEPARATORS).encode()
        return
    marks = {k: f"\x00{secrets.token_hex(16)}" for k in long}  # no document string has one
    text = json.dumps({k: marks.get(k, v) for k, v in document.items()},
                      separators=JSON_SEPARATORS)
    for key, value in document.items():
        if key not in long:
            continue
        head, _, text = text.partition(json.dumps(marks[key]))
        yield head.encode()
        yield b"["
        for start in range(0, len(value), JSON_LIST_PIECE):
            if start:
                yield b","
            yield json.dumps(value[start:start + JSON_LIST_PIECE],
                             separators=JSON_SEPARATORS)[1:-1].encode()
        yield b"]"
    yield text.encode()


def _binding(vault_id: str, name: str) -> bytes:
    """What a version-2 seal binds an object to: the vault and the object's name."""
    raw = name.encode()
    return vault_id.encode() + struct.pack(">H", len(raw)) + raw


class Keyed:
    """The vault's keyed hash and object codec: block ids, file checksums, sealed objects,
    and (in an encrypted vault, given its ``KeyRing``) the encryption of blobs, pack
    headers and sealed objects. ``vault_id`` is what sealed objects are bound to, with
    their names."""

    def __init__(self, key: bytes, ring: KeyRing | None = None, *, vault_id: str) -> None:
        self.key = key
        self.ring = ring
        self.vault_id = vault_id

    @property
    def encrypted(self) -> bool:
        return self.ring is not None

    def digest(self, data: bytes | memoryview) -> bytes:
        # blake3 releases the GIL on large inputs, so hashing runs in parallel threads.
        return blake3.blake3(data, key=self.key).digest()

    def seal(self, kind: bytes, document: dict[str, Any], name: str) -> bytes:
        """The sealed object ``name`` (version 2): bound to this vault and to ``name``."""
        return self._seal(kind, compress_json(document), name)

    def seal_json(self, kind: bytes, text: bytes, name: str) -> bytes:
        """``seal`` of a document already encoded as compact JSON (a part of a manifest's
        entries, made from the lines of a spool without parsing them)."""
        return self._seal(kind, zstandard.ZstdCompressor(level=3).compress(text), name)

    def _seal(self, kind: bytes, payload: bytes, name: str) -> bytes:
        if self.ring is None:
            head = SEAL2_MAGIC + kind
            return head + self._bound_digest(head, name, payload) + payload
        key_id, key = self.ring.current
        head = SEAL2_MAGIC_ENCRYPTED + kind + key_id.encode()
        return head + crypto.encrypt(key, payload, head + _binding(self.vault_id, name))

    def _bound_digest(self, head: bytes, name: str, payload: bytes) -> bytes:
        hasher = blake3.blake3(head + _binding(self.vault_id, name), key=self.key)
        hasher.update(payload)
        return hasher.digest()

    def unseal(self, kind: bytes, data: bytes, name: str) -> dict[str, Any]:
        """The document of the sealed object ``name``, after checking its magic, kind, hash
        or authentication (version 2: its binding to this vault and ``name`` too), its
        size, and that it names itself ``name``. SealError otherwise."""
        magic = data[:8]
        if magic not in PLAIN_MAGICS + ENCRYPTED_MAGICS:
            raise SealError("bad magic")
        if (magic in ENCRYPTED_MAGICS) != (self.ring is not None):
            raise SealError("encrypted object in a plain vault" if self.ring is None
                            else "plain object in an encrypted vault")
        if data[8:9] != kind:
            raise SealError(f"kind {data[8:9]!r}, expected {kind!r}")
        bound = magic in BOUND_MAGICS
        if self.ring is None:
            if len(data) < 41:
                raise SealError("truncated")
            payload = data[41:]
            expected = self._bound_digest(data[:9], name, payload) if bound \
                else self.digest(payload)
            if expected != data[9:41]:
                raise SealError("hash mismatch" + (" (or another vault's or name's object)"
                                                   if bound else ""))
        else:
            end = 9 + crypto.KEY_ID_LENGTH
            aad = data[:end] + (_binding(self.vault_id, name) if bound else b"")
            try:
                key = self.ring.key(data[9:end].decode())
                payload = crypto.decrypt(key, data[end:], aad)
            except (crypto.CryptoError, UnicodeDecodeError, FileNotFoundError) as exc:
                raise SealError(f"cannot decrypt: {exc}") from None
        try:
            # parsed from the bytes (orjson: UTF-8 checked, no text copy; about twice the
            # standard library's speed on a part of 10,000 entries)
            document = orjson.loads(decompress_bounded(payload, MAX_DOCUMENT[kind]))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise SealError(str(exc)) from None
        base = name.rsplit("/", 1)[-1]
        named = document.get(SELF_NAME[kind]) if isinstance(document, dict) else None
        if named != base:
            raise SealError(f"the object names itself {named!r}, not {base!r}")
        sealed: dict[str, Any] = document
        return sealed

    # blobs (docs, *Encryption*): the block id is the associated data
    def encrypt_blob(self, key: bytes, block_id: bytes, blob: bytes | memoryview) -> bytes:
        return crypto.encrypt(key, blob, block_id)

    def decrypt_blob(self, key_id: str, block_id: bytes, blob: bytes) -> bytes:
        assert self.ring is not None
        return crypto.decrypt(self.ring.key(key_id), blob, block_id)
