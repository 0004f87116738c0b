"""Options every command shares (the vault location), set by the app's callback."""

from __future__ import annotations

from pathlib import Path

from dbsafe.services.vault import Vault


class _Options:
    vault: Path | None = None


options = _Options()


def vault_path() -> Path | None:
    return options.vault


def open_vault() -> Vault:
    return Vault.open(options.vault)
