"""Encryption of a vault's objects (docs/repository-format.md, *Encryption*).

Three kinds of key, so that each can change without the others:

- the **master key** (32 random bytes) never leaves a client unwrapped: it is kept in a
  *key file*, either wrapped by a passphrase (argon2id, then AES-256-GCM; older files:
  scrypt) or plain for keys held by a secret manager. It is never stored in the
  repository: a client without it cannot read the vault (the cloud service's TDE rule:
  bring the certificate first). It authenticates ``config`` (an HMAC) and can be replaced
  (a master rotation re-wraps everything it wraps).
- **data keys** (32 random bytes each) encrypt objects. Each is stored in the repository
  under ``keys/<key id>``, wrapped by the master key. New objects use the newest; old ones
  name theirs, so a rotation never rewrites data.
- the **id key**: block ids are keyed BLAKE3 hashes, so nobody without the master key can
  test whether the vault holds a known block. It never changes (the same block keeps its
  id, deduplication continues): it is stored in ``config`` wrapped by the master key, or,
  in vaults made before that, derived from the first master key (HKDF) until a master
  rotation stores it wrapped.

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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# cryptography and argon2 are imported where they are used: every command imports this
# module, and a vault without encryption never needs them (~15 ms at each start)

CIPHER = "aes-256-gcm"
NONCE = 12
TAG = 16
KEY_ID_LENGTH = 24  # "YYYYMMDDTHHMMSSZ-" + 7 hex: fixed, so binary headers can hold it
KEY_FILE_FORMAT = 1
# argon2id with RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes): ~0.2 s
# here, paid by every command that reads or writes data. Key files keep their parameters,
# so older ones (scrypt, n = 2^15) still open; these bounds keep a hostile key file from
# asking for gigabytes or hours.
ARGON2_T, ARGON2_M_KIB, ARGON2_P = 3, 64 * 1024, 4
KDF_MAX_MEMORY = 1 << 30
KDF_MAX_PASSES = 16


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
    """The id key of a vault made before id keys were stored (from its first master key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"dbsafe block ids").derive(master)


def wrap_id_key(master: bytes, vault_id: str, id_key: bytes) -> str:
    """The id key as ``config`` keeps it (``encryption.id_key``)."""
    return _b64(encrypt(master, id_key, b"dbsafe id key " + vault_id.encode()))


def unwrap_id_key(master: bytes, vault_id: str, wrapped: str) -> bytes:
    return decrypt(master, _unb64(wrapped), b"dbsafe id key " + vault_id.encode())


def config_mac(master: bytes, config: dict[str, Any]) -> str:
    """``encryption.mac`` of an encrypted vault's config: HMAC-SHA256 under the master key
    of the config's canonical JSON (sorted keys, no spaces) without the mac itself."""
    encryption = {k: v for k, v in config["encryption"].items() if k != "mac"}
    canonical = json.dumps({**config, "encryption": encryption}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True)
    return hmac.new(master, b"dbsafe config " + canonical.encode(), hashlib.sha256).hexdigest()


