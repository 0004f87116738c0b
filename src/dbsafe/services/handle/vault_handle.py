"""Opening a vault: its repository and its catalog, found from --vault, DBSAFE_HOME or the
user's data folder.

A client (this folder) pins what it knows of the vault in ``client.json`` (``pins``: vault
id, format, block size, encryption, key check; docs/repository-format.md, *Clients*) when it
creates, connects to or imports the key of a vault, and refuses to use a repository that
differs (``vault.tampered``): the storage may be written by someone else. A folder that has
no pins yet (made by an older dbsafe) trusts the vault as it finds it at its first open.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from dbsafe.catalog import Catalog, open_catalog
from dbsafe.core.concurrency import default_workers
from dbsafe.core.errors import DbsafeError
from dbsafe.core.private_files import write_private
from dbsafe.core.regions import check_region
from dbsafe.services.handle import keys
from dbsafe.services.handle.adopt import adopt_servers
from dbsafe.storage import open_storage
from dbsafe.storage.local import tighten
from dbsafe.vault.format import trust_differences, trust_fields
from dbsafe.vault.repository import TAMPERED_ACTION, Repository
from dbsafe.vault.softdelete import immutability_setting, soft_delete_setting


def default_vault_path() -> Path:
    env = os.environ.get("DBSAFE_HOME")
    if env:
        return Path(env)
    import platformdirs  # here: only a path left to the defaults needs it (~9 ms)

    return Path(platformdirs.user_data_dir("dbsafe")) / "vault"


CLIENT_FILE = "client.json"
AGENT_CATALOG = "agent"  # an agent's client folder: its catalog is the control plane's
CLIENT_ID = re.compile(r"[0-9a-f]{16}")
KEY_ROTATED_ACTION = ("If another client replaced the vault's master key (`dbsafe key rotate "
                      "--master`), import the new key here: `dbsafe key import FILE`. "
                      "Otherwise: " + TAMPERED_ACTION)


@dataclass
class Vault:
    """One client's view of a vault: ``path`` is this client's folder (``--vault`` /
    DBSAFE_HOME), holding ``client.json`` (where the repository and the catalog are, where
    the key is) unless the repository itself lives there, as a local vault's does."""

    path: Path
    repo: Repository
    catalog: Catalog
    settings: dict = field(default_factory=dict)
    # whether this handle's catalog rows were reconciled with the repository (points.py)
    reconciled: bool = False
    # the agent this handle runs as (docs/fleet.md); None: the control plane, or a client of
    # one machine
    agent_id: str | None = None

    @property
    def keeps_catalog(self) -> bool:
        """Whether this handle keeps the catalog's shared books: repairs rows from the
        repository (points, WAL records) and records what it sees of replica sets' nodes.
        Not an agent's: it sees only its own rows, and reports; its control plane keeps
        them."""
        return self.agent_id is None

    @property
    def agent_folder(self) -> bool:
        """Whether this is an agent's folder opened by a command of its host (its catalog is
        the control plane's: `_AgentFolder` refuses every call)."""
        return self.settings.get("catalog") == AGENT_CATALOG

    def is_here(self, server: dict) -> bool:
        """Whether ``server``'s cluster is on this handle's host (reachable from here)."""
        return server.get("agent_id") == self.agent_id

    @classmethod
    def open(cls, path: Path | None = None, *, new_key: bool = False,
             catalog: Catalog | None = None) -> Vault:
        """This client's vault, after checking the repository against what the client pins
        of it. ``new_key`` (``key import`` only): a key check other than the pinned one is
        let through, for the key being imported to be checked against it. ``catalog``: an
        agent's, which asks the control plane (agent/remote_catalog.py)."""
        path = Path(path) if path else default_vault_path()
        settings = _read_settings(path)
        tighten(path)
        new_client = _ensure_client_id(settings)
        storage = open_storage(settings.get("repository") or str(path))
        repo = Repository.open(storage, client_id=settings["client_id"], client_dir=path)
        if catalog is None:
            catalog = (_AgentFolder(path) if settings.get("catalog") == AGENT_CATALOG
                       else open_catalog(settings.get("catalog"), path))
        vault = cls(path, repo, catalog, settings)
        vault._trust(new_key=new_key, save=new_client)
        repo_master(repo, path, settings)
        return vault

    @staticmethod
    def records(path: Path | None = None) -> Catalog:
        """This client's catalog alone, opened without reaching the repository: what dbsafe
        recorded (alerts, jobs) must be readable, and resolvable, while the repository is
        what is away (docs/wal-spool.md). Nothing read from it is the repository's."""
        path = Path(path) if path else default_vault_path()
        settings = _read_settings(path)
        if not settings and not (path / "config").exists():
            raise DbsafeError("vault.not_initialised", path=path)
        if settings.get("catalog") == AGENT_CATALOG:
            return _AgentFolder(path)  # type: ignore[return-value]
        return open_catalog(settings.get("catalog"), path)

    @staticmethod
    def pinned_id(path: Path | None = None) -> str | None:
        """The vault id this client pinned, read without reaching the repository (the
        agent's status and stop must work while the repository is away); None when the
        client has pinned none yet."""
        pins = _read_settings(Path(path) if path else default_vault_path()).get("pins")
        return pins.get("vault_id") if isinstance(pins, dict) else None

    @classmethod
    def init(cls, path: Path | None = None, region: str | None = None, *,
             repository: str | None = None, catalog: str | None = None,
             encryption: bool = False, key_file: Path | None = None) -> Vault:
        """A new vault: its repository in ``path`` or at ``repository`` (an object store),
        its catalog in ``path`` or in PostgreSQL (``catalog``); encrypted when asked."""
        path = Path(path) if path else default_vault_path()
        if region is not None:
            region = check_region(region)
        if (path / "config").exists() or (path / CLIENT_FILE).exists():
            raise DbsafeError("vault.exists", path=path)
        if key_file is not None and not encryption:
            raise DbsafeError("key.file_without_encryption")
        _make_client_folder(path)
        catalog_db = open_catalog(catalog, path)  # checked before anything is written
        storage = open_storage(repository or str(path), create=True)
        master = store_key = None
        settings: dict = {"client_id": secrets.token_hex(8)}
        if repository:
            settings["repository"] = repository
        if catalog:
            settings["catalog"] = catalog
        if encryption:
            master, store_key, key_settings = keys.new_vault_key(path, key_file)
            settings.update(key_settings)
        repo = Repository.init(storage, region, master, client_id=settings["client_id"])
        if store_key is not None:
            store_key(repo.config["vault_id"])
        settings["pins"] = {**trust_fields(repo.config), "config_mac": encryption}
        _write_settings(path, settings)
        repo_master(repo, path, settings)
        vault = cls(path, repo, catalog_db, settings)
        vault._trust()
        vault.catalog.record_vault(repo.config["vault_id"], repo.location, region,
                                   repo.config["created"])
        return vault

    @classmethod
    def connect(cls, path: Path | None, repository: str, catalog: str | None = None) -> Vault:
        """Make ``path`` a client of an existing vault (another server of the same team):
        nothing is written to the repository. An encrypted vault then needs its key
        (`dbsafe key import`) before anything is read or written."""
        path = Path(path) if path else default_vault_path()
        if (path / "config").exists() or (path / CLIENT_FILE).exists():
            raise DbsafeError("vault.exists", path=path)
        settings: dict = {"client_id": secrets.token_hex(8), "repository": repository,
                    **({"catalog": catalog} if catalog else {})}
        repo = Repository.open(open_storage(repository), client_id=settings["client_id"])
        _make_client_folder(path)
        catalog_db = open_catalog(catalog, path)
        # Connecting trusts the vault as it is now (its key, imported next, authenticates
        # an encrypted vault's config).
        settings["pins"] = {**trust_fields(repo.config), "config_mac": False}
        _write_settings(path, settings)
        repo_master(repo, path, settings)
        vault = cls(path, repo, catalog_db, settings)
        vault._trust()
        vault.catalog.record_vault(repo.config["vault_id"], repo.location,
                                   repo.config["region"], repo.config["created"])
        if not repo.encrypted:  # an encrypted vault's manifests wait for `key import`
            adopt_servers(vault)
        return vault

    @classmethod
    def join(cls, path: Path, repository: str, pins: dict, catalog: Catalog) -> Vault:
        """Make ``path`` an agent's client of the vault at ``repository`` (docs/fleet.md):
        no catalog of its own (its calls go to the control plane, ``catalog``), and the
        pins are the control plane's, received over the pinned connection, so the
        repository is checked against them before anything is read from it."""
        if (path / CLIENT_FILE).exists():
            raise DbsafeError("vault.exists", path=path)
        repo = Repository.open(open_storage(repository), client_id=secrets.token_hex(8))
        settings: dict = {"client_id": repo.client_id, "repository": repository,
                          "catalog": AGENT_CATALOG, "pins": dict(pins)}
        _make_client_folder(path)
        vault = cls(path, repo, catalog, settings)
        vault._trust()
        _write_settings(path, settings)
        repo_master(repo, path, settings)
        return vault

    def setting_now(self, key: str):
        """A setting as ``client.json`` holds it now: what an administrator changed on this
        host applies at once to a long-running process (an agent's restore roots)."""
        return _read_settings(self.path).get(key, self.settings.get(key))

    def save_settings(self) -> None:
        """Write this client's settings (``client.json``) as they are in ``settings``."""
        _write_settings(self.path, self.settings)

    # what this client knows of the vault ---------------------------------------------
    def _trust(self, *, new_key: bool = False, save: bool = False) -> None:
        """Compare the repository's config with the pins (trust on first use when there
        are none) and tell the repository what this client saw authenticated."""
        found = trust_fields(self.repo.config)
        pins = self.settings.get("pins")
        if not isinstance(pins, dict):
            self.settings["pins"] = pins = {**found, "config_mac": False}
            save = True
        differences = trust_differences(pins, found)
        if new_key:
            differences = [d for d in differences if not d.startswith("key check")]
        if differences:
            only_key = all(d.startswith("key check") for d in differences)
            raise DbsafeError("vault.tampered", path=self.repo.location,
                              what="; ".join(differences),
                              action=KEY_ROTATED_ACTION if only_key and found["encrypted"]
                              else TAMPERED_ACTION)
        self.repo.require_mac = bool(pins.get("config_mac")) and not new_key
        self.repo.on_config_verified = self._config_verified
        if save:
            _save_quietly(self.path, self.settings)

    def _config_verified(self) -> None:
        """The repository verified an encrypted vault's config mac: from now on this client
        refuses a config without one (it cannot have lost it honestly)."""
        if not self.settings["pins"].get("config_mac"):
            self.settings["pins"]["config_mac"] = True
            _save_quietly(self.path, self.settings)

    def pin_key(self) -> None:
        """Pin the vault's key check as it is now (``key import``, a master rotation; the
        key has been checked against it and the config's mac, when it has one)."""
        authenticated = bool((self.repo.config.get("encryption") or {}).get("mac"))
        self.settings["pins"] = {**trust_fields(self.repo.config), "config_mac": authenticated}
        self.save_settings()
        self.repo.require_mac = authenticated

    def check_usable(self) -> None:
        """What a long-running service checks before it starts (``dbsafe serve``): the pins
        (at open), and an index that was not moved aside."""
        self.repo.check_index()

    def use_key_file(self, key_file: str | None) -> None:
        """Record where this client's key is (None: the key folder's, services/handle/keys.py)."""
        if key_file is None:
            self.settings.pop("key_file", None)
        else:
            self.settings["key_file"] = key_file
        self.save_settings()
        repo_master(self.repo, self.path, self.settings)

    def read_workers(self) -> int:
        """Threads that read blocks (restore, verify): one per core on a local vault, where
        a read is CPU work; more on an object store, where each block is a request that
        mostly waits on the network (16, within the storage's 32 connections)."""
        cores = default_workers()
        return cores if self.repo.storage.describe()["backend"] == "local" else max(cores, 16)

    def exclusive(self, name: str):
        """A lock one holder at a time across every client of this vault (the catalog's)."""
        return self.catalog.exclusive(name)

    def set_region(self, region: str) -> dict:
        """Set the region of a vault that has none (a vault's region never changes)."""
        region = check_region(region)
        self.repo.set_region(region)
        self.catalog.set_vault_region(self.repo.config["vault_id"], region)
        return self.describe()

    def describe(self) -> dict:
        cfg = self.repo.config
        return {"path": str(self.path), "vault_id": cfg["vault_id"], "region": cfg["region"],
                "created": cfg["created"], "block_size": cfg["block_size"],
                "format": cfg["format"], "repository": self.repo.storage.describe(),
                "catalog": self.catalog.describe(), "encrypted": self.repo.encrypted,
                **protection_settings(self.repo.storage)}


