"""The shape a manifest must have before anything is restored from it.

In a plain vault anyone who can write the storage can forge a manifest (the keyed hash's
key sits in the repository's own ``config``), and a scheduled drill restores whatever the
newest manifest says with nobody watching. So a reader checks every entry it would act on
against docs/repository-format.md (*Manifests*, *Differentials*) before it writes
anything: paths relative and normalised (they are joined to a target folder), modes plain
permission bits (no setuid, setgid or sticky), sizes and block counts that agree, delta
pages inside their file, a synthetic full's layers holding exactly their pages, no path
listed twice or both as a file and a folder.

These are the repository's rules and know nothing of PostgreSQL; where PostgreSQL fixes a
data directory's layout, engines/postgres/layout_rules.py adds its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dbsafe.core.path_rules import relative_path_problem

PAGE_SIZE = 8192  # a delta's unit (docs/repository-format.md, *Differentials*)
MAX_MODE = 0o777  # permission bits only: setuid, setgid and sticky are refused
LISTS = ("files", "dirs", "skipped", "wal")
BLOCK_ID = re.compile(r"[0-9a-f]{64}")  # 32 bytes, hex (docs/repository-format.md, *Terms*)
POINT_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")  # YYYYMMDDTHHMMSSZ-<8 hex>


class ManifestProblem(Exception):
    """An entry of a manifest breaks a rule; ``entry`` names it, ``rule`` says why."""

    def __init__(self, entry: str, rule: str) -> None:
        super().__init__(f"{entry}: {rule}")
        self.entry, self.rule = entry, rule


def shown(key: str, i: int, entry: object) -> str:
    """An entry as an error names it: its list, its index and (shortened) its path."""
    path = entry.get("path") if isinstance(entry, dict) else None
    return f"{key}[{i}]" + (f" {path[:200]!r}" if isinstance(path, str) else "")


def entries(doc: dict[str, Any], key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name for errors, entry) of one of the manifest's lists; refuses what is not one."""
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise ManifestProblem(key, "is not a list")
    for i, entry in enumerate(items):
        name = shown(key, i, entry)
        if not isinstance(entry, dict):
            raise ManifestProblem(name, "is not an object")
        yield name, entry


