"""A manifest's file entries in parts (docs/repository-format.md, *Entries in parts*), on
a real vault folder: written in path order and read back one part at a time; what a
reader refuses (a part missing, swapped, out of order, short or long); garbage collection
counting the parts' blocks and a deletion removing them."""

from __future__ import annotations

import os

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.vault import entries
from dbsafe.vault.entries import EntrySpool, OutOfOrder, path_key
from dbsafe.vault.gc import collect_garbage, used_blocks
from dbsafe.vault.repository import Repository

POINT = "20261206T120000Z-0000000a"
OTHER = "20261206T130000Z-0000000b"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setattr(entries, "PART_FILES", 3)  # several parts from a few entries
    Repository.init(tmp_path / "vault")
    return Repository.open(tmp_path / "vault")


def _entry(path: str, blocks: list[str] | None = None) -> dict:
    return {"path": path, "size": 0, "mode": 0o600, "mtime": 1.0, "blocks": blocks or []}


def _save(repo: Repository, point_id: str, files: list[dict]) -> dict:
    spool = EntrySpool()
    try:
        for entry in files:
            spool.add(entry)
        about, _ = spool.write_parts(repo, point_id)
    finally:
        spool.close()
    with repo.writing("test"):
        repo.save_manifest({"point_id": point_id, "entries": about, "wal": []})
    return about


PATHS = ["PG_VERSION", "base", "base/1", "base/1/112", "base/1.x", "global/pg_control",
         "pg_xact/0000"]


def test_path_order_puts_a_folder_s_contents_right_after_it():
    assert sorted(["base/1.x", "global", "base/1/112", "base/1"], key=path_key) == \
        ["base/1", "base/1/112", "base/1.x", "global"]


def test_entries_round_trip_in_parts_with_a_reserved_place(repo):
    spool = EntrySpool()
    for path in PATHS:
        if path == "global/pg_control":
            slot = spool.reserve(path)  # copied last, listed in its place
        else:
            spool.add(_entry(path))
    spool.fill(slot, _entry("global/pg_control", ["ab" * 32]))
    assert spool.count() == len(PATHS)
    about, written = spool.write_parts(repo, POINT)
    spool.close()
    assert about == {"parts": 3, "files": 7} and written > 0
    assert sorted(os.listdir(repo.storage.root / "entries" / POINT)) == \
        ["000000", "000001", "000002"]
    manifest = {"point_id": POINT, "entries": about, "wal": []}
    got = list(repo.files_of(manifest))
    assert [e["path"] for e in got] == PATHS
    assert got[5]["blocks"] == ["ab" * 32]
    assert entries.whole(repo, manifest)["files"] == got


def test_a_slot_never_filled_is_left_out(repo):
    spool = EntrySpool()
    spool.add(_entry("a"))
    spool.reserve("b")
    spool.add(_entry("c"))
    assert spool.count() == 2
    about, _ = spool.write_parts(repo, POINT)
    assert about["files"] == 2
    assert [e["path"] for e in repo.files_of({"point_id": POINT, "entries": about})] == \
        ["a", "c"]


@pytest.mark.parametrize("first,second", [("a/b", "a"), ("a/b", "0"), ("a/b", "a/b"),
                                          ("a.b", "a/b")])  # not the strings' order
def test_the_spool_refuses_an_entry_out_of_order(first, second):
    spool = EntrySpool()
    spool.add(_entry(first))
    with pytest.raises(OutOfOrder):
        spool.add(_entry(second))
    spool.close()


def _refused(repo: Repository, manifest: dict) -> DbsafeError:
    with pytest.raises(DbsafeError) as exc:
        list(repo.files_of(manifest))
    return exc.value


def test_a_missing_part_is_refused(repo):
    about = _save(repo, POINT, [_entry(p) for p in PATHS])
    repo.storage.delete(entries.part_name(POINT, 1))
    err = _refused(repo, {"point_id": POINT, "entries": about})
    assert err.code == "vault.object_corrupt" and "missing" in str(err)


