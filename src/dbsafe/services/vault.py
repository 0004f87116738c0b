"""Opening a vault: its repository and its catalog, found from --vault, DBSAFE_HOME or the
user's data folder."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from dbsafe.catalog import Catalog, open_catalog
from dbsafe.core.concurrency import default_workers
from dbsafe.core.errors import DbsafeError
from dbsafe.core.regions import check_region
from dbsafe.services import keys
from dbsafe.services.adopt import adopt_servers
from dbsafe.storage import open_storage
from dbsafe.vault.repository import Repository
from dbsafe.vault.softdelete import immutability_setting, soft_delete_setting


def default_vault_path() -> Path:
    env = os.environ.get("DBSAFE_HOME")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("dbsafe")) / "vault"


CLIENT_FILE = "client.json"


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

    @classmethod
    def open(cls, path: Path | None = None) -> Vault:
        path = Path(path) if path else default_vault_path()
        settings = _read_settings(path)
        storage = open_storage(settings.get("repository") or str(path))
        repo = Repository.open(storage)
        repo_master(repo, path, settings)
        return cls(path, repo, open_catalog(settings.get("catalog"), path), settings)

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
        path.mkdir(parents=True, exist_ok=True)
        catalog_db = open_catalog(catalog, path)  # checked before anything is written
        storage = open_storage(repository or str(path), create=True)
        master = store_key = None
        settings: dict = {}
        if repository:
            settings["repository"] = repository
        if catalog:
            settings["catalog"] = catalog
        if encryption:
            master, store_key, key_settings = keys.new_vault_key(path, key_file)
            settings.update(key_settings)
        repo = Repository.init(storage, region, master)
        if store_key is not None:
            store_key(repo.config["vault_id"])
        if settings:
            _write_settings(path, settings)
        repo_master(repo, path, settings)
        vault = cls(path, repo, catalog_db, settings)
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
        repo = Repository.open(open_storage(repository))
        settings = {"repository": repository, **({"catalog": catalog} if catalog else {})}
        path.mkdir(parents=True, exist_ok=True)
        catalog_db = open_catalog(catalog, path)
        _write_settings(path, settings)
        repo_master(repo, path, settings)
        vault = cls(path, repo, catalog_db, settings)
        vault.catalog.record_vault(repo.config["vault_id"], repo.location,
                                   repo.config["region"], repo.config["created"])
        if not repo.encrypted:  # an encrypted vault's manifests wait for `key import`
            adopt_servers(vault)
        return vault

    def save_settings(self) -> None:
        """Write this client's settings (``client.json``) as they are in ``settings``."""
        _write_settings(self.path, self.settings)

    def use_key_file(self, key_file: str | None) -> None:
        """Record where this client's key is (None: ``<folder>/key``)."""
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


def protection_settings(storage) -> dict:
    """Soft delete and immutability, as every client of the vault reads them."""
    return {"soft_delete": soft_delete_setting(storage),
            "immutability": immutability_setting(storage)["state"]}


def repo_master(repo: Repository, home: Path, settings: dict) -> None:
    """Tell an encrypted repository where this client's master key comes from."""
    if repo.encrypted:
        repo.use_master(keys.master_source(home, settings, repo.config["vault_id"]))


def _read_settings(path: Path) -> dict:
    try:
        return json.loads((path / CLIENT_FILE).read_text())
    except FileNotFoundError:
        return {}


def _write_settings(path: Path, settings: dict) -> None:
    tmp = path / f".{CLIENT_FILE}.tmp"
    tmp.write_text(json.dumps(settings, indent=2))
    os.replace(tmp, path / CLIENT_FILE)
