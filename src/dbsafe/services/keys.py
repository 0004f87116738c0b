"""The vault key on this client: where it is kept, unwrapping it, export, import, rotation.

A client (a vault folder: DBSAFE_HOME / --vault) holds the master key of an encrypted
vault in one of two ways (docs/repository-format.md, *Encryption*):
- ``<folder>/key``: a key file wrapped by a passphrase (``DBSAFE_PASSPHRASE`` or a prompt);
- a key file of the user's (``--key-file``), named in ``<folder>/client.json``, plain or
  wrapped, e.g. written by a secret manager.
The repository never holds the master key: another server restores only after
``dbsafe key import`` (the cloud service's rule for TDE: bring the certificate first).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.core.secrets_input import NEW_PASSPHRASE_ENV, passphrase
from dbsafe.services.adopt import adopt_servers
from dbsafe.vault import crypto

if TYPE_CHECKING:
    from dbsafe.services.vault import Vault

KEY_FILE = "key"


def new_master() -> bytes:
    return secrets.token_bytes(32)


def write_key_file(path: Path, doc: dict) -> None:
    """Atomically, readable by its owner only."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(doc, indent=2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_key_file(path: Path) -> dict:
    """A dbsafe key file, or a file holding just the key as 64 hex digits (what a secret
    manager writes), read as a plain key file without a vault id."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DbsafeError("key.file_missing", path=path) from None
    text = data.strip()
    if len(text) == 64 and all(c in b"0123456789abcdefABCDEF" for c in text):
        return {"dbsafe_key": crypto.KEY_FILE_FORMAT, "vault_id": None,
                "master_key": text.decode().lower()}
    try:
        return crypto.parse_key_file(data)
    except crypto.CryptoError:
        raise DbsafeError("key.file_invalid", path=path) from None


def unwrap(doc: dict, path: Path, purpose: str = "of the vault key") -> bytes:
    try:
        return crypto.unwrap_master(
            doc, passphrase(purpose) if crypto.needs_passphrase(doc) else None)
    except crypto.CryptoError:
        raise DbsafeError("key.wrong_passphrase", path=path) from None


def key_path(home: Path, settings: dict) -> Path:
    return Path(settings["key_file"]) if settings.get("key_file") else home / KEY_FILE


def master_source(home: Path, settings: dict, vault_id: str) -> Callable[[], bytes]:
    """A function giving this client's master key (for ``Repository.open``)."""

    def load() -> bytes:
        path = key_path(home, settings)
        if not path.exists():
            raise DbsafeError("key.missing", vault_id=vault_id)
        doc = read_key_file(path)
        if doc.get("vault_id") not in (None, vault_id):
            raise DbsafeError("key.wrong", vault_id=vault_id)
        return unwrap(doc, path)

    return load


def new_vault_key(home: Path, key_file: Path | None
                  ) -> tuple[bytes, Callable[[str], None], dict]:
    """For a vault being created: its master key, a function that stores it once the vault
    id is known, and what the client records (``key_file``). With ``key_file``: the key in
    it when it exists, else a new one written there (plain, mode 0600); without: a new key
    wrapped by a passphrase asked now (twice at a terminal), kept in ``<home>/key``."""
    if key_file is not None:
        path = Path(key_file).resolve()
        settings = {"key_file": str(path)}
        if path.exists():
            return unwrap(read_key_file(path), path), lambda _vault_id: None, settings
        master = new_master()
        return master, lambda vault_id: write_key_file(
            path, crypto.wrap_master(master, vault_id, None)), settings
    master = new_master()
    secret = passphrase("for the new vault key", confirm=True)
    return master, lambda vault_id: write_key_file(
        home / KEY_FILE, crypto.wrap_master(master, vault_id, secret)), {}


def describe(vault: Vault) -> dict:
    repo = vault.repo
    if not repo.encrypted:
        return {"encrypted": False}
    path = key_path(vault.path, vault.settings)
    out = {"encrypted": True, "cipher": repo.config["encryption"]["cipher"],
           "data_keys": len(repo.data_key_ids()), "current_data_key": repo.data_key_ids()[-1],
           "key_on_this_client": path.exists(), "key_source": (
               "key file" if vault.settings.get("key_file") else "passphrase")}
    if out["key_on_this_client"]:
        out["key_wrapped"] = crypto.needs_passphrase(read_key_file(path))
    return out


def export_key(vault: Vault, dest: Path, plain: bool) -> dict:
    """Write the master key to ``dest``: wrapped by this client's passphrase (or, for a key
    kept plain, by one asked now), or ``plain`` for a secret manager."""
    _require_encrypted(vault)
    master = vault.repo.master_key()
    vault_id = vault.repo.config["vault_id"]
    if plain:
        doc = crypto.wrap_master(master, vault_id, None)
    else:
        doc = crypto.wrap_master(master, vault_id, passphrase("for the exported key"))
    dest = Path(dest)
    if dest.exists():
        raise DbsafeError("key.export_exists", path=dest)
    write_key_file(dest, doc)
    return {"exported": str(dest), "vault_id": vault_id, "wrapped": not plain}


def import_key(vault: Vault, source: Path) -> dict:
    """Make a key exported elsewhere this client's key, after checking it opens this vault.
    A wrapped key is kept as it is (same passphrase); a plain one is wrapped by
    this client's passphrase."""
    _require_encrypted(vault)
    source = Path(source)
    doc = read_key_file(source)
    vault_id = vault.repo.config["vault_id"]
    master = unwrap(doc, source, "of the key file")
    if doc.get("vault_id") not in (None, vault_id):
        raise DbsafeError("key.wrong", vault_id=vault_id)
    vault.repo.check_master(master)
    if not crypto.needs_passphrase(doc):
        doc = crypto.wrap_master(master, vault_id, passphrase("to keep the key on this client",
                                                              confirm=True))
    write_key_file(vault.path / KEY_FILE, doc)
    vault.use_key_file(None)
    return {"imported": str(source), "vault_id": vault_id, "key": str(vault.path / KEY_FILE),
            **adopt_servers(vault)}


def rotate(vault: Vault) -> dict:
    """Re-wrap the master key under a new passphrase (at once, on this client) and start a
    new data key for everything written from now on; older objects stay readable with
    the data keys they name."""
    _require_encrypted(vault)
    master = vault.repo.master_key()  # keys opened once, reused by the rotation
    vault_id = vault.repo.config["vault_id"]
    path = key_path(vault.path, vault.settings)
    key_id = vault.repo.rotate_data_key()  # opens the keys with the passphrase of now
    rewrapped = False
    if crypto.needs_passphrase(read_key_file(path)):
        fresh = passphrase("new, for the vault key", env=NEW_PASSPHRASE_ENV, confirm=True)
        write_key_file(path, crypto.wrap_master(master, vault_id, fresh))
        rewrapped = True
    return {"vault_id": vault_id, "rewrapped": rewrapped, "key_file": str(path),
            "new_data_key": key_id, "data_keys": len(vault.repo.data_key_ids())}


def _require_encrypted(vault: Vault) -> None:
    if not vault.repo.encrypted:
        raise DbsafeError("key.not_encrypted")
