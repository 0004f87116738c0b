"""Named bytes. A storage backend knows nothing of blocks, packs or backups.

Names are relative, '/'-separated paths (``data/ab/abcd…``). Every backend gives the same
guarantees, stated on ``Storage``: an object is written whole and atomically, is durable
when ``put``/``commit`` returns, and is never modified afterwards.

``open_storage(location)`` opens a local folder, an S3-compatible bucket or an Azure Blob
container from one location string (``parse_location``; docs/storage.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbsafe.storage.base import ObjectWriter, Storage
from dbsafe.storage.local import LocalStorage
from dbsafe.storage.location import Location, parse_location

__all__ = ["LocalStorage", "Location", "ObjectWriter", "Storage", "open_storage",
           "parse_location"]


def open_storage(location: str | Path, *, create: bool = False,
                 env: Mapping[str, str] | None = None, part_size: int | None = None) -> Storage:
    """The storage at ``location``. ``create`` (vault init) makes a missing bucket or
    container; otherwise a missing one is ``storage.container_missing``. Credentials come
    from ``env`` (default: the process environment and, for S3, boto3's usual chain).
    ``part_size`` sets the streaming part size of object stores (tests use small parts).
    Backends are imported only when used: a local vault never loads boto3 or the Azure SDK."""
    parsed = parse_location(str(location))
    options: dict[str, Any] = {"create": create, "env": env}
    if part_size is not None:
        options["part_size"] = part_size
    if parsed.backend == "s3":
        from dbsafe.storage.s3 import S3Storage

        return S3Storage(parsed, **options)
    if parsed.backend == "azure":
        from dbsafe.storage.azure import AzureStorage

        return AzureStorage(parsed, **options)
    return LocalStorage(Path(parsed.path))
