"""Damage in the vault is found by verify and stops a restore before it writes anything
usable: readers trust nothing but hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import free_port


def _blobs(vault) -> dict[str, list]:
    """{pack id: [[id, offset, length, raw_length, codec], ...]} from the index files."""
    repo = vault.repository()
    result = {}
    for f in (vault.path / "index").iterdir():
        doc = repo.load_index_file(f.name)
        result[doc["pack"]] = doc["blobs"]
    return result


def _users(manifest: dict, block_hex: str) -> list[str]:
    return sorted({e["path"] for e in manifest["files"] + manifest["wal"]
                   if block_hex in e["blocks"]})


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def damaged(src_vault):
    """A backup, then one byte flipped in the middle of the largest pack (moved to the
    middle of the largest blob if the middle byte is not in a blob some file needs).
    Returns (point id, damaged block id, files that use it)."""
    point = src_vault.backup("src")["point_id"]
    repo = src_vault.repository()
    manifest = repo.load_manifest_whole(point)
    zero_id = repo.keyed.digest(bytes(repo.block_size)).hex()
    blobs = _blobs(src_vault)
    packs = {p.name: p for p in src_vault.pack_files()}
    assert set(packs) == set(blobs), "every pack has exactly one index file"

    pack_id = max(packs, key=lambda p: packs[p].stat().st_size)
    middle = packs[pack_id].stat().st_size // 2
    hit = [b for b in blobs[pack_id] if b[1] <= middle < b[1] + b[2]]
    if not hit or hit[0][0] == zero_id or not _users(manifest, hit[0][0]):
        pack_id, hit = max(((p, [b]) for p, bl in blobs.items() for b in bl),
                           key=lambda x: x[1][0][2])
        middle = hit[0][1] + hit[0][2] // 2
    block_hex = hit[0][0]
    _flip(packs[pack_id], middle)
    users = _users(manifest, block_hex)
    assert users
    return point, block_hex, users


def test_verify_names_the_damaged_files(src_vault, damaged):
    point, block_hex, users = damaged
    res = src_vault.run("verify", "src", "--json")
    assert res.returncode != 0, res.describe()
    out = res.json()
    assert out["error"]["code"] == "verify.failed"
    report = out["report"]
    assert report["ok"] is False
    (bad,) = [p for p in report["points"] if p["point_id"] == point]
    assert bad["ok"] is False
    assert [p["block_id"] for p in bad["problems"]] == [block_hex]
    assert bad["problems"][0]["problem"] == "corrupt"
    assert bad["problems"][0]["files"] == users
    assert bad["damaged_files"] == users

    # Without --json the one-line error says the same.
    res = src_vault.run("verify", "src", "--point", point)
    assert res.returncode != 0
    assert "verify.failed" in res.stderr and point in res.stderr
    # The verify job is recorded as failed.
    verify_jobs = [j for j in src_vault.jobs() if j["type"] == "verify"]
    assert verify_jobs and all(j["state"] == "failed" for j in verify_jobs)
    assert {j["error_code"] for j in verify_jobs} == {"verify.failed"}


def test_restore_of_damaged_point_fails_and_leaves_no_target(src_vault, damaged, area):
    point, block_hex, users = damaged
    target = area / "r"
    out = src_vault.fail("vault.block_corrupt", "restore", "src", "--point", point,
                         "--to-pgdata", target, "--port", free_port(), "--start")
    assert block_hex in out["error"]["message"]
    assert any(u in out["error"]["message"] for u in users)
    assert not target.exists()
    failed = [j for j in src_vault.jobs() if j["type"] == "restore"]
    assert len(failed) == 1 and failed[0]["state"] == "failed"
    assert failed[0]["error_code"] == "vault.block_corrupt"


def test_restore_as_files_of_damaged_point_leaves_nothing(src_vault, damaged, area):
    point, _block, _users = damaged
    target = area / "files"
    src_vault.fail("vault.block_corrupt", "restore", "src", "--point", point, "--as-files",
                   target)
    assert not target.exists()


def test_missing_pack(src_vault, area):
    point = src_vault.backup("src")["point_id"]
    manifest = src_vault.repository().load_manifest_whole(point)
    packs = src_vault.pack_files()
    victim = max(packs, key=lambda p: p.stat().st_size)
    lost = {b[0] for b in _blobs(src_vault)[victim.name]}
    victim.unlink()

    res = src_vault.run("verify", "src", "--json")
    assert res.returncode != 0, res.describe()
    report = res.json()["report"]
    problems = report["points"][0]["problems"]
    assert problems and {p["problem"] for p in problems} == {"missing"}
    used = {b for e in manifest["files"] + manifest["wal"] for b in e["blocks"]}
    assert {p["block_id"] for p in problems} == lost & used

    target = area / "r"
    src_vault.fail("vault.block_missing", "restore", "src", "--point", point, "--to-pgdata",
                   target)
    assert not target.exists()


def test_corrupt_manifest_is_refused(src_vault, area):
    point = src_vault.backup("src")["point_id"]
    manifest_file = src_vault.path / "manifests" / point
    _flip(manifest_file, manifest_file.stat().st_size // 2)
    out = src_vault.fail("vault.object_corrupt", "restore", "src", "--point", point,
                         "--to-pgdata", area / "r")
    assert point in out["error"]["message"]
    src_vault.fail("vault.object_corrupt", "verify", "src")
    assert not (area / "r").exists()


def test_corrupt_index_file_is_refused(src_vault, area):
    point = src_vault.backup("src")["point_id"]
    index_file = max((src_vault.path / "index").iterdir(), key=lambda p: p.stat().st_size)
    _flip(index_file, index_file.stat().st_size // 2)
    src_vault.fail("vault.object_corrupt", "restore", "src", "--point", point,
                   "--to-pgdata", area / "r")
    assert not (area / "r").exists()
    res = src_vault.run("verify", "src", "--json")
    assert res.returncode != 0
    assert json.loads(res.stdout)["error"]["code"] == "vault.object_corrupt"