def _int(value: object, low: int = 0, high: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and \
        (high is None or value <= high)


def check(doc: dict[str, Any]) -> None:
    """Raise ManifestProblem for the first entry of ``doc`` that breaks a rule."""
    if not isinstance(doc, dict):
        raise ManifestProblem("manifest", "is not an object")
    base = doc.get("base")
    if base is not None and not (isinstance(base, str) and POINT_ID.fullmatch(base)):
        raise ManifestProblem("base", "is not a point id (YYYYMMDDTHHMMSSZ-<8 hex>)")
    files = [(n, e) for n, e in entries(doc, "files")]
    block_size: Any = doc.get("block_size")  # checked below when files need it
    if files and not _int(block_size, 1):
        raise ManifestProblem("block_size", "is not a positive integer")
    kinds: dict[str, str] = {}
    for name, entry in files:
        _file(name, entry, block_size)
        _claim(kinds, entry["path"], "file", name)
    for name, entry in entries(doc, "skipped"):
        _common(name, entry)
        _claim(kinds, entry["path"], "file", name)
    for name, entry in entries(doc, "dirs"):
        _common(name, entry, sized=False)
        if entry.get("type", "dir") not in ("dir", "tablespace"):
            raise ManifestProblem(name, "has a type other than dir or tablespace")
        _claim(kinds, entry["path"], "dir", name)
    for path, kind in kinds.items():  # a file cannot be a folder another path goes through
        parent = path.rpartition("/")[0]
        while parent:
            if kinds.get(parent) == "file":
                raise ManifestProblem(f"{kind} {path[:200]!r}",
                                      f"lies below {parent[:200]!r}, which is a file")
            parent = parent.rpartition("/")[0]
    wal_names: set[str] = set()
    for name, entry in entries(doc, "wal"):
        _file(name, entry, block_size)
        if entry.get("delta") is not None or entry.get("layers") is not None:
            raise ManifestProblem(name, "is a WAL file with a delta or layers (stored whole)")
        if "/" in entry["path"]:
            raise ManifestProblem(name, "is a WAL file name with a folder in it")
        if entry["path"] in wal_names:
            raise ManifestProblem(name, "is listed twice")
        wal_names.add(entry["path"])


class FileRules:
    """``check``'s rules for file entries given one at a time in path order (a manifest's
    entries in parts, docs/repository-format.md, *Entries in parts*), after ``check`` of
    the manifest without them: each entry as a file of ``files``; none at the path of a
    folder or a left-out file, none with one of those below it, none below a left-out
    file; none below another file (in path order, the entries below a path follow it, so
    the entry before is the one to compare with). A path listed twice breaks the order,
    which the reader of the parts checks."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.block_size: Any = doc.get("block_size")
        self.claimed: dict[str, str] = {}
        for _name, entry in entries(doc, "skipped"):
            self.claimed[entry["path"]] = "file"
        for _name, entry in entries(doc, "dirs"):
            self.claimed[entry["path"]] = "dir"
        self.above = {parent for path in self.claimed for parent in _parents(path)}
        self.last = ""

    def check(self, name: str, entry: object) -> None:
        if not isinstance(entry, dict):
            raise ManifestProblem(name, "is not an object")
        if not _int(self.block_size, 1):
            raise ManifestProblem("block_size", "is not a positive integer")
        _file(name, entry, self.block_size)
        path = entry["path"]
        if path in self.claimed:
            raise ManifestProblem(name, "is listed twice (as a file or a folder)")
        if path in self.above:
            raise ManifestProblem(name, "is a file that a listed folder or file lies below")
        for parent in _parents(path):
            if self.claimed.get(parent) == "file" or parent == self.last:
                raise ManifestProblem(name, f"lies below {parent[:200]!r}, which is a file")
        self.last = path


def _parents(path: str) -> Iterator[str]:
    parent = path.rpartition("/")[0]
    while parent:
        yield parent
        parent = parent.rpartition("/")[0]


def _claim(kinds: dict[str, str], path: str, kind: str, name: str) -> None:
    if path in kinds:
        raise ManifestProblem(name, "is listed twice (as a file or a folder)")
    kinds[path] = kind


def _common(name: str, entry: dict[str, Any], sized: bool = True) -> None:
    problem = relative_path_problem(entry.get("path"))
    if problem:
        raise ManifestProblem(name, f"path {problem}")
    if not _int(entry.get("mode", 0), 0, MAX_MODE):
        raise ManifestProblem(name, "has a mode that is not plain permission bits "
                                    "(setuid, setgid and sticky are refused)")
    if sized and not _int(entry.get("size")):
        raise ManifestProblem(name, "has a size that is not a whole number of bytes")


def _file(name: str, entry: dict[str, Any], block_size: int) -> None:
    _common(name, entry)
    blocks = entry.get("blocks")
    if not isinstance(blocks, list) or \
            not all(isinstance(b, str) and BLOCK_ID.fullmatch(b) for b in blocks):
        raise ManifestProblem(name, "has no list of block ids (64 hex digits each)")
    if not isinstance(entry.get("mtime", 0), int | float):
        raise ManifestProblem(name, "has an mtime that is not a number")
    if entry.get("delta") is not None:
        if entry.get("layers") is not None:
            raise ManifestProblem(name, "has both a delta and layers")
        end = _pages(name, "delta", entry["delta"], len(blocks), block_size)
        if end > entry["size"] // PAGE_SIZE:
            raise ManifestProblem(name, "has delta pages past the end of the file")
    elif entry.get("layers") is not None:
        _layers(name, entry, block_size)
    elif len(blocks) != -(-entry["size"] // block_size):
        raise ManifestProblem(name, "has a block count that does not match its size")


def _layers(name: str, entry: dict[str, Any], block_size: int) -> None:
    """docs/repository-format.md, *Synthetic fulls*: the read blocks within the file's
    size, then each layer's blocks holding exactly its pages (which may lie past the
    size: the file was cut after that layer)."""
    layers = entry["layers"]
    if not isinstance(layers, list):
        raise ManifestProblem(name, "has layers that are not a list")
    left = len(entry["blocks"])
    for layer in layers:
        per_block = layer.get("block_pages") if isinstance(layer, dict) else None
        n = len(per_block) if isinstance(per_block, list) else 0
        _pages(name, "layer", layer, min(n, left), block_size)
        left -= n
    if left > -(-entry["size"] // block_size):
        raise ManifestProblem(name, "has more read blocks than its size holds")


def _pages(name: str, what: str, doc: object, blocks: int, block_size: int) -> int:
    """A delta's or a layer's pages: sorted runs apart, held exactly by its ``blocks``
    blocks (docs/repository-format.md, *Differentials*); the page after the last run."""
    if not isinstance(doc, dict):
        raise ManifestProblem(name, f"has a {what} that is not an object")
    pages, per_block = doc.get("pages"), doc.get("block_pages")
    if not isinstance(pages, list) or not isinstance(per_block, list):
        raise ManifestProblem(name, f"has a {what} without pages or block_pages")
    end, listed = 0, 0
    for run in pages:
        if not (isinstance(run, list) and len(run) == 2 and _int(run[0]) and _int(run[1], 1)
                and run[0] >= end):
            raise ManifestProblem(name, f"has {what} pages that are not sorted runs apart")
        end, listed = run[0] + run[1], listed + run[1]
    if len(per_block) != blocks or \
            not all(_int(n, 1, block_size // PAGE_SIZE) for n in per_block) or \
            sum(per_block) != listed:
        raise ManifestProblem(name, f"has {what} blocks that do not hold its pages")
    return end
