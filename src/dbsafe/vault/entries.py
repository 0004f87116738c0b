"""A manifest's file entries in parts, written and read one part at a time
(docs/repository-format.md, *Entries in parts*).

Why parts: a backup of 600 k files has ~150 MB of JSON entries, ~450 MB once parsed; held
whole, that was most of the memory of a backup, a restore and a verify. A writer spools
the entries to its own disk as files are copied (``EntrySpool``) and seals them in parts
at the end; a reader parses one part at a time (``read``). The entries are in path order
(``path_key``), so a reader checks "no path twice" and "no path below a file" against the
entry before, and joins two points' entries (a differential's and its base's) in step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from dbsafe.core.errors import DbsafeError
from dbsafe.core.spool import Spool
from dbsafe.vault.format import KIND_PART, SealError
from dbsafe.vault.records import FORMAT, FileEntry, Manifest

if TYPE_CHECKING:
    from dbsafe.vault.repository import Repository

PART_FILES = 10_000  # entries a writer puts in a part
MAX_PART_FILES = 100_000  # what a reader accepts in one
_SLOT = b"{}"  # a spool line kept for an entry that comes later (pg_control)


def path_key(path: str) -> str:
    """The order of entries: paths compared part by part (split at ``/``), each by code
    point, so that the entries below a path follow it directly. As a string with each
    ``/`` made NUL, which sorts before any character a name can hold: the same order,
    compared three times faster than lists of parts (a differential of 600,000 files
    compares each path four times)."""
    return path.replace("/", "\x00")


def part_name(point_id: str, part: int) -> str:
    return f"entries/{point_id}/{part:06d}"


class OutOfOrder(ValueError):
    """A writer gave an entry out of path order (a bug: the parts would be unreadable)."""


class EntrySpool:
    """A backup's file entries, in path order, spooled to the local disk (core/spool.py) as
    they come; ``reserve`` keeps the place of one that comes later (pg_control, copied last
    but listed in order). Not thread-safe: one writer."""

    def __init__(self) -> None:
        self._spool = Spool("dbsafe-entries-")
        self._last: str | None = None
        self._slots: dict[int, FileEntry | None] = {}

    def _in_order(self, path: str) -> None:
        key = path_key(path)
        if self._last is not None and key <= self._last:
            raise OutOfOrder(f"entry {path!r} after {self._last.replace(chr(0), '/')!r}")
        self._last = key

    def add(self, entry: FileEntry | dict[str, Any]) -> None:
        self._in_order(entry["path"])
        self._spool.add(entry)

    def reserve(self, path: str) -> int:
        """Keep the place of ``path``'s entry; ``fill`` it later (or never: then it is
        left out, as a file that vanished)."""
        self._in_order(path)
        self._slots[self._spool.lines] = None
        self._spool.add_line(_SLOT)
        return self._spool.lines - 1

    def fill(self, slot: int, entry: FileEntry | dict[str, Any] | None) -> None:
        self._slots[slot] = FileEntry(entry) if entry is not None else None

    def count(self) -> int:
        return self._spool.lines - sum(1 for e in self._slots.values() if e is None)

    def _lines(self) -> Iterator[bytes]:
        for i, line in enumerate(self._spool.raw()):
            if i in self._slots:
                entry = self._slots[i]
                if entry is not None:
                    yield orjson.dumps(entry)
            else:
                yield line

    def write_parts(self, repo: Repository, point_id: str) -> tuple[dict[str, int], int]:
        """Seal the entries in parts of ``PART_FILES`` into the vault: (the manifest's
        ``entries``, bytes written)."""
        head = orjson.dumps({"format": FORMAT, "point_id": point_id})[:-1]
        parts = files = written = 0
        batch: list[bytes] = []

        def seal() -> int:
            text = b"".join((head, b',"part":"%06d","files":[' % parts, b",".join(batch), b"]}"))
            return repo.save_part(point_id, parts, text)

        for line in self._lines():
            batch.append(line)
            files += 1
            if len(batch) == PART_FILES:
                written += seal()
                parts, batch = parts + 1, []
        if batch or not parts:
            written += seal()
            parts += 1
        return {"parts": parts, "files": files}, written

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> EntrySpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(repo: Repository, manifest: dict[str, Any]) -> Iterator[FileEntry]:
    """The file entries of ``manifest``, in its order: inline (``files``), or part by part,
    each checked as the format says before its entries are given: its seal and names, the
    path order across parts, and the count."""
    if "files" in manifest:
        for entry in manifest["files"]:
            yield FileEntry(entry)
        return
    point_id, about = manifest["point_id"], manifest["entries"]
    last: str | None = None
    seen = 0
    for part in range(about["parts"]):
        name = part_name(point_id, part)
        files = _load_part(repo, name, point_id)
        if not files and part < about["parts"] - 1:
            raise _invalid(point_id, name, "is empty and not the last part")
        for i, entry in enumerate(files):
            if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                    and isinstance(entry.get("blocks"), list)):
                raise _invalid(point_id, f"{name}[{i}]",
                               "is not a file entry (a path and a list of blocks)")
            key = path_key(entry["path"])
            if last is not None and key <= last:
                raise _invalid(point_id, f"{name}[{i}] {entry['path'][:200]!r}",
                               "is not after the entry before it in path order")
            last = key
            yield FileEntry(entry)
        seen += len(files)
        del files
    if seen != about["files"]:
        raise _invalid(point_id, "entries", f"the parts hold {seen} files, the manifest "
                                            f"says {about['files']}")


def _load_part(repo: Repository, name: str, point_id: str) -> list[Any]:
    try:
        data = repo.storage.get(name)
    except FileNotFoundError:
        raise DbsafeError("vault.object_corrupt", path=name,
                          reason="a part of the point's entries is missing") from None
    try:
        doc = repo.keyed.unseal(KIND_PART, data, name)
    except SealError as exc:
        raise DbsafeError("vault.object_corrupt", path=name, reason=exc) from None
    del data
    files = doc.get("files")
    if doc.get("point_id") != point_id or not isinstance(files, list):
        raise DbsafeError("vault.object_corrupt", path=name,
                          reason=f"not a part of point {point_id}'s entries")
    if len(files) > MAX_PART_FILES:
        raise _invalid(point_id, name, f"holds more than {MAX_PART_FILES} entries")
    return files


def _invalid(point_id: str, entry: str, rule: str) -> DbsafeError:
    return DbsafeError("vault.manifest_invalid", point_id=point_id, entry=entry, rule=rule)


def whole(repo: Repository, manifest: Manifest) -> Manifest:
    """``manifest`` with its entries in ``files`` (all held: for readers that need them
    at once); a manifest with inline ``files`` as it is."""
    if "files" in manifest:
        return manifest
    doc = {k: v for k, v in manifest.items() if k != "entries"}
    doc["files"] = list(read(repo, manifest))
    return Manifest(doc)


def part_names(repo: Repository, point_id: str) -> list[str]:
    """The parts stored for ``point_id`` (to delete them)."""
    return sorted(repo.storage.list(f"entries/{point_id}"))
