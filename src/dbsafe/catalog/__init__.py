"""The catalog: an index of the vault (servers, instances, databases, points, jobs).

It can be rebuilt from the repository's manifests; the repository never depends on it.
SQLite in WAL mode by default; a later backend puts it in PostgreSQL for shared vaults,
behind the same ``Catalog`` interface.
"""

from pathlib import Path

from dbsafe.catalog.base import Catalog
from dbsafe.catalog.sqlite import SqliteCatalog

__all__ = ["Catalog", "SqliteCatalog", "open_catalog"]


def open_catalog(spec: str | None, home: Path) -> SqliteCatalog:
    # provisional: SQLite only until the PostgreSQL catalog lands
    return SqliteCatalog(Path(home) / "catalog.sqlite")
