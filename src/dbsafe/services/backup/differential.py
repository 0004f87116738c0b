"""Differential backups: the base full, which files to read, and the page deltas stored.

A differential is cumulative since the latest full that is not copy-only and leaves out none
of the databases the differential holds (SQL Server's semantics, per database), so a restore
needs that full and the differential, never a chain. Which pages changed is the engine's
call (their LSNs, engines/postgres/delta.py); here we decide which files to read at all and
turn the pages kept into manifest entries (docs/repository-format.md, *Differentials*). The
copy keeps the hot path's shape: tasks of up to ``TASK_BLOCKS`` blocks of one file on
parallel threads, each thread holding the block it read and under two blocks of changed
pages (a block's worth is stored as soon as it is there).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.concurrency import Work, run_in_order, run_parallel
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.base import BlockRead, SourceFile
from dbsafe.engines.postgres.backup import parse_lsn
from dbsafe.engines.postgres.delta import tracks_changes
from dbsafe.engines.postgres.layout_rules import CONTROL_FILE
from dbsafe.engines.postgres.pages import PAGE_SIZE
from dbsafe.engines.postgres.wal import TimelineSwitch, format_lsn, parse_history
from dbsafe.services.backup.copy import (
    MAX_CORRUPT_LISTED,
    TASK_BLOCKS,
    CopiedFile,
    Copier,
    ReadBlock,
    file_entry,
    open_source,
)
from dbsafe.services.backup.usage import Usage
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.lifecycle import coverage
from dbsafe.services.lifecycle.points import list_points
from dbsafe.services.logchain.archive import read_wal_file
from dbsafe.vault.blocks import BlockSink
from dbsafe.vault.entries import EntrySpool, path_key
from dbsafe.vault.records import FileEntry

if TYPE_CHECKING:
    from dbsafe.engines.postgres.changemap import ChangeMap

# A file is not read when its size and mtime are the base's and that mtime lies this many
# seconds before the base started: no write reached it since (the margin covers clock
# adjustments; a write's mtime is taken from the same clock as the base's start time).
MTIME_MARGIN = 60.0
QUIET_RUN = 1000  # files not read, handed to the ordered loop as one piece

ReadChanged = Callable[[int, SourceFile, int, int, int, int], BlockRead]


def find_base(vault: Vault, server: dict, databases: list[str]) -> dict:
    """The manifest of the latest full (not copy-only) point of ``server`` that leaves out
    none of ``databases`` (those the differential will hold: a full taken with ``--db``
    holds only the databases it names, and is no base for the others; a database created
    after the full is copied whole). None such: ``backup.no_full``, naming the databases
    the latest full left out."""
    fulls = [p for p in list_points(vault, server["name"])
             if p["type"] == "full" and not p["copy_only"]]
    base = coverage.newest(fulls, databases)
    if base is None:
        latest = coverage.newest(fulls, ())
        lacking = databases if latest is None else coverage.missing(latest, databases)
        raise DbsafeError("backup.no_full", name=server["name"],
                          databases=coverage.named(lacking))
    try:
        return vault.repo.load_manifest(base["point_id"])
    except KeyError:
        raise DbsafeError("backup.base_unusable", base=base["point_id"], name=server["name"],
                          reason="its manifest is missing from the vault") from None


def check_base(base: dict, name: str, major: int, start_lsn: str | None = None,
               timeline: int | None = None, history: list[TimelineSwitch] | None = None,
               data_checksums: bool | None = None) -> None:
    """Refuse a base the page LSNs cannot be compared with (see the format doc). On another
    timeline than the base's, the server's ``history`` (its timeline's history file) must
    show the base's timeline as an ancestor it left at or after the base's stop: the
    server's data then went through the base's state (a promoted standby, a failover)."""
    reason = None
    if base["instance"]["pg_version"] != major:
        reason = f"it is of PostgreSQL {base['instance']['pg_version']}, the server runs {major}"
    elif start_lsn is not None and parse_lsn(start_lsn) < parse_lsn(base["stop_lsn"]):
        reason = (f"the server's WAL position {start_lsn} is before the full's end "
                  f"{base['stop_lsn']} (was an older copy of the data directory put back?)")
    elif data_checksums is not None and base["instance"].get("data_checksums") \
            not in (None, data_checksums):
        reason = (f"data checksums were turned {'on' if data_checksums else 'off'} since it "
                  "was taken (pg_checksums rewrites every page without WAL and without "
                  "moving its LSN: no differential can see which pages changed)")
    elif timeline is not None and timeline != base["timeline"] \
            and not descends(base, history or []):
        reason = f"the server moved from timeline {base['timeline']} to {timeline}"
        left = [s for s in history or [] if s.parent == base["timeline"]]
        if left:
            reason += (f", leaving it at {format_lsn(left[0].switch_lsn)}, before the "
                       f"full's end {base['stop_lsn']}")
    if reason:
        raise DbsafeError("backup.base_unusable", base=base["point_id"], name=name,
                          reason=reason)


def server_history(server: dict, timeline: int) -> list[TimelineSwitch]:
    """The ancestors of the server's ``timeline`` from its history file in pg_wal (none for
    timeline 1, or when the file is not there: a base on another timeline is refused)."""
    if timeline <= 1:
        return []
    name = f"{timeline:08X}.history"
    try:
        data, _ = read_wal_file(server, Path(server["pgdata"]) / "pg_wal" / name, name)
    except (FileNotFoundError, DbsafeError):
        return []
    return parse_history(data.decode("utf-8", "replace"))


def descends(base: dict, history: list[TimelineSwitch]) -> bool:
    """Whether a server whose timeline has ``history`` went through ``base``'s end: it left
    the base's timeline at or after the base's stop LSN."""
    return any(s.parent == base["timeline"] and s.switch_lsn >= parse_lsn(base["stop_lsn"])
               for s in history)


WHOLE, SCAN, TRACKED, NOT_READ = "whole", "scan", "tracked", "not read"


def classify(f: SourceFile, entry: dict | None, cutoff: float,
             changes: ChangeMap | None = None) -> tuple[str, list[tuple[int, int]]]:
    """What a differential does with a file of the data directory whose base entry is
    ``entry`` (None: new): copy it whole, scan its page LSNs, read the pages a change map
    names (with their runs), or not read it. With a change map, a main-fork file of the
    base is read only where the map says, whatever its mtime (a write the WAL does not
    name, such as a hint bit, needs no copy: docs/change-map.md); without one, by the mtime
    rule (``cutoff``: the base's start less ``MTIME_MARGIN``) and a page-LSN scan."""
    if entry is None:
        return WHOLE, []
    if changes is not None and tracks_changes(f):
        runs = changes.pages(f.path, f.first_page, f.size // PAGE_SIZE,
                             entry["size"] // PAGE_SIZE)
        if runs is None:
            return WHOLE, []
        if not runs and f.size == entry["size"]:
            return NOT_READ, []
        return TRACKED, runs
    if f.size == entry["size"] and f.mtime == entry["mtime"] and f.mtime < cutoff:
        return NOT_READ, []
    return (SCAN, []) if tracks_changes(f) else (WHOLE, [])


def joined(files: Iterable[SourceFile], base_entries: Iterable[dict], dropped: list[str]
           ) -> Iterator[tuple[SourceFile, dict | None]]:
    """Each file with the base's entry of its path (None: new), both in path order
    (vault/entries.py), read in step; the paths of the base's files gone are added to
    ``dropped``."""
    base = iter(base_entries)
    at = next(base, None)
    at_key = path_key(at["path"]) if at is not None else None
    for f in files:
        key = path_key(f.path)
        while at is not None and at_key < key:  # type: ignore[operator]
            dropped.append(at["path"])
            at = next(base, None)
            at_key = path_key(at["path"]) if at is not None else None
        if at is not None and at["path"] == f.path:
            yield f, at
            at = next(base, None)
            at_key = path_key(at["path"]) if at is not None else None
        else:
            yield f, None
    while at is not None:
        dropped.append(at["path"])
        at = next(base, None)


def base_entries(repo, base: dict) -> Iterator[FileEntry]:
    """The base's file entries in path order: from its parts as they are, or (a manifest
    of before, inline) sorted."""
    if "files" in base:
        return iter(sorted((FileEntry(e) for e in base["files"]),
                           key=lambda e: path_key(e["path"])))
    return repo.files_of(base)


@dataclass
class _Part:
    """The pages one task kept: runs of file page numbers, and (block id, pages) stored."""

    runs: list[list[int]] = field(default_factory=list)
    blocks: list[tuple[bytes, int]] = field(default_factory=list)
    stored: int = 0  # the bytes its blocks added to the vault


@dataclass
class DeltaFile:
    source: SourceFile
    base: dict
    size: int
    parts: list[_Part]
    corrupt_pages: list[int] = field(default_factory=list)
    vanished: bool = False
    bytes_read: int = 0


class DeltaCopier:
    """Reads main-fork segments and stores the pages the engine selects."""

    def __init__(self, sink: BlockSink, read_changed: ReadChanged, block_size: int,
                 since_lsn: int, on_bytes: Callable[[int], None]) -> None:
        self.sink = sink
        self.read_changed = read_changed
        self.block_size = block_size
        self.since_lsn = since_lsn
        self.on_bytes = on_bytes
        self._lock = threading.Lock()

    def scan_tasks(self, source: SourceFile, base: dict
                   ) -> tuple[DeltaFile, list[tuple[Callable, tuple]]]:
        """A file's result and the calls that scan its page LSNs, ``TASK_BLOCKS`` blocks
        each."""
        n = -(-source.size // self.block_size)
        starts = range(0, n, TASK_BLOCKS)
        result = DeltaFile(source, base, source.size, [_Part() for _ in starts])
        return result, [(self._run, (result, i, first, min(TASK_BLOCKS, n - first)))
                        for i, first in enumerate(starts)]

    def tracked_tasks(self, source: SourceFile, base: dict, runs: list[tuple[int, int]],
                      read_block: ReadBlock) -> tuple[DeltaFile, list[tuple[Callable, tuple]]]:
        """A file's result and the calls that read only the given runs of pages,
        ``TASK_BLOCKS`` blocks' worth at most each, every page kept (the map named it)."""
        per_task = TASK_BLOCKS * (self.block_size // PAGE_SIZE)
        tasks: list[list[tuple[int, int]]] = [[]]
        pages = 0
        for first, count in runs:
            while count:
                if pages == per_task:
                    tasks.append([])
                    pages = 0
                take = min(count, per_task - pages)
                tasks[-1].append((first, take))
                pages += take
                first += take
                count -= take
        if not tasks[-1]:
            tasks.pop()
        result = DeltaFile(source, base, source.size, [_Part() for _ in tasks])
        return result, [(self._run_pages, (result, i, task, read_block))
                        for i, task in enumerate(tasks)]

    def _run_pages(self, result: DeltaFile, part_no: int, runs: list[tuple[int, int]],
                   read_block: ReadBlock) -> None:
        source, part = result.source, result.parts[part_no]
        fd = open_source(source)
        if fd is None:
            result.vanished = True
            return
        stream = bytearray()
        read_bytes = 0
        per_read = self.block_size // PAGE_SIZE
        try:
            for first, count in runs:
                for page in range(first, first + count, per_read):
                    n = min(per_read, first + count - page)
                    read = read_block(fd, source, page * PAGE_SIZE, n * PAGE_SIZE)
                    whole = len(read.data) // PAGE_SIZE
                    read_bytes += len(read.data)
                    self.on_bytes(len(read.data))
                    if whole:
                        self._keep(part, stream, page, read.data[:whole * PAGE_SIZE])
                    if read.corrupt_pages:
                        with self._lock:
                            result.corrupt_pages.extend(read.corrupt_pages)
                    if whole < n:  # cut while we read: WAL replay cuts it again
                        with self._lock:
                            result.size = min(result.size, (page + whole) * PAGE_SIZE)
                        return
        finally:
            if stream:
                self._store(part, bytes(stream))
            os.close(fd)
            with self._lock:
                result.bytes_read += read_bytes

    def _run(self, result: DeltaFile, part_no: int, first_block: int, blocks: int) -> None:
        source, bs = result.source, self.block_size
        part = result.parts[part_no]
        fd = open_source(source)
        if fd is None:
            result.vanished = True  # dropped while we copied: WAL replay removes it anyway
            return
        stream = bytearray()  # changed pages not yet stored: less than a block
        read_bytes = 0
        try:
            for b in range(first_block, first_block + blocks):
                offset = b * bs
                length = min(bs, source.size - offset)
                read = self.read_changed(fd, source, offset, length, self.since_lsn,
                                         result.base["size"])
                read_bytes += len(read.data)
                for first, count in read.pages or ():
                    self._keep(part, stream, offset // PAGE_SIZE + first,
                               read.data[first * PAGE_SIZE:(first + count) * PAGE_SIZE])
                self.on_bytes(len(read.data))
                if len(read.data) < length:
                    # Truncated while we read: WAL replay truncates it again, so the file
                    # stays as long as what we kept (see DeltaCopier.entry).
                    with self._lock:
                        result.size = min(result.size,
                                          offset + len(read.data) // PAGE_SIZE * PAGE_SIZE)
                if read.corrupt_pages:
                    with self._lock:
                        result.corrupt_pages.extend(read.corrupt_pages)
                if len(read.data) < length:
                    break
            if stream:
                self._store(part, bytes(stream))
        finally:
            os.close(fd)
            with self._lock:
                result.bytes_read += read_bytes

    def _keep(self, part: _Part, stream: bytearray, page: int, pages: bytes) -> None:
        """Keep whole pages read from file page ``page`` on: their run in ``part``, their
        bytes in ``stream``, each full block of which is stored at once."""
        count = len(pages) // PAGE_SIZE
        if part.runs and part.runs[-1][0] + part.runs[-1][1] == page:
            part.runs[-1][1] += count
        else:
            part.runs.append([page, count])
        stream += pages
        bs = self.block_size
        while len(stream) >= bs:
            self._store(part, bytes(stream[:bs]))
            del stream[:bs]

    def _store(self, part: _Part, data: bytes) -> None:
        block_id, added = self.sink.store(data)
        part.stored += added
        part.blocks.append((block_id, len(data) // PAGE_SIZE))


def _join(parts: list[_Part]) -> tuple[list[list[int]], list[tuple[bytes, int]]]:
    """The runs and blocks of a file from its tasks' parts, adjacent runs merged."""
    runs: list[list[int]] = []
    blocks: list[tuple[bytes, int]] = []
    for part in parts:
        for first, count in part.runs:
            if runs and runs[-1][0] + runs[-1][1] == first:
                runs[-1][1] += count
            else:
                runs.append([first, count])
        blocks += part.blocks
    return runs, blocks


def delta_entry(repo, source: SourceFile, size: int, runs: list[list[int]],
                blocks: list[tuple[bytes, int]]) -> FileEntry:
    ids = [b for b, _ in blocks]
    return FileEntry.new(path=source.path, size=size, mode=source.mode, mtime=source.mtime,
                         blocks=[b.hex() for b in ids], checksum=repo.file_checksum(ids),
                         delta={"pages": runs, "block_pages": [n for _, n in blocks]})


@dataclass
class DiffCopy:
    """What a differential's copy produced, for its manifest and result (its entries went
    to the spool as they were made)."""

    corrupt: list[dict] = field(default_factory=list)  # up to MAX_CORRUPT_LISTED
    corrupt_count: int = 0
    bytes_read: int = 0
    stats: dict = field(default_factory=lambda: dict.fromkeys(
        ("pages_changed", "files_whole", "files_delta", "files_unchanged", "files_not_read",
         "files_dropped"), 0))
    dropped: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)  # per database, for stats.usage

    def kept(self, path: str, pages: list[int]) -> None:
        self.corrupt_count += len(pages)
        self.corrupt += [{"path": path, "block": n}
                         for n in pages[:max(0, MAX_CORRUPT_LISTED - len(self.corrupt))]]


Entry = Callable[[FileEntry, "dict | None"], FileEntry]


def copy_files(repo, copier: Copier, read_changed: ReadChanged, files: Iterable[SourceFile],
               base: dict, expect: Callable[[int], None], spool: EntrySpool,
               changes: ChangeMap | None = None, entry_of: Entry = lambda e, _base: e
               ) -> DiffCopy:
    """Copy new and non-relation files whole and the changed pages of the rest (those the
    change map names, else those a page-LSN scan finds), in one pool of
    ``copier.workers`` threads, as the files come (in path order, in step with the base's
    entries); each file's entry (``entry_of`` it and its base entry: a synthetic full
    layers it) goes to ``spool`` in that order as soon as the file is read. pg_control is
    read last and listed in its place, as in a full. ``expect`` is told the bytes to read
    as each file is planned."""
    out = DiffCopy()
    cutoff = datetime.fromisoformat(base["start_time"]).timestamp() - MTIME_MARGIN
    deltas = DeltaCopier(copier.sink, read_changed, copier.block_size,
                         parse_lsn(base["start_lsn"]), copier.on_bytes)
    control: list[tuple[SourceFile, dict | None, int]] = []

    def whole_done(result: CopiedFile, under: dict | None, slot: int | None = None) -> None:
        copied = copier.finish_one(result)
        if copied.vanished:
            return
        out.bytes_read += copied.size
        out.stats["files_whole"] += 1
        out.kept(copied.source.path, copied.corrupt_pages)
        out.usage.add(copied.source.path, copied.size, copied.stored)
        entry = entry_of(file_entry(repo, copied), under)
        if slot is None:
            spool.add(entry)
        else:
            spool.fill(slot, entry)

    def delta_done(result: DeltaFile) -> None:
        if result.vanished:
            return
        runs, blocks = _join(result.parts)
        # A file truncated while we read keeps its length up to the last page kept.
        size = max(result.size, (runs[-1][0] + runs[-1][1]) * PAGE_SIZE if runs else 0)
        kept = sum(n for _, n in runs)
        out.bytes_read += result.bytes_read
        out.stats["pages_changed"] += kept
        out.stats["files_delta" if kept else "files_unchanged"] += 1
        out.kept(result.source.path, sorted(result.corrupt_pages))
        out.usage.add(result.source.path, size, sum(p.stored for p in result.parts))
        spool.add(entry_of(delta_entry(repo, result.source, size, runs, blocks), result.base))

    unchanged_checksum = repo.file_checksum([])  # a delta of no page names no block

    def not_read(quiet: list[tuple[SourceFile, dict]]) -> None:
        out.stats["files_unchanged"] += len(quiet)
        out.stats["files_not_read"] += len(quiet)
        for source, under in quiet:
            out.usage.add(source.path, under["size"])
            spool.add(entry_of(FileEntry(  # delta_entry's, built at once: most files
                path=source.path, size=under["size"], mode=source.mode, mtime=source.mtime,
                blocks=[], checksum=unchanged_checksum,
                delta={"pages": [], "block_pages": []}), under))

    def work() -> Iterator[Work]:
        # files not read, in runs of up to QUIET_RUN: one piece of work each run (most
        # files of a differential are these; a piece each cost ~1.5 µs a file)
        quiet: list[tuple[SourceFile, dict]] = []
        for f, under in joined(files, base_entries(repo, base), out.dropped):
            kind, runs = classify(f, under, cutoff, changes)
            if kind == NOT_READ:
                assert under is not None  # a new file is whole
                quiet.append((f, under))
                if len(quiet) == QUIET_RUN:
                    yield [], functools.partial(not_read, quiet)
                    quiet = []
                continue
            if quiet:
                yield [], functools.partial(not_read, quiet)
                quiet = []
            if kind == WHOLE and f.path == CONTROL_FILE:  # read last, listed here
                yield [], functools.partial(
                    lambda f, u: control.append((f, u, spool.reserve(f.path))), f, under)
            elif kind == WHOLE:
                expect(f.size)
                result, calls = copier.tasks(f)
                yield calls, functools.partial(whole_done, result, under)
            else:
                assert under is not None
                if kind == SCAN:
                    expect(f.size)
                    delta, calls = deltas.scan_tasks(f, under)
                else:
                    expect(sum(c for _, c in runs) * PAGE_SIZE)
                    delta, calls = deltas.tracked_tasks(f, under, runs, copier.read_block)
                yield calls, functools.partial(delta_done, delta)
        if quiet:
            yield [], functools.partial(not_read, quiet)

    run_in_order(copier.workers, "dbsafe-copy", work())
    for source, under, slot in control:
        expect(source.size)
        result, calls = copier.tasks(source)
        run_parallel(copier.workers, "dbsafe-copy", calls)
        whole_done(result, under, slot)
    out.stats["files_dropped"] = len(out.dropped)
    return out
