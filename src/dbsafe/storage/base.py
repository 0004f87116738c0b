"""The storage interface every backend (local folder now; S3 and Azure Blob later) implements."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from typing import Protocol


class ObjectWriter(Protocol):
    """A streaming write of one object. Nothing is visible under its name before ``commit``."""

    def write(self, data: bytes | memoryview) -> None: ...

    def tell(self) -> int: ...

    def commit(self) -> None:
        """Make the object durable and visible, atomically. Replaces nothing: names are unique."""

    def abort(self) -> None:
        """Drop what was written. Safe to call after a failed write."""


class Storage(Protocol):
    def put(self, name: str, data: bytes, durable: bool = True) -> None:
        """Write ``name`` atomically (visible whole, or not at all) and, unless told
        otherwise, durably (writer locks need not survive a crash: their process did not)."""

    def writer(self, name: str) -> ObjectWriter:
        """Start a streaming write of ``name``."""

    def get(self, name: str) -> bytes:
        """Whole object; raises FileNotFoundError when it does not exist."""

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``; FileNotFoundError when missing; may return fewer
        bytes when the object is shorter (a caller checks)."""

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int:
        """Bytes of ``name``; FileNotFoundError when missing."""

    def list(self, prefix: str) -> Iterator[str]:
        """Names of committed objects under the folder ``prefix`` (recursively)."""

    def names(self, folder: str) -> builtins.list[str]:
        """Base names of the objects directly in ``folder`` (not recursive)."""

    def delete(self, name: str) -> None:
        """Remove ``name``; idempotent."""

    def retire(self, names: Iterable[str]) -> None:
        """Stop using handles kept open on ``names`` (deleted elsewhere)."""

    # cleanup, free space, description, closing (every backend: local, S3, Azure) --------
    def cleanup(self) -> int:
        """Remove what dead writers left behind (local: their tmp files; S3: multipart
        uploads older than 24 h; Azure: nothing, uncommitted blocks expire); how many."""

    def free_space(self) -> int | None:
        """Bytes a write may still add where the backend has such a limit to read (a local
        file system); None for an object store, whose quota shows only when a write is
        refused. A write refused for space raises ``vault.full``."""

    def describe(self) -> dict[str, str]:
        """``{"backend": "local"|"s3"|"azure", "location": ...}``; never a secret."""

    def close(self) -> None:
        """Release connections, threads and descriptors."""
