"""The vault's repository: blocks, packs, index files and manifests (docs/repository-format.md).

It knows bytes and manifests, nothing of PostgreSQL. Writers follow the format's write order
(data → index → manifest); readers trust nothing but hashes.
"""

from dbsafe.vault.repository import Repository

__all__ = ["Repository"]
