"""The vault key on this client: where it is kept, unwrapping it, export, import, rotation.

A client (a vault folder: DBSAFE_HOME / --vault) holds the master key of an encrypted
vault in one of two ways (docs/repository-format.md, *Encryption*):
- a key file wrapped by a passphrase (``DBSAFE_PASSPHRASE`` or a prompt) in the key
  folder, ``<key folder>/<vault id>.key``, outside the vault's folder: ``/etc/dbsafe/keys``
  for root, the user's config folder otherwise, ``DBSAFE_KEY_DIR`` to choose. A copy of the
  vault's folder (a backup of it, a share) then holds no key. Folders made by older
  versions keep theirs in ``<folder>/key``; it is found there, and moved to the key folder
  the next time dbsafe writes the key;
- a key file of the user's (``--key-file``), named in ``<folder>/client.json``, plain or
  wrapped, e.g. written by a secret manager.
The repository never holds the master key: another server restores only after
``dbsafe key import`` (the cloud service's rule for TDE: bring the certificate first).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.core.secrets_input import (
    NEW_PASSPHRASE_ENV,
    check_passphrase,
    new_passphrase,
    passphrase,
)
from dbsafe.services.handle.adopt import adopt_servers
from dbsafe.vault import crypto

if TYPE_CHECKING:
    from dbsafe.services.handle.vault_handle import Vault

KEY_FILE = "key"             # <client folder>/key: where versions before the key folder kept it
KEY_DIR_ENV = "DBSAFE_KEY_DIR"
PENDING = ".rotating"        # a master rotation's new key file until the vault uses it


def key_dir() -> Path:
    """The folder of the keys dbsafe keeps for its clients."""
    env = os.environ.get(KEY_DIR_ENV)
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/dbsafe/keys")
    import platformdirs  # here: only a path left to the defaults needs it (~9 ms)

    return Path(platformdirs.user_config_dir("dbsafe")) / "keys"


def default_key_path(vault_id: str) -> Path:
    return key_dir() / f"{vault_id}.key"


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


def key_path(home: Path, settings: dict, vault_id: str) -> Path:
    """Where this client's key is: the ``--key-file`` it named, else the key folder's file,
    else (a folder made by an older version) ``<folder>/key``."""
    if settings.get("key_file"):
        return Path(settings["key_file"])
    path = default_key_path(vault_id)
    legacy = home / KEY_FILE
    return legacy if not path.exists() and legacy.exists() else path


def store_key(home: Path, vault_id: str, doc: dict) -> Path:
    """Keep ``doc`` as this client's key in the key folder (the folder 0700, the file 0600),
    and remove the ``<folder>/key`` of an older version."""
    path = default_key_path(vault_id)
    _make_key_dir(path.parent)
    write_key_file(path, doc)
    (home / KEY_FILE).unlink(missing_ok=True)
    return path


def _make_key_dir(folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid == os.geteuid():
        os.chmod(folder, 0o700)


def master_source(home: Path, settings: dict, vault_id: str,
                  key_check: Callable[[], str]) -> Callable[[], bytes]:
    """A function giving this client's master key (for ``Repository.open``). A master
    rotation that died after the vault took the new key, before the key file was replaced,
    left the new one beside it (``<key file>.rotating``): it is taken, and put in place."""

    def load() -> bytes:
        path = key_path(home, settings, vault_id)
        # a rotation writes the new key beside the key folder's file (or the --key-file)
        candidates = [path, *dict.fromkeys(
            p.with_name(p.name + PENDING) for p in (path, default_key_path(vault_id)))]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise DbsafeError("key.missing", vault_id=vault_id)
        first: DbsafeError | None = None
        for candidate in found:
            try:
                master = _open_key_file(candidate, vault_id)
            except DbsafeError as exc:
                first = first or exc
                continue
            if crypto.key_check(master, vault_id) == key_check():
                if candidate != path:  # finish the rotation: the new key in its place
                    os.replace(candidate, candidate.with_name(candidate.name[:-len(PENDING)]))
                return master
            first = first or DbsafeError("key.wrong", vault_id=vault_id)
        assert first is not None
        raise first

    return load


def _open_key_file(path: Path, vault_id: str) -> bytes:
    doc = read_key_file(path)
    if doc.get("vault_id") not in (None, vault_id):
        raise DbsafeError("key.wrong", vault_id=vault_id)
    return unwrap(doc, path)


def new_vault_key(home: Path, key_file: Path | None
                  ) -> tuple[bytes, Callable[[str], None], dict]:
    """For a vault being created: its master key, a function that stores it once the vault
    id is known, and what the client records (``key_file``). With ``key_file``: the key in
    it when it exists, else a new one written there (plain, mode 0600); without: a new key
    wrapped by a passphrase asked now (twice at a terminal; refused when weak), kept in the
    key folder."""
    if key_file is not None:
        path = Path(key_file).resolve()
        settings = {"key_file": str(path)}
        if path.exists():
            return unwrap(read_key_file(path), path), lambda _vault_id: None, settings
        master = new_master()
        return master, lambda vault_id: write_key_file(
            path, crypto.wrap_master(master, vault_id, None)), settings
    master = new_master()
    secret = new_passphrase("for the new vault key")

    def keep(vault_id: str) -> None:
        store_key(home, vault_id, crypto.wrap_master(master, vault_id, secret))

    return master, keep, {}


def describe(vault: Vault) -> dict:
    repo = vault.repo
    if not repo.encrypted:
        return {"encrypted": False}
    path = key_path(vault.path, vault.settings, repo.vault_id)
    out = {"encrypted": True, "key_file": str(path), "cipher": repo.config["encryption"]["cipher"],
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
        doc = crypto.wrap_master(master, vault_id,
                                 new_passphrase("for the exported key", confirm=False))
    dest = Path(dest)
    if dest.exists():
        raise DbsafeError("key.export_exists", path=dest)
    write_key_file(dest, doc)
    return {"exported": str(dest), "vault_id": vault_id, "wrapped": not plain}


def import_key(vault: Vault, source: Path) -> dict:
    """Make a key exported elsewhere this client's key, after checking it opens this vault
    (its key check and its config's mac), and pin the vault as that key authenticates it:
    also how a client follows another's master rotation. A wrapped key is kept as it is
    (same passphrase, refused when weak); a plain one is wrapped by this client's."""
    _require_encrypted(vault)
    source = Path(source)
    doc = read_key_file(source)
    vault_id = vault.repo.vault_id
    if crypto.needs_passphrase(doc):
        secret = passphrase("of the key file")
        master = _unwrap_with(doc, source, secret)
    else:
        secret = None
        master = unwrap(doc, source)
    if doc.get("vault_id") not in (None, vault_id):
        raise DbsafeError("key.wrong", vault_id=vault_id)
    vault.repo.verify_key(master)
    if secret is None:
        doc = crypto.wrap_master(master, vault_id,
                                 new_passphrase("to keep the key on this client"))
    else:
        check_passphrase(secret)
    path = store_key(vault.path, vault_id, doc)
    vault.use_key_file(None)
    vault.pin_key()
    # an agent's folder has no catalog of its own: its control plane adopts servers
    return {"imported": str(source), "vault_id": vault_id, "key": str(path),
            **({} if vault.agent_folder else adopt_servers(vault))}


def _unwrap_with(doc: dict, path: Path, secret: str) -> bytes:
    try:
        return crypto.unwrap_master(doc, secret)
    except crypto.CryptoError:
        raise DbsafeError("key.wrong_passphrase", path=path) from None


def rotate(vault: Vault, master: bool = False) -> dict:
    """Without ``master``: re-wrap the master key under a new passphrase (at once, on this
    client) and start a new data key for everything written from now on; older objects
    stay readable with the data keys they name. With ``master``: replace the master key
    itself (``rotate_master``)."""
    _require_encrypted(vault)
    if master:
        return rotate_master(vault)
    current = vault.repo.master_key()  # keys opened once, reused by the rotation
    vault_id = vault.repo.vault_id
    path = key_path(vault.path, vault.settings, vault_id)
    key_id = vault.repo.rotate_data_key()  # opens the keys with the passphrase of now
    rewrapped = False
    if crypto.needs_passphrase(read_key_file(path)):
        fresh = new_passphrase("new, for the vault key", env=NEW_PASSPHRASE_ENV)
        doc = crypto.wrap_master(current, vault_id, fresh)
        if vault.settings.get("key_file"):
            write_key_file(path, doc)
        else:
            path = store_key(vault.path, vault_id, doc)
        rewrapped = True
    return {"vault_id": vault_id, "rewrapped": rewrapped, "key_file": str(path),
            "new_data_key": key_id, "data_keys": len(vault.repo.data_key_ids()),
            "master_rotated": False}


def rotate_master(vault: Vault) -> dict:
    """A new master key: the vault's data keys and id key re-wrapped under it, its key
    check and config mac replaced (docs/repository-format.md, *Master rotation*), and a
    new data key. Every key file of the old master stops opening the vault (``key.wrong``),
    this client's included: it gets the new key (wrapped by a new passphrase, or plain in
    its ``--key-file``), and other clients must import it (`dbsafe key export` here,
    `dbsafe key import` there). Data already written is not re-encrypted."""
    repo = vault.repo
    vault_id = repo.vault_id
    repo.master_key()  # the current key opens the vault (and its config verifies)
    path = key_path(vault.path, vault.settings, vault_id)
    fresh = new_master()
    if vault.settings.get("key_file") and not crypto.needs_passphrase(read_key_file(path)):
        dest, doc = path, crypto.wrap_master(fresh, vault_id, None)
    else:
        secret = new_passphrase("new, for the new vault key", env=NEW_PASSPHRASE_ENV)
        doc = crypto.wrap_master(fresh, vault_id, secret)
        if vault.settings.get("key_file"):
            dest = path
        else:
            dest = default_key_path(vault_id)
            _make_key_dir(dest.parent)
    pending = dest.with_name(dest.name + PENDING)
    write_key_file(pending, doc)  # kept until the vault takes the new key
    key_id = repo.rotate_master(fresh)
    os.replace(pending, dest)
    if dest != vault.path / KEY_FILE:
        with contextlib.suppress(FileNotFoundError):
            (vault.path / KEY_FILE).unlink()
    vault.pin_key()
    return {"vault_id": vault_id, "rewrapped": True, "key_file": str(dest),
            "new_data_key": key_id, "data_keys": len(repo.data_key_ids()),
            "master_rotated": True}


def _require_encrypted(vault: Vault) -> None:
    if not vault.repo.encrypted:
        raise DbsafeError("key.not_encrypted")