def encrypt(key: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytes:
    """nonce || ciphertext || tag."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, bytes(plaintext), aad)


def decrypt(key: bytes, data: bytes, aad: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(key).decrypt(data[:NONCE], data[NONCE:], aad)
    except (InvalidTag, ValueError):
        raise CryptoError("authentication failed") from None


# key files (the master key on a client) -------------------------------------------------
def _kek(passphrase: str, kdf: dict[str, Any]) -> bytes:
    """The key-encryption key of a key file, with the KDF parameters it names."""
    from argon2.low_level import Type, hash_secret_raw
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    salt = _unb64(kdf["salt"])
    if kdf["name"] == "argon2id":
        t, m, p = int(kdf["t"]), int(kdf["m"]), int(kdf["p"])
        if not (1 <= t <= KDF_MAX_PASSES and 8 * p <= m <= KDF_MAX_MEMORY // 1024
                and 1 <= p <= 64):
            raise CryptoError("key file asks for KDF parameters out of bounds")
        return hash_secret_raw(passphrase.encode(), salt, t, m, p, 32, Type.ID)
    if kdf["name"] == "scrypt":
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if 128 * n * r * p > KDF_MAX_MEMORY or p > 16:
            raise CryptoError("key file asks for KDF parameters out of bounds")
        return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
    raise CryptoError(f"unknown KDF {kdf['name']!r}")


def wrap_master(master: bytes, vault_id: str, passphrase: str | None) -> dict[str, Any]:
    """A key file's document: the master key wrapped by ``passphrase``, or plain (None)."""
    doc: dict[str, Any] = {"dbsafe_key": KEY_FILE_FORMAT, "vault_id": vault_id,
                 "created": datetime.now(UTC).isoformat(timespec="seconds")}
    if passphrase is None:
        return {**doc, "master_key": master.hex()}
    kdf = {"name": "argon2id", "t": ARGON2_T, "m": ARGON2_M_KIB, "p": ARGON2_P,
           "salt": _b64(os.urandom(16))}
    kek = _kek(passphrase, kdf)
    return {**doc, "kdf": kdf,
            "wrapped": _b64(encrypt(kek, master, b"dbsafe master key " + vault_id.encode()))}


def parse_key_file(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise CryptoError("not a dbsafe key file") from None
    if not isinstance(doc, dict) or doc.get("dbsafe_key") != KEY_FILE_FORMAT:
        raise CryptoError("not a dbsafe key file")
    return doc


def needs_passphrase(doc: dict[str, Any]) -> bool:
    return "wrapped" in doc


def unwrap_master(doc: dict[str, Any], passphrase: str | None) -> bytes:
    """The master key of a key file; CryptoError on a wrong passphrase."""
    if not needs_passphrase(doc):
        return bytes.fromhex(doc["master_key"])
    if passphrase is None:
        raise CryptoError("passphrase needed")
    try:
        kek = _kek(passphrase, doc["kdf"])
        wrapped, aad = _unb64(doc["wrapped"]), b"dbsafe master key " + doc["vault_id"].encode()
    except CryptoError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CryptoError("not a valid key file") from None
    return decrypt(kek, wrapped, aad)


# data keys (in the repository) -------------------------------------------------------------
def _wrap_for(master: bytes, key_id: str, data_key: bytes) -> str:
    return _b64(encrypt(master, data_key, b"dbsafe data key " + key_id.encode()))


def wrap_data_key(master: bytes, key_id: str, data_key: bytes,
                  created: str | None = None) -> bytes:
    doc = {"key_id": key_id,
           "created": created or datetime.now(UTC).isoformat(timespec="seconds"),
           "cipher": CIPHER, "wrapped": _wrap_for(master, key_id, data_key)}
    return json.dumps(doc).encode()


def add_next_wrap(data: bytes, next_master: bytes, key_id: str, data_key: bytes) -> bytes:
    """A data key object during a master rotation: still wrapped by the old master key, and
    (``next``) by the new one, so either opens it whichever way a crash falls."""
    doc = json.loads(data)
    doc["next"] = {"wrapped": _wrap_for(next_master, key_id, data_key)}
    return json.dumps(doc).encode()


def settle_next_wrap(data: bytes) -> bytes:
    """The end of a master rotation: the ``next`` wrap becomes the only one."""
    doc = json.loads(data)
    if isinstance(doc.get("next"), dict):
        doc["wrapped"] = doc.pop("next")["wrapped"]
    return json.dumps(doc).encode()


def unwrap_data_key(master: bytes, key_id: str, data: bytes) -> bytes:
    """The data key; ``wrapped`` is tried first, then ``next`` (a rotation in progress)."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise CryptoError(f"key object {key_id} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("key_id") != key_id:
        raise CryptoError(f"key object {key_id} names another key")
    aad = b"dbsafe data key " + key_id.encode()
    try:
        return decrypt(master, _unb64(doc["wrapped"]), aad)
    except CryptoError:
        if not isinstance(doc.get("next"), dict):
            raise
        return decrypt(master, _unb64(doc["next"]["wrapped"]), aad)


class KeyRing:
    """The unwrapped keys of one open vault: the master key, the id key, and the data keys
    loaded on demand from the repository (``load(key_id) -> bytes`` of its object).
    ``current`` is the data key new objects are encrypted with."""

    def __init__(self, master: bytes, load: Callable[[str], bytes], current_id: str,
                 id_key: bytes) -> None:
        self.master = master
        self.id_key = id_key
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
