"""The opened vault: its handle, keys, adoption of a vault's servers, room in its storage.
Modules: adopt, keys, space, vault_handle. It imports only the groups below it (none).
The names here are the group's published surface: the CLI, the API, the portal, the
scheduler and the agent import them from here, never a module inside (import-linter
holds both rules; docs/architecture.md).
"""

from __future__ import annotations

from dbsafe.services.handle.keys import describe, export_key, import_key, rotate
from dbsafe.services.handle.vault_handle import Vault

__all__ = [
    "Vault",
    "describe",
    "export_key",
    "import_key",
    "rotate",
]
