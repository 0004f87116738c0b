"""What the S3 and Azure backends share: keys under a prefix, and the read edge cases.

An object store has no folders: a vault under ``PREFIX`` keeps ``data/ab/x`` at key
``PREFIX/data/ab/x``, and a "folder" is a key prefix ending in '/'. A backend supplies
``size`` and ``_read_range`` (raising ``PastEnd`` for a range that starts at or after the
end); the rest of the read contract (``exists``, empty ranges, short reads) is here once.
"""

from __future__ import annotations

from collections.abc import Iterable


class PastEnd(Exception):
    """A range that starts at or after the end of the object."""


class ObjectStore:
    prefix: str

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def folder_key(self, folder: str) -> str:
        """The key prefix of ``folder`` ('' for the whole vault without a prefix)."""
        folder = folder.strip("/")
        if folder:
            return self.key(folder) + "/"
        return f"{self.prefix}/" if self.prefix else ""

    def name_of(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    def size(self, name: str) -> int:
        raise NotImplementedError

    def _read_range(self, name: str, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            self.size(name)  # FileNotFoundError when missing, as for any read
            return b""
        try:
            return self._read_range(name, offset, length)
        except PastEnd:
            return b""

    def exists(self, name: str) -> bool:
        try:
            self.size(name)
        except FileNotFoundError:
            return False
        return True

    def retire(self, names: Iterable[str]) -> None:
        """Nothing is held open per object."""

    def free_space(self) -> None:
        """No file system to fill: a quota shows only when a write is refused."""
        return None
