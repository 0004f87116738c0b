"""Options every command shares (the vault location), set by the app's callback."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from dbsafe.services.vault import Vault


class _Options:
    vault: Path | None = None


options = _Options()


def vault_path() -> Path | None:
    return options.vault


def open_vault() -> Vault:
    return Vault.open(options.vault)


class lazy(ModuleType):
    """A module imported at first use: every ``dbsafe`` call loads every command module, so
    command modules reach services through this to keep the CLI's start-up short."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> object:
        if attr == "_module":
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self.__name__)
        return getattr(self._module, attr)
