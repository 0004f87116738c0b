"""Encryption of a vault's objects (docs/repository-format.md, *Encryption*).

Three kinds of key, so that each can change without the others:

- the **master key** (32 random bytes) never leaves a client unwrapped: it is kept in a
  *key file*, either wrapped by a passphrase (scrypt, then AES-256-GCM) or plain for keys
  held by a secret manager. It is never stored in the repository: a client without it
  cannot read the vault (the cloud service's TDE rule: bring the certificate first).
- **data keys** (32 random bytes each) encrypt objects. Each is stored in the repository
  under ``keys/<key id>``, wrapped by the master key. New objects use the newest; old ones
  name theirs, so a rotation never rewrites data.
- the **id key** is derived from the master key (HKDF): block ids are keyed BLAKE3 hashes,
  so the same block gets the same id after any rotation (deduplication continues) and
  nobody without the master key can test whether the vault holds a known block.

Everything is AES-256-GCM from ``cryptography`` with a random 96-bit nonce per object or
blob; the associated data binds a ciphertext to where it belongs (a blob to its block id, a
pack header to its pack, a sealed object to its kind, a data key to its id).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

CIPHER = "aes-256-gcm"
NONCE = 12
TAG = 16
KEY_ID_LENGTH = 24  # "YYYYMMDDTHHMMSSZ-" + 7 hex: fixed, so binary headers can hold it
KEY_FILE_FORMAT = 1
# scrypt's cost: 32 MiB and ~0.1 s here; every command that reads or writes data unwraps
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1


class CryptoError(ValueError):
    """A ciphertext failed authentication, or a key does not fit this vault."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


def new_key_id() -> str:
    """Sorts by creation time: the newest data key is the last name in ``keys/``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(4)[:7]}"


def key_check(master: bytes, vault_id: str) -> str:
    """Stored in the vault's config: tells a wrong key from a damaged object."""
    return hmac.new(master, b"dbsafe key check " + vault_id.encode(), hashlib.sha256).hexdigest()


def derive_id_key(master: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"dbsafe block ids").derive(master)


def encrypt(key: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytes:
    """nonce || ciphertext || tag."""
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, bytes(plaintext), aad)


def decrypt(key: bytes, data: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(data[:NONCE], data[NONCE:], aad)
    except (InvalidTag, ValueError):
        raise CryptoError("authentication failed") from None


# key files (the master key on a client) -------------------------------------------------
def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def wrap_master(master: bytes, vault_id: str, passphrase: str | None) -> dict:
    """A key file's document: the master key wrapped by ``passphrase``, or plain (None)."""
    doc: dict = {"dbsafe_key": KEY_FILE_FORMAT, "vault_id": vault_id,
                 "created": datetime.now(UTC).isoformat(timespec="seconds")}
    if passphrase is None:
        return {**doc, "master_key": master.hex()}
    salt = os.urandom(16)
    kek = _kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return {**doc, "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                           "salt": _b64(salt)},
            "wrapped": _b64(encrypt(kek, master, b"dbsafe master key " + vault_id.encode()))}


def parse_key_file(data: bytes) -> dict:
    try:
        doc = json.loads(data)
    except ValueError:
        raise CryptoError("not a dbsafe key file") from None
    if not isinstance(doc, dict) or doc.get("dbsafe_key") != KEY_FILE_FORMAT:
        raise CryptoError("not a dbsafe key file")
    return doc


def needs_passphrase(doc: dict) -> bool:
    return "wrapped" in doc


def unwrap_master(doc: dict, passphrase: str | None) -> bytes:
    """The master key of a key file; CryptoError on a wrong passphrase."""
    if not needs_passphrase(doc):
        return bytes.fromhex(doc["master_key"])
    if passphrase is None:
        raise CryptoError("passphrase needed")
    kdf = doc["kdf"]
    kek = _kek(passphrase, _unb64(kdf["salt"]), kdf["n"], kdf["r"], kdf["p"])
    return decrypt(kek, _unb64(doc["wrapped"]), b"dbsafe master key " + doc["vault_id"].encode())


# data keys (in the repository) -------------------------------------------------------------
def wrap_data_key(master: bytes, key_id: str, data_key: bytes) -> bytes:
    doc = {"key_id": key_id, "created": datetime.now(UTC).isoformat(timespec="seconds"),
           "cipher": CIPHER,
           "wrapped": _b64(encrypt(master, data_key, b"dbsafe data key " + key_id.encode()))}
    return json.dumps(doc).encode()


def unwrap_data_key(master: bytes, key_id: str, data: bytes) -> bytes:
    doc = json.loads(data)
    if doc.get("key_id") != key_id:
        raise CryptoError(f"key object {key_id} names {doc.get('key_id')}")
    return decrypt(master, _unb64(doc["wrapped"]), b"dbsafe data key " + key_id.encode())


class KeyRing:
    """The unwrapped keys of one open vault: the master key, the derived id key, and the
    data keys loaded on demand from the repository (``load(key_id) -> bytes`` of its
    object). ``current`` is the data key new objects are encrypted with."""

    def __init__(self, master: bytes, load, current_id: str) -> None:
        self.master = master
        self.id_key = derive_id_key(master)
        self._load = load
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.current_id = current_id

    def key(self, key_id: str) -> bytes:
        found = self._keys.get(key_id)
        if found is None:
            with self._lock:
                found = self._keys.get(key_id)
                if found is None:
                    found = unwrap_data_key(self.master, key_id, self._load(key_id))
                    self._keys[key_id] = found
        return found

    @property
    def current(self) -> tuple[str, bytes]:
        return self.current_id, self.key(self.current_id)
