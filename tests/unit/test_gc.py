"""Garbage collection and writer locks on a real vault folder (no cluster needed): what is
deleted, what is kept, the mark/sweep race with writers, and crashes between steps."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess

import pytest

from dbsafe.core.concurrency import pid_scope
from dbsafe.core.errors import DbsafeError
from dbsafe.vault import locks
from dbsafe.vault.gc import collect_garbage
from dbsafe.vault.repository import BlockError, Repository


@pytest.fixture
def root(tmp_path):
    Repository.init(tmp_path / "vault")
    return tmp_path / "vault"


def _blocks(n: int, size: int = 40_000) -> list[bytes]:
    return [os.urandom(size) for _ in range(n)]


def _store(repo: Repository, blocks: list[bytes], point_id: str | None = None) -> dict:
    """One writer: store ``blocks`` (one pack) and, with ``point_id``, a manifest using them."""
    with repo.writing("test"):
        sink = repo.block_sink(level=0)
        ids = [sink.store(b)[0].hex() for b in blocks]
        sink.close()
        if point_id:
            _manifest(repo, point_id, ids)
    return {"ids": ids, "new": sink.stats.blocks_new, "reused": sink.stats.blocks_reused}


def _manifest(repo: Repository, point_id: str, ids: list[str]) -> None:
    repo.save_manifest({"point_id": point_id, "files": [{"path": "f", "blocks": ids}],
                        "wal": []})


def _packs(root) -> set[str]:
    return {p.name for p in (root / "data").rglob("*") if p.is_file()}


def _index_files(root) -> set[str]:
    return {p.name for p in (root / "index").iterdir()}


def test_writer_lock_is_held_while_writing_and_required(root):
    repo = Repository.open(root)
    with pytest.raises(RuntimeError):
        repo.block_sink(level=1)
    with repo.writing("backup"):
        (lock,) = locks.live_locks(repo.storage, repo.client_id)
        assert lock.pid == os.getpid() and lock.doc["kind"] == "backup"
    assert locks.live_locks(repo.storage, repo.client_id) == []
    assert list((root / "locks").iterdir()) == []


def test_unused_packs_are_deleted_used_ones_kept(root):
    repo = Repository.open(root)
    kept = _store(repo, _blocks(3), "20240101T000000Z-00000001")
    gone = _store(repo, _blocks(3))  # no manifest: a backup that died
    in_wal = _store(repo, _blocks(2))
    repo.save_wal_record("123", {"name": "000000010000000000000001",
                                 "blocks": in_wal["ids"]})
    packs = _packs(root)
    assert len(packs) == 3
    size = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file()) + \
        sum(p.stat().st_size for p in (root / "index").iterdir())

    out = collect_garbage(Repository.open(root))
    assert out["packs_marked"] == out["packs_deleted"] == 1
    assert out["packs_total"] == 2 and out["tombstones_pending"] == 0
    after = sum(p.stat().st_size for p in (root / "data").rglob("*") if p.is_file()) + \
        sum(p.stat().st_size for p in (root / "index").iterdir())
    assert out["bytes_freed"] == size - after > 120_000
    fresh = Repository.open(root)
    for id_hex in kept["ids"] + in_wal["ids"]:
        fresh.read_block(bytes.fromhex(id_hex))
    assert _index_files(root) == _packs(root)
    # Idempotent: nothing more to do.
    again = collect_garbage(Repository.open(root))
    assert again["packs_deleted"] == again["packs_marked"] == 0
    with pytest.raises(BlockError):
        fresh.read_block(bytes.fromhex(gone["ids"][0]))


def test_partly_used_pack_below_the_threshold_is_kept_and_reported(root):
    repo = Repository.open(root)
    stored = _store(repo, _blocks(2, 30_000))
    _manifest(repo, "20240101T000000Z-00000001", stored["ids"][:1])
    out = collect_garbage(Repository.open(root), repack_unused=0.6)
    assert out["packs_deleted"] == out["packs_repacked"] == 0 and out["packs_total"] == 1
    assert out["partially_used_packs"] == 1 and out["reclaimable_bytes"] == 30_000


def test_mostly_unused_pack_is_repacked(root):
    repo = Repository.open(root)
    blocks = _blocks(4, 30_000)
    stored = _store(repo, blocks)
    _manifest(repo, "20240101T000000Z-00000001", stored["ids"][:1])
    (old,) = _packs(root)
    out = collect_garbage(Repository.open(root))
    assert out["packs_repacked"] == out["packs_deleted"] == 1
    assert out["bytes_freed"] > 4 * 30_000 and 30_000 < out["bytes_repacked"] < 2 * 30_000
    assert out["reclaimable_bytes"] == 0
    (new,) = _packs(root)
    assert new != old and _index_files(root) == {new}
    assert Repository.open(root).read_block(bytes.fromhex(stored["ids"][0])) == blocks[0]
    assert collect_garbage(Repository.open(root))["packs_marked"] == 0


def test_repack_keeps_a_pack_a_running_writer_reused_an_unused_block_of(root):
    repo = Repository.open(root)
    blocks = _blocks(4, 30_000)
    stored = _store(repo, blocks)
    _manifest(repo, "20240101T000000Z-00000001", stored["ids"][:1])
    (old,) = _packs(root)
    writer = Repository.open(root)
    with writer.writing("backup"):
        out = collect_garbage(Repository.open(root))
        assert out["packs_repacked"] == 1 and out["packs_deleted"] == 0
        sink = writer.block_sink(level=0)
        reused = sink.store(blocks[3])[0].hex()  # unused at the mark: not copied
        sink.close()
        assert sink.stats.blocks_reused == 1
        _manifest(writer, "20240102T000000Z-00000002", [reused])
    out = collect_garbage(Repository.open(root), repack_unused=1.0)
    assert out["packs_rescued"] == 1 and old in _packs(root)
    fresh = Repository.open(root)
    assert fresh.read_block(bytes.fromhex(reused)) == blocks[3]
    assert fresh.read_block(bytes.fromhex(stored["ids"][0])) == blocks[0]


def test_sweep_waits_for_a_writer_that_started_before_the_mark(root):
    """The race: a writer whose index predates the tombstone deduplicates against the
    tombstoned pack; the sweep waits for it, then finds its manifest and keeps the pack."""
    repo = Repository.open(root)
    blocks = _blocks(4)
    first = _store(repo, blocks, "20240101T000000Z-00000001")
    repo.delete_manifest("20240101T000000Z-00000001")  # the blocks are unused now
    (pack,) = _packs(root)

    writer = Repository.open(root)
    with writer.writing("backup"):
        marked = collect_garbage(Repository.open(root))  # mark while the writer runs
        assert marked["packs_marked"] == 1 and marked["packs_deleted"] == 0
        assert marked["tombstones_pending"] == 1
        assert [w["pid"] for w in marked["waiting_for"]] == [os.getpid()]
        sink = writer.block_sink(level=0)
        ids = [sink.store(b)[0].hex() for b in blocks]
        sink.close()
        assert sink.stats.blocks_reused == 4  # it used the tombstoned pack
        assert collect_garbage(Repository.open(root))["packs_deleted"] == 0  # still waits
        _manifest(writer, "20240102T000000Z-00000002", ids)
    assert ids == first["ids"]
    out = collect_garbage(Repository.open(root))
    assert out["packs_rescued"] == 1 and out["packs_deleted"] == 0
    assert out["tombstones_pending"] == 0 and _packs(root) == {pack}
    fresh = Repository.open(root)
    assert [fresh.read_block(bytes.fromhex(i)) for i in ids] == blocks
    assert collect_garbage(Repository.open(root))["packs_marked"] == 0


def test_writer_after_the_mark_stores_again_and_the_sweep_deletes(root):
    """A writer that starts after the tombstone leaves the tombstoned pack alone; a reader
    whose index still points into the swept pack finds the blocks in the new one."""
    repo = Repository.open(root)
    blocks = _blocks(3)
    _store(repo, blocks)  # unused
    (old_pack,) = _packs(root)
    reader = Repository.open(root)
    assert reader.index.get(reader.keyed.digest(blocks[0])).pack_id == old_pack

    other = Repository.open(root)
    with other.writing("backup"):  # a long backup: keeps the sweep waiting
        assert collect_garbage(Repository.open(root))["packs_marked"] == 1
        later = _store(Repository.open(root), blocks, "20240102T000000Z-00000002")
        assert later["new"] == 3 and later["reused"] == 0
        assert collect_garbage(Repository.open(root))["packs_deleted"] == 0
    out = collect_garbage(Repository.open(root))
    assert out["packs_deleted"] == 1 and old_pack not in _packs(root)
    assert [reader.read_block(bytes.fromhex(i)) for i in later["ids"]] == blocks


def test_gc_wait_sweeps_in_the_same_run_once_the_writer_is_gone(root):
    repo = Repository.open(root)
    _store(repo, _blocks(2))
    sleeper = subprocess.Popen(["sleep", "0.5"])
    _fake_lock(root, locks.PROCESS_CLIENT, sleeper.pid)
    try:
        out = collect_garbage(Repository.open(root), wait_seconds=60)
    finally:
        sleeper.wait()
    assert out["packs_deleted"] == 1 and out["tombstones_pending"] == 0


def _fake_lock(root, client: str, pid: int, **doc) -> str:
    """A writer lock as client ``client`` writes it in this scope (``pid_scope``)."""
    (root / "locks").mkdir(exist_ok=True)
    name = f"{client}-{pid_scope()}-{pid}-abcdef"
    (root / "locks" / name).write_text(json.dumps({"kind": "backup", **doc}))
    return name


def test_stale_locks_do_not_block_and_other_clients_do(root):
    repo = Repository.open(root)
    _store(repo, _blocks(2))
    dead = subprocess.Popen(["true"])
    dead.wait()
    _fake_lock(root, locks.PROCESS_CLIENT, dead.pid)
    remote = _fake_lock(root, "0123456789abcdef", 4242, refreshed=locks._now())
    out = collect_garbage(Repository.open(root))
    assert out["stale_locks_removed"] == 1
    assert out["packs_marked"] == 1 and out["packs_deleted"] == 0
    assert [w["lock"] for w in out["waiting_for"]] == [remote]
    (root / "locks" / remote).unlink()
    assert collect_garbage(Repository.open(root))["packs_deleted"] == 1


def test_crash_between_tombstone_and_wait_file(root):
    repo = Repository.open(root)
    _store(repo, _blocks(2))
    with Repository.open(root).writing("backup"):
        collect_garbage(Repository.open(root))
    (wait,) = (root / "gc").glob("*.wait")
    wait.unlink()  # as if gc died right after writing the tombstone
    out = collect_garbage(Repository.open(root))
    assert out["packs_deleted"] == 1 and list((root / "gc").glob("*.tomb")) == []


def test_crash_in_the_middle_of_a_sweep(root):
    """Index file deleted, pack not yet: the vault stays readable, writers leave the pack
    alone, and the next run finishes the job."""
    repo = Repository.open(root)
    used = _store(repo, _blocks(2), "20240101T000000Z-00000001")
    _store(repo, _blocks(2))
    with Repository.open(root).writing("backup"):
        collect_garbage(Repository.open(root))
    (tomb,) = (root / "gc").glob("*.tomb")
    (victim,) = [p["pack"] for p in json.loads(tomb.read_text())["packs"]]
    (root / "index" / victim).unlink()
    fresh = Repository.open(root)
    assert victim in fresh.index.excluded
    for id_hex in used["ids"]:
        fresh.read_block(bytes.fromhex(id_hex))
    out = collect_garbage(Repository.open(root))
    assert out["packs_deleted"] == 1 and victim not in _packs(root)
    assert list((root / "gc").glob("*.tomb")) == []


def test_unreadable_manifest_stops_gc_before_deleting(root):
    repo = Repository.open(root)
    _store(repo, _blocks(2))
    (root / "manifests").mkdir(exist_ok=True)
    (root / "manifests" / "20240101T000000Z-0000000f").write_bytes(b"garbage")
    before = _packs(root)
    with pytest.raises(DbsafeError) as exc:
        collect_garbage(Repository.open(root))
    assert exc.value.code == "vault.object_corrupt"
    assert _packs(root) == before and list((root / "gc").glob("*.tomb")) == []


def test_one_gc_at_a_time(root):
    (root / "gc").mkdir()
    with open(root / "gc" / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(DbsafeError) as exc:
            collect_garbage(Repository.open(root))
    assert exc.value.code == "gc.running"


def test_a_long_running_reader_lets_go_of_swept_packs(root):
    """A process that read a pack keeps a descriptor on it; once garbage collection swept
    it, an index refresh retires the descriptor and a refresh a minute later closes it, so
    the space is freed."""
    repo = Repository.open(root)
    blocks = _blocks(2)
    stored = _store(repo, blocks, "20240101T000000Z-00000001")
    reader = Repository.open(root)
    assert reader.read_block(bytes.fromhex(stored["ids"][0])) == blocks[0]
    (pack,) = _packs(root)
    repo.delete_manifest("20240101T000000Z-00000001")
    assert collect_garbage(Repository.open(root))["packs_deleted"] == 1

    def open_on_deleted() -> int:
        targets = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
                targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        return sum(1 for t in targets if t.endswith(f"{pack} (deleted)"))

    assert open_on_deleted() == 1
    reader.refresh_index()  # the pack's index file is gone: reload, retire its descriptor
    assert open_on_deleted() == 1  # not closed at once: another thread may be reading
    reader.storage.RETIRE_GRACE = 0.0  # as if a minute passed
    reader.refresh_index()
    assert open_on_deleted() == 0