class _AgentFolder:
    """The catalog of an agent's folder opened without its control plane (its restore
    roots, its key): anything asked of it is refused with what to do instead."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __getattr__(self, name: str):
        raise DbsafeError("agent.catalog_remote", path=self._path)


def protection_settings(storage) -> dict:
    """Soft delete and immutability, as every client of the vault reads them."""
    return {"soft_delete": soft_delete_setting(storage),
            "immutability": immutability_setting(storage)["state"]}


def repo_master(repo: Repository, home: Path, settings: dict) -> None:
    """Tell an encrypted repository where this client's master key comes from."""
    if repo.encrypted:
        repo.use_master(keys.master_source(
            home, settings, repo.vault_id, lambda: repo.config["encryption"]["key_check"]))


def _read_settings(path: Path) -> dict:
    try:
        settings = json.loads((path / CLIENT_FILE).read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        raise DbsafeError("vault.object_corrupt", path=path / CLIENT_FILE,
                          reason="not JSON") from None
    if not isinstance(settings, dict):
        raise DbsafeError("vault.object_corrupt", path=path / CLIENT_FILE,
                          reason="not a JSON object")
    return settings


def _ensure_client_id(settings: dict) -> bool:
    """Give a client folder made by an older dbsafe its random client id (names its writer
    locks, vault/locks.py); True when it got one now."""
    if isinstance(settings.get("client_id"), str) and CLIENT_ID.fullmatch(settings["client_id"]):
        return False
    settings["client_id"] = secrets.token_hex(8)
    return True


def _make_client_folder(path: Path) -> None:
    """The client's folder, its owner's alone (0700); its parents as they come."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    tighten(path)


def _write_settings(path: Path, settings: dict) -> None:
    write_private(path / CLIENT_FILE, json.dumps(settings, indent=2).encode())


def _save_quietly(path: Path, settings: dict) -> None:
    """Record settings learnt while opening (a first client id, first pins); a folder this
    process may not write (a reader's) keeps working without them."""
    with contextlib.suppress(PermissionError):
        _write_settings(path, settings)
