"""Named bytes. A storage backend knows nothing of blocks, packs or backups.

Names are relative, '/'-separated paths (``data/ab/abcd…``). Every backend gives the same
guarantees, stated on ``Storage``: an object is written whole and atomically, is durable
when ``put``/``commit`` returns, and is never modified afterwards.
"""

from dbsafe.storage.base import ObjectWriter, Storage
from dbsafe.storage.local import LocalStorage

__all__ = ["LocalStorage", "ObjectWriter", "Storage", "open_storage"]


def open_storage(location: str, create: bool = False) -> Storage:
    # provisional: local folders only until the object-store backends land
    return LocalStorage(location)
