"""The backup hot path: read files block by block in parallel threads and store each block.

Work is cut into tasks of up to ``TASK_BLOCKS`` blocks of one file, so two threads share a
1 GiB segment instead of one thread finishing it alone. Each thread holds one block at a
time: memory stays at about (threads x block size) whatever the data size. Reading
(``os.pread``), hashing (blake3), page checks (C) and compression (zstd) all release the
GIL, which is why plain threads scale here.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from dbsafe.core.concurrency import Work, run_in_order, run_parallel
from dbsafe.core.errors import DbsafeError
from dbsafe.core.regular_files import NotRegularFile
from dbsafe.engines.base import BlockRead, SourceFile
from dbsafe.vault.blocks import BlockSink
from dbsafe.vault.records import FileEntry

TASK_BLOCKS = 32
MAX_CORRUPT_LISTED = 1000  # corrupt pages a manifest lists (all are counted)

ReadBlock = Callable[[int, SourceFile, int, int], BlockRead]


@dataclass
class CopiedFile:
    source: SourceFile
    size: int
    block_ids: list[bytes]
    corrupt_pages: list[int] = field(default_factory=list)
    vanished: bool = False
    deferred: bool = False  # copy_in_order: left for the caller to copy later
    stored: int = 0  # the bytes its blocks added to the vault (blocks new in this backup)


@dataclass
class _Task:
    first_block: int
    blocks: int


SizedCall = tuple[int, Callable, tuple]


def by_size(calls: list[SizedCall]) -> list[tuple[Callable, tuple]]:
    """Tasks of large files first: the tail of the run is then made of small tasks."""
    return [(fn, args) for _size, fn, args in sorted(calls, key=lambda c: -c[0])]


class Copier:
    def __init__(self, sink: BlockSink, read_block: ReadBlock, block_size: int,
                 workers: int, on_bytes: Callable[[int], None]) -> None:
        self.sink = sink
        self.read_block = read_block
        self.block_size = block_size
        self.workers = max(1, workers)
        self.on_bytes = on_bytes
        self._lock = threading.Lock()

    def copy(self, files: list[SourceFile]) -> list[CopiedFile]:
        """Copy a few files (the WAL of a backup, pg_control), large ones' tasks first."""
        results, calls = [], []
        for f in files:
            result, mine = self.tasks(f)
            results.append(result)
            calls += [(f.size, fn, args) for fn, args in mine]
        run_parallel(self.workers, "dbsafe-copy", by_size(calls))
        return [self.finish_one(r) for r in results]

    def copy_in_order(self, files: Iterable[SourceFile], emit: Callable[[CopiedFile], None],
                      later: Callable[[SourceFile], bool]) -> None:
        """Copy ``files`` as they come and give each result to ``emit`` in their order
        (``run_in_order``): nothing is kept of a file once it is emitted. A file ``later``
        picks is not copied: a ``deferred`` result is emitted in its place."""
        def work() -> Iterator[Work]:
            for f in files:
                if later(f):
                    yield [], functools.partial(emit, CopiedFile(f, f.size, [], deferred=True))
                    continue
                result, calls = self.tasks(f)
                yield calls, functools.partial(lambda r: emit(self.finish_one(r)), result)
        run_in_order(self.workers, "dbsafe-copy", work())

    def tasks(self, f: SourceFile) -> tuple[CopiedFile, list[tuple[Callable, tuple]]]:
        """A file's result and the calls that fill it, ``TASK_BLOCKS`` blocks each;
        ``finish`` it once they have run."""
        n = _blocks(f.size, self.block_size)
        # None: a block not read yet; _finish trims a file at its first one (a hole)
        result = CopiedFile(f, f.size, [None] * n)  # type: ignore[list-item]
        return result, [(self._run, (_Task(first, min(TASK_BLOCKS, n - first)), f, result))
                        for first in range(0, n, TASK_BLOCKS)]

    def _run(self, task: _Task, source: SourceFile, result: CopiedFile) -> None:
        fd = open_source(source)
        if fd is None:
            result.vanished = True  # dropped while we copied: WAL replay removes it anyway
            return
        stored = 0
        try:
            for b in range(task.first_block, task.first_block + task.blocks):
                offset = b * self.block_size
                length = min(self.block_size, source.size - offset)
                read = self.read_block(fd, source, offset, length)
                if read.data:
                    block_id, added = self.sink.store(read.data)
                    stored += added
                    result.block_ids[b] = block_id
                if len(read.data) < length:  # truncated while we read: keep what was there
                    with self._lock:
                        result.size = min(result.size, offset + len(read.data))
                if read.corrupt_pages:
                    with self._lock:
                        result.corrupt_pages.extend(read.corrupt_pages)
                self.on_bytes(len(read.data))
                if len(read.data) < length:
                    break
        finally:
            os.close(fd)
            if stored:
                with self._lock:
                    result.stored += stored

    def finish_one(self, r: CopiedFile) -> CopiedFile:
        """A file's result once its calls have run: cut at its first block not read."""
        n = _blocks(r.size, self.block_size)
        r.block_ids = r.block_ids[:n]
        if any(b is None for b in r.block_ids):
            # A hole before the end (a middle block read short): keep the readable prefix.
            first_hole = r.block_ids.index(None)  # type: ignore[arg-type]  # see prepare
            r.block_ids = r.block_ids[:first_hole]
            r.size = min(r.size, first_hole * self.block_size)
        r.corrupt_pages.sort()
        return r


def open_source(source: SourceFile) -> int | None:
    """A descriptor of a file to copy (``SourceFile.open``: the regular file the walk saw),
    None when it is gone; ``backup.file_unsafe`` for anything else found in its place."""
    try:
        return source.open()
    except FileNotFoundError:
        return None
    except NotRegularFile as exc:
        raise DbsafeError("backup.file_unsafe", path=source.abspath, reason=exc.reason) \
            from None


def file_entry(repo, copied: CopiedFile) -> FileEntry:
    """The manifest entry of a file copied whole (docs/repository-format.md, *Manifests*)."""
    return FileEntry.new(path=copied.source.path, size=copied.size, mode=copied.source.mode,
                         mtime=copied.source.mtime,
                         blocks=[b.hex() for b in copied.block_ids],
                         checksum=repo.file_checksum(copied.block_ids))


def _blocks(size: int, block_size: int) -> int:
    return (size + block_size - 1) // block_size
