"""The catalog: an index of the vault (servers, instances, databases, points, jobs).

It can be rebuilt from the repository's manifests; the repository never depends on it.
SQLite in WAL mode by default (one file in the vault's client folder); PostgreSQL for a
vault shared by agents on several hosts. Both implement the same ``Catalog`` interface
with the same queries (``sql.SqlCatalog``) and the same migrations.
"""

from __future__ import annotations

from pathlib import Path

from dbsafe.catalog.base import Catalog
from dbsafe.catalog.sqlite import SqliteCatalog
from dbsafe.core.errors import DbsafeError

__all__ = ["Catalog", "SqliteCatalog", "open_catalog"]


def open_catalog(spec: str | None, home: Path) -> Catalog:
    """The catalog a spec names: None or 'sqlite' -> ``home``/catalog.sqlite; a PostgreSQL
    URL (postgresql://, postgres://) or libpq keyword string -> the PostgreSQL catalog (its
    password from PGPASSWORD / PGPASSFILE / ~/.pgpass, never from the spec)."""
    if spec is None or spec == "sqlite":
        return SqliteCatalog(Path(home) / "catalog.sqlite")
    from dbsafe.catalog.postgres import PostgresCatalog, is_dsn  # psycopg_pool only if used

    if not is_dsn(spec):
        raise DbsafeError("catalog.spec_invalid", reason="it is neither 'sqlite' nor a "
                          "PostgreSQL connection string")
    return PostgresCatalog(spec)
