"""Opening a vault: its repository and its catalog, found from --vault, DBSAFE_HOME or the
user's data folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from dbsafe.catalog.sqlite import SqliteCatalog
from dbsafe.core.errors import DbsafeError
from dbsafe.core.regions import check_region
from dbsafe.vault.repository import Repository


def default_vault_path() -> Path:
    env = os.environ.get("DBSAFE_HOME")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("dbsafe")) / "vault"


@dataclass
class Vault:
    path: Path
    repo: Repository
    catalog: SqliteCatalog

    @classmethod
    def open(cls, path: Path | None = None) -> Vault:
        path = Path(path) if path else default_vault_path()
        repo = Repository.open(path)
        catalog = SqliteCatalog(path / "catalog.sqlite")
        return cls(path, repo, catalog)

    @classmethod
    def init(cls, path: Path | None = None, region: str | None = None) -> Vault:
        path = Path(path) if path else default_vault_path()
        if region is not None:
            region = check_region(region)
        if (path / "config").exists():
            raise DbsafeError("vault.exists", path=path)
        repo = Repository.init(path, region)
        catalog = SqliteCatalog(path / "catalog.sqlite")
        catalog.record_vault(repo.config["vault_id"], str(path), region, repo.config["created"])
        return cls(path, repo, catalog)

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
                "format": cfg["format"]}