def test_a_part_of_another_point_or_place_does_not_verify(repo):
    _save(repo, OTHER, [_entry(p) for p in PATHS])
    about = _save(repo, POINT, [_entry(p) for p in PATHS])
    root = repo.storage.root / "entries"
    (root / POINT / "000001").write_bytes((root / OTHER / "000001").read_bytes())
    assert _refused(repo, {"point_id": POINT, "entries": about}).code == "vault.object_corrupt"
    about = _save(repo, POINT, [_entry(p) for p in PATHS])
    (root / POINT / "000001").write_bytes((root / POINT / "000000").read_bytes())
    assert _refused(repo, {"point_id": POINT, "entries": about}).code == "vault.object_corrupt"


def _forge_parts(repo: Repository, point_id: str, parts: list[list[dict]]) -> dict:
    """Parts written as a forger with the vault's key would: sealed and named right."""
    import json
    for i, files in enumerate(parts):
        text = json.dumps({"format": 1, "point_id": point_id, "part": f"{i:06d}",
                           "files": files}, separators=(",", ":")).encode()
        repo.save_part(point_id, i, text)
    return {"parts": len(parts), "files": sum(len(p) for p in parts)}


@pytest.mark.parametrize("parts,rule", [
    ([[_entry("b")], [_entry("a")]], "path order"),  # across parts
    ([[_entry("a"), _entry("a")]], "path order"),  # a path twice
    ([[_entry("a")], [], [_entry("b")]], "not the last part"),
    ([[{"path": "a", "size": 0}]], "not a file entry"),
])
def test_forged_parts_are_refused_before_they_are_used(repo, parts, rule):
    about = _forge_parts(repo, POINT, parts)
    err = _refused(repo, {"point_id": POINT, "entries": about})
    assert err.code == "vault.manifest_invalid" and rule in err.details["rule"]


def test_a_count_other_than_the_manifest_s_is_refused(repo):
    about = _forge_parts(repo, POINT, [[_entry("a"), _entry("b")]])
    err = _refused(repo, {"point_id": POINT, "entries": {**about, "files": 3}})
    assert err.code == "vault.manifest_invalid" and "hold 2 files" in err.details["rule"]


def test_a_part_too_long_is_refused(repo, monkeypatch):
    monkeypatch.setattr(entries, "MAX_PART_FILES", 2)
    about = _forge_parts(repo, POINT, [[_entry("a"), _entry("b"), _entry("c")]])
    assert _refused(repo, {"point_id": POINT, "entries": about}).code == \
        "vault.manifest_invalid"


def test_a_manifest_has_files_or_entries_never_both_or_neither(repo):
    with repo.writing("test"), pytest.raises(ValueError):
        from dbsafe.vault.records import Manifest
        Manifest.new(point_id=POINT, wal=[])
    with pytest.raises(ValueError, match="both"):
        Manifest.new(point_id=POINT, wal=[], files=[], entries={"parts": 0, "files": 0})


def test_garbage_collection_counts_the_blocks_of_parts_and_deletion_removes_them(repo):
    with repo.writing("test"):
        sink = repo.block_sink(level=0)
        ids = [sink.store(os.urandom(5000))[0].hex() for _ in range(4)]
        sink.close()
    _save(repo, POINT, [_entry(p, [ids[i % 4]]) for i, p in enumerate(PATHS)])
    assert used_blocks(repo) == set(ids)
    report = collect_garbage(repo)
    assert report["packs_deleted"] == report["packs_marked"] == 0
    for block_id in ids:
        repo.read_block(bytes.fromhex(block_id))
    repo.delete_manifest(POINT)
    assert entries.part_names(repo, POINT) == []
    assert used_blocks(repo) == set()
    assert collect_garbage(repo)["packs_deleted"] == 1


def test_parts_without_a_manifest_are_removed_once_a_week_old(repo):
    from datetime import UTC, datetime, timedelta

    from dbsafe.vault.gc import _remove_orphan_parts
    _save(repo, POINT, [_entry(p) for p in PATHS])  # committed: kept whatever its age
    spool = EntrySpool()
    for path in PATHS:
        spool.add(_entry(path))
    spool.write_parts(repo, OTHER)  # never committed
    spool.close()
    started = datetime(2026, 12, 6, 13, tzinfo=UTC)
    assert _remove_orphan_parts(repo, started + timedelta(days=6)) == 0
    assert _remove_orphan_parts(repo, started + timedelta(days=8)) == 3
    assert entries.part_names(repo, OTHER) == [] and len(entries.part_names(repo, POINT)) == 3
    assert len(list(repo.files_of(repo.load_manifest(POINT)))) == len(PATHS)
