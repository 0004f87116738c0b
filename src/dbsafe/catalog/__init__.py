"""The catalog: an index of the vault (servers, instances, databases, points, jobs).

It can be rebuilt from the repository's manifests; the repository never depends on it.
SQLite in WAL mode by default; a later backend puts it in PostgreSQL for shared vaults,
behind the same ``Catalog`` interface.
"""

from dbsafe.catalog.base import Catalog
from dbsafe.catalog.sqlite import SqliteCatalog

__all__ = ["Catalog", "SqliteCatalog"]
