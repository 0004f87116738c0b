"""Options every command shares (the vault location), set by the app's callback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbsafe.services.vault import Vault



class _Options:
    vault: Path | None = None


options = _Options()


def vault_path() -> Path | None:
    return options.vault


def open_vault(*, new_key: bool = False) -> Vault:
    """The vault of --vault / DBSAFE_HOME (``new_key``: for `dbsafe key import` only)."""
    from dbsafe.services.vault import Vault  # loaded by the command that needs it

    return Vault.open(options.vault, new_key=new_key)



def lazy(name: str) -> ModuleType:
    """Module ``name``, loaded at its first attribute access (the standard library's
    LazyLoader recipe): every ``dbsafe`` call loads every command module, so command
    modules reach their services through this to keep the CLI's start-up short."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
