"""Garbage collection: delete packs whose blocks no manifest and no WAL record uses, safely
while backups and WAL archiving write (docs/repository-format.md, *Garbage collection*).

Writers deduplicate against every pack they know, so an unused pack can become used at any
moment. Hence two phases: *mark* writes a tombstone listing the unused packs, then the
writer locks alive at that moment (those writers may not have seen it; later ones leave
tombstoned packs alone); *sweep* deletes a tombstoned pack only once those writers are gone
and the used blocks, computed again, all have a home outside every tombstone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from dbsafe.core.errors import DbsafeError
from dbsafe.storage.base import Storage
from dbsafe.vault import locks
from dbsafe.vault.packs import BlockError, pack_name, read_pack_header

if TYPE_CHECKING:
    from dbsafe.storage.local import LocalStorage
    from dbsafe.vault.repository import Repository

GC = "gc"
POLL_SECONDS = 0.2
# A pack kept for some used blocks is repacked when at least this share of its stored bytes
# is unused: copying its used blocks out then never writes more than it frees.
REPACK_UNUSED = 0.5
ORPHAN_PARTS_AFTER = timedelta(days=7)  # docs/repository-format.md, *Entries in parts*
REPACK_LEVEL = 1  # zstd level of repacked blocks (the backups' default)


# tombstones ------------------------------------------------------------------------------
def _tombstone_ids(storage: Storage) -> list[str]:
    return sorted(n[:-5] for n in storage.names(GC) if n.endswith(".tomb"))


def _tombstone(storage: Storage, tomb_id: str) -> dict[str, Any] | None:
    name = f"{GC}/{tomb_id}.tomb"
    try:
        doc: dict[str, Any] = json.loads(storage.get(name))
    except FileNotFoundError:
        return None  # swept meanwhile
    except ValueError as exc:
        raise DbsafeError("vault.object_corrupt", path=name, reason=exc) from None
    return doc


def held_packs(storage: Storage) -> set[str]:
    """Packs some tombstone lists: writers must not deduplicate against them."""
    held: set[str] = set()
    for tomb_id in _tombstone_ids(storage):
        doc = _tombstone(storage, tomb_id)
        if doc is not None:
            held.update(p["pack"] for p in doc["packs"])
    return held


def _waits(repo: Repository, tomb_id: str) -> list[str]:
    """The locks a tombstone waits for; a tombstone without its wait file (a crash between
    the two writes) gets one now: the locks alive now include every lock alive then."""
    name = f"{GC}/{tomb_id}.wait"
    try:
        waits: list[str] = json.loads(repo.storage.get(name))["locks"]
        return waits
    except FileNotFoundError:
        waits = [lock.name for lock in locks.live_locks(repo.storage, repo.client_id)]
        repo.storage.put(name, json.dumps({"locks": waits}).encode())
        return waits


# what the vault holds and uses -------------------------------------------------------------
@dataclass
class PackInfo:
    pack_id: str
    blobs: list[tuple[str, int]]   # (block id hex, stored length)
    data_bytes: int
    index_bytes: int               # 0: no index file (readers cannot find its blocks)

    @property
    def indexed(self) -> bool:
        return self.index_bytes > 0


@dataclass
class Survey:
    packs: dict[str, PackInfo]
    unreadable: list[str]          # packs neither index file nor header describes: kept


def survey(repo: Repository) -> Survey:
    """Every pack with its blocks, from its index file, else from its own header."""
    storage = repo.storage
    index_sizes = {}
    for name in storage.list("index"):
        with contextlib.suppress(FileNotFoundError):
            index_sizes[name.rsplit("/", 1)[1]] = storage.size(name)
    packs: dict[str, PackInfo] = {}
    unreadable = []
    for name in storage.list("data"):
        pack_id = name.rsplit("/", 1)[1]
        try:
            data_bytes = storage.size(name)
        except FileNotFoundError:
            continue
        blobs = _index_blobs(repo, pack_id) if pack_id in index_sizes else None
        if blobs is None:
            try:
                blobs, _key = read_pack_header(storage, pack_id, repo.keyed.ring)
            except (ValueError, OSError, IndexError, UnicodeDecodeError):
                unreadable.append(pack_id)
                continue
        packs[pack_id] = PackInfo(pack_id, [(b[0], b[2]) for b in blobs], data_bytes,
                                  index_sizes.get(pack_id, 0))
    return Survey(packs, unreadable)


def _index_blobs(repo: Repository, pack_id: str) -> list[Any] | None:
    try:
        blobs: list[Any] = repo.load_index_file(pack_id)["blobs"]  # as a pack header's
        return blobs
    except (FileNotFoundError, DbsafeError):
        return None


def used_blocks(repo: Repository) -> set[str]:
    """Ids of every block a manifest (files, deltas, WAL) or a WAL record lists.

    A manifest or record that cannot be read raises (vault.object_corrupt): its blocks are
    unknown, so nothing may be deleted.
    """
    used: set[str] = set()
    for point_id in repo.point_ids():
        try:
            manifest = repo.load_manifest(point_id)
        except KeyError:
            continue  # deleted meanwhile
        for entry in repo.files_of(manifest):  # one part at a time
            used.update(entry["blocks"])
        for entry in manifest["wal"]:
            used.update(entry["blocks"])
    for name in repo.storage.list("wal"):
        _, system_id, file_name = name.split("/", 2)
        record = repo.load_wal_record(system_id, file_name)
        if record is not None:
            used.update(record.blocks)
    return used


def homes(packs: dict[str, PackInfo], used: set[str], held: set[str]) -> dict[str, set[str]]:
    """For each pack, the used blocks readers will find there: every used block gets one
    home, the first indexed pack (by id) no tombstone lists that holds it."""
    out: dict[str, set[str]] = {}
    homed: set[str] = set()
    for pack_id in sorted(packs):
        info = packs[pack_id]
        if not info.indexed or pack_id in held:
            continue
        mine = {i for i, _ in info.blobs if i in used and i not in homed}
        if mine:
            out[pack_id] = mine
            homed |= mine
    return out


# the two phases ----------------------------------------------------------------------------
@dataclass
class Report:
    packs_deleted: int = 0
    bytes_freed: int = 0
    packs_rescued: int = 0
    packs_marked: int = 0
    bytes_marked: int = 0
    packs_repacked: int = 0
    bytes_repacked: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sweep(repo: Repository, ready: list[str], found: Survey, used: set[str],
           report: Report) -> None:
    """Delete the packs of ``ready`` tombstones that hold no used block without another home.

    ``used`` MUST be computed after the writers the tombstones wait for were seen gone:
    their manifests are written by then.
    """
    storage = repo.storage
    held = held_packs(storage)
    homed = set().union(*homes(found.packs, used, held).values())
    for tomb_id in ready:
        doc = _tombstone(storage, tomb_id)
        for entry in (doc or {"packs": []})["packs"]:
            pack_id = entry["pack"]
            info = found.packs.pop(pack_id, None)
            if info is None:
                if pack_id not in found.unreadable:  # pack gone: finish a crashed sweep
                    storage.delete(f"index/{pack_id}")
                continue
            if any(i in used and i not in homed for i, _ in info.blobs):
                found.packs[pack_id] = info
                report.packs_rescued += 1
                continue
            storage.delete(f"index/{pack_id}")  # index first: readers stop finding it
            storage.delete(pack_name(pack_id))
            report.packs_deleted += 1
            report.bytes_freed += info.data_bytes + info.index_bytes
        # Wait file first: a crash in between leaves a tombstone that gets a new wait file.
        storage.delete(f"{GC}/{tomb_id}.wait")
        storage.delete(f"{GC}/{tomb_id}.tomb")


def _unused_share(info: PackInfo, mine: set[str]) -> float:
    total = sum(length for _, length in info.blobs)
    return sum(length for i, length in info.blobs if i not in mine) / total if total else 0.0


def _mark(repo: Repository, found: Survey, used: set[str],
          repack_unused: float) -> tuple[str | None, dict[str, set[str]]]:
    """Tombstone every pack that is home to no used block, and every pack whose unused share
    is at least ``repack_unused`` (its used blocks are to be copied out first). Returns the
    tombstone's id and the used blocks to copy, per pack.

    ``used`` may be a little old: a pack marked wrongly is rescued by the sweep.
    """
    held = held_packs(repo.storage)
    needed = homes(found.packs, used, held)
    garbage = [p for p in sorted(found.packs) if p not in held and p not in needed]
    moves = {p: mine for p, mine in needed.items()
             if _unused_share(found.packs[p], mine) >= repack_unused}
    if not garbage and not moves:
        return None, {}
    now = datetime.now(UTC)
    tomb_id = f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
    doc = {"created": now.isoformat(timespec="milliseconds"),
           "packs": [{"pack": p, "bytes": found.packs[p].data_bytes
                      + found.packs[p].index_bytes} for p in sorted([*garbage, *moves])],
           "repack": sorted(moves)}
    repo.storage.put(f"{GC}/{tomb_id}.tomb", json.dumps(doc).encode())
    _waits(repo, tomb_id)  # the locks alive now, after the tombstone is visible
    return tomb_id, moves


def _repack(repo: Repository, moves: dict[str, set[str]], report: Report) -> None:
    """Copy the used blocks of tombstoned packs into new packs, as a writer: the tombstone
    keeps the sink from deduplicating against the packs being emptied. A block that cannot
    be read intact is not copied, so its pack keeps being needed and is rescued."""

    with repo.writing("gc"):
        sink = repo.block_sink(REPACK_LEVEL)
        try:
            for pack_id in sorted(moves):
                for id_hex in sorted(moves[pack_id]):
                    try:
                        sink.store(repo.read_block(bytes.fromhex(id_hex)))
                    except BlockError:
                        continue
            sink.close()
        except BaseException:
            sink.abort()
            raise
    report.packs_repacked += len(moves)
    report.bytes_repacked += sink.stats.bytes_stored


def _blocking(repo: Repository, tomb_id: str) -> list[str]:
    return [name for name in _waits(repo, tomb_id)
            if locks.lock_alive(repo.storage, name, repo.client_id)]


def _remove_orphan_parts(repo: Repository, now: datetime | None = None) -> int:
    """Remove the parts of entries whose point has no manifest (a backup that never
    committed, a deletion that died before its parts went) once the point id's time is
    ``ORPHAN_PARTS_AFTER`` old: a backup still writing its parts is younger."""
    points = set(repo.point_ids())
    cutoff = (now or datetime.now(UTC)) - ORPHAN_PARTS_AFTER
    removed = 0
    for name in list(repo.storage.list("entries")):
        point_id = name.split("/")[1] if name.count("/") == 2 else ""
        try:
            started = datetime.strptime(point_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            continue  # not a name dbsafe writes: left alone
        if point_id not in points and started < cutoff:
            repo.storage.delete(name)
            removed += 1
    return removed


def collect_garbage(repo: Repository, wait_seconds: float = 0.0, mark: bool = True,
                    repack_unused: float = REPACK_UNUSED,
                    exclusive: AbstractContextManager[object] | None = None) -> dict[str, Any]:
    """Sweep the tombstones whose writers are gone, then mark unused packs and repack those
    at least ``repack_unused`` unused (1.0: never), and sweep them at once when no writer
    runs, or after waiting up to ``wait_seconds`` for those that do.

    Never deletes a block a manifest or WAL record uses; idempotent; a crash at any step
    leaves a readable vault. Returns counts and bytes (``bytes_freed`` counts deleted packs
    and index files; ``bytes_repacked`` what repacking wrote).

    ``exclusive`` keeps two runs apart (one at a time per vault): the catalog's lock, which
    spans hosts when the catalog is shared; without it, a lock file in a local vault.
    """
    storage = repo.storage
    repo.check_index()  # an index moved aside would make every pack look unindexed
    with exclusive if exclusive is not None else _local_guard(repo):
        cleaned = {"tmp_removed": storage.cleanup(),
                   "stale_locks_removed": locks.remove_stale(storage, repo.client_id),
                   "orphan_parts_removed": _remove_orphan_parts(repo)}
        report = Report()
        ready = [t for t in _tombstone_ids(storage) if not _blocking(repo, t)]
        found = survey(repo)
        used = used_blocks(repo)  # after the writers of ``ready`` were seen gone
        _sweep(repo, ready, found, used, report)
        if mark:
            tomb_id, moves = _mark(repo, found, used, repack_unused)
            if tomb_id is not None:
                tombstone = _tombstone(storage, tomb_id)
                if tombstone is None:  # written just now, and only a collection sweeps it
                    raise FileNotFoundError(f"{GC}/{tomb_id}.tomb")
                marked = tombstone["packs"]
                report.packs_marked = len(marked)
                report.bytes_marked = sum(p["bytes"] for p in marked)
                if moves:
                    _repack(repo, moves, report)
                    found = survey(repo)  # the new packs are the copied blocks' homes
                deadline = time.monotonic() + wait_seconds
                while _blocking(repo, tomb_id) and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
                if not _blocking(repo, tomb_id):
                    used = used_blocks(repo)
                    _sweep(repo, [tomb_id], found, used, report)
        waiting = sorted({name for t in _tombstone_ids(storage)
                          for name in _blocking(repo, t)})
        return {**report.as_dict(), "packs_total": len(found.packs),
                "tombstones_pending": len(_tombstone_ids(storage)),
                "waiting_for": [lock.describe() for lock in locks.all_locks(repo.storage)
                                if lock.name in waiting],
                "unreadable_packs": found.unreadable, **_partially_used(repo, found, used),
                **cleaned}


@contextlib.contextmanager
def _local_guard(repo: Repository) -> Iterator[None]:
    open_guard = getattr(repo.storage, "open_guard", None)
    if open_guard is None:
        raise ValueError("garbage collection of a remote vault needs the catalog's lock")
    root = cast("LocalStorage", repo.storage).root  # open_guard: a local folder
    with open(open_guard(f"{GC}/lock"), "a") as guard:
        try:
            fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DbsafeError("gc.running", path=root) from None
        yield


def _partially_used(repo: Repository, found: Survey, used: set[str]) -> dict[str, Any]:
    """Packs kept for some used blocks, and the bytes of their other blobs (below the
    repacking threshold, or waiting in a tombstone)."""
    needed = homes(found.packs, used, held_packs(repo.storage))
    count, reclaimable = 0, 0
    for pack_id, mine in needed.items():
        extra = sum(length for i, length in found.packs[pack_id].blobs if i not in mine)
        if extra:
            count += 1
            reclaimable += extra
    return {"partially_used_packs": count, "reclaimable_bytes": reclaimable}
