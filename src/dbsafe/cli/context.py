"""Options every command shares (the vault location), set by the app's callback, and the
checks of names and paths the commands run on their options before any work (the bounds
the API holds: core/bounds.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dbsafe.core import bounds

if TYPE_CHECKING:
    from dbsafe.catalog.base import Catalog
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


def open_records() -> Catalog:
    """The vault's catalog alone (alerts, jobs), readable while the repository is away."""
    from dbsafe.services.handle import Vault  # loaded by the command that needs it

    return Vault.records(options.vault)


def open_vault(*, new_key: bool = False) -> Vault:
    """The vault of --vault / DBSAFE_HOME (``new_key``: for `dbsafe key import` only)."""
    from dbsafe.services.handle import Vault  # loaded by the command that needs it

    return Vault.open(options.vault, new_key=new_key)

