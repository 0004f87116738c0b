"""Options every command shares (the vault location), set by the app's callback, and the
checks of names and paths the commands run on their options before any work (the bounds
the API holds: core/bounds.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import typer

from dbsafe.core import bounds

if TYPE_CHECKING:
    from dbsafe.services.handle import Vault


def checked_name(value: str | None) -> str | None:
    """A Typer callback: a new server's, replica set's or policy's name, as the API takes
    it (a usage error otherwise)."""
    if value is not None and (problem := bounds.name_problem(value)):
        raise typer.BadParameter(f"{value!r}: {problem}")
    return value


def checked_account(value: str | None) -> str | None:
    """A Typer callback: a new user's or token's name, as the API takes it."""
    if value is not None and (problem := bounds.account_problem(value)):
        raise typer.BadParameter(f"{value!r}: {problem}")
    return value


def checked_path(value: Path | None) -> Path | None:
    """A Typer callback: a path the file systems can take (a usage error otherwise)."""
    if value is not None and (problem := bounds.path_problem(str(value))):
        raise typer.BadParameter(problem)
    return value


class _Options:
    vault: Path | None = None


options = _Options()


def vault_path() -> Path | None:
    return options.vault


def open_vault(*, new_key: bool = False) -> Vault:
    """The vault of --vault / DBSAFE_HOME (``new_key``: for `dbsafe key import` only)."""
    from dbsafe.services.handle import Vault  # loaded by the command that needs it

    return Vault.open(options.vault, new_key=new_key)



def lazy(name: str) -> ModuleType:
    """Module ``name``, loaded at its first attribute access (the standard library's
    LazyLoader recipe): every ``dbsafe`` call loads every command module, so command
    modules reach their services through this to keep the CLI's start-up short."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
