"""Sealed objects and the repository's block store (no cluster needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dbsafe.vault.format import KIND_INDEX, KIND_MANIFEST, Keyed, SealError
from dbsafe.vault.packs import read_pack_header
from dbsafe.vault.repository import BlockError, Repository

KEY = bytes.fromhex("11" * 32)
VAULT_ID = "ab" * 16
POINT = "20240101T000000Z-abcdef01"
NAME = f"manifests/{POINT}"
DOC = {"point_id": POINT, "files": [{"path": "base/1/1259", "n": 3}]}


def test_seal_round_trip():
    keyed = Keyed(KEY, vault_id=VAULT_ID)
    sealed = keyed.seal(KIND_MANIFEST, DOC, NAME)
    assert sealed[:8] == b"DBSAFE2\n" and sealed[8:9] == b"M"
    assert keyed.unseal(KIND_MANIFEST, sealed, NAME) == DOC


def test_unseal_rejects_every_flipped_byte():
    keyed = Keyed(KEY, vault_id=VAULT_ID)
    sealed = keyed.seal(KIND_MANIFEST, DOC, NAME)
    for i in range(len(sealed)):
        damaged = bytearray(sealed)
        damaged[i] ^= 0x01
        with pytest.raises(SealError):
            keyed.unseal(KIND_MANIFEST, bytes(damaged), NAME)


def test_unseal_rejects_wrong_kind_key_and_truncation():
    keyed = Keyed(KEY, vault_id=VAULT_ID)
    sealed = keyed.seal(KIND_MANIFEST, DOC, NAME)
    with pytest.raises(SealError):
        keyed.unseal(KIND_INDEX, sealed, NAME)
    with pytest.raises(SealError):
        Keyed(bytes.fromhex("22" * 32), vault_id=VAULT_ID).unseal(KIND_MANIFEST, sealed, NAME)
    for cut in (0, 8, 40, len(sealed) - 1):
        with pytest.raises(SealError):
            keyed.unseal(KIND_MANIFEST, sealed[:cut], NAME)


def _index_blobs(repo: Repository) -> list[list]:
    return [b for pack in repo.storage.names("index")
            for b in repo.load_index_file(pack)["blobs"]]


@pytest.fixture
def repo(tmp_path) -> Iterator[Repository]:
    repo = Repository.init(tmp_path / "vault")
    with repo.writing("test"):  # block_sink() needs a writer lock
        yield repo


def test_same_block_twice_adds_one_blob(repo, tmp_path):
    block = os.urandom(repo.block_size)
    sink = repo.block_sink(level=1)
    id1, added1 = sink.store(block)
    id2, added2 = sink.store(block)
    sink.close()
    assert id1 == id2 == repo.keyed.digest(block)
    assert added1 > 0 and added2 == 0
    assert (sink.stats.blocks_new, sink.stats.blocks_reused) == (1, 1)
    assert [b[0] for b in _index_blobs(repo)] == [id1.hex()]
    packs = list(repo.storage.list("data"))
    assert len(packs) == 1
    assert [b[0] for b in read_pack_header(repo.storage, packs[0].rsplit("/", 1)[1])[0]] == \
        [id1.hex()]

    # A later writer (a new process: the index is loaded from disk) reuses it too.
    again = Repository.open(tmp_path / "vault")
    with again.writing("test"):
        sink = again.block_sink(level=1)
        assert sink.store(block) == (id1, 0)
        sink.close()
    assert len(_index_blobs(again)) == 1
    assert len(list(again.storage.list("data"))) == 1
    assert again.read_block(id1) == block


def test_compressible_and_incompressible_blocks_read_back(repo):
    blocks = [bytes(1000) + b"x" * 5000, os.urandom(70_000), b"tail"]
    sink = repo.block_sink(level=3)
    ids = [sink.store(b)[0] for b in blocks]
    sink.close()
    codecs = {b[0]: b[4] for b in _index_blobs(repo)}
    assert codecs[ids[0].hex()] == 1  # zstd
    assert codecs[ids[1].hex()] == 0  # raw: zstd does not make random bytes smaller
    fresh = Repository.open(repo.storage.root)
    assert [fresh.read_block(i) for i in ids] == blocks


def test_read_block_detects_damage_and_loss(repo):
    block = os.urandom(50_000)
    sink = repo.block_sink(level=1)
    block_id, _ = sink.store(block)
    sink.close()
    (pack,) = list(repo.storage.list("data"))
    path = repo.storage.root / pack
    data = bytearray(path.read_bytes())
    data[25_000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BlockError) as exc:
        Repository.open(repo.storage.root).read_block(block_id)
    assert exc.value.kind == "corrupt"

    path.unlink()
    with pytest.raises(BlockError) as exc:
        Repository.open(repo.storage.root).read_block(block_id)
    assert exc.value.kind == "missing"
    with pytest.raises(BlockError) as exc:
        Repository.open(repo.storage.root).read_block(b"\0" * 32)
    assert exc.value.kind == "missing"


def test_aborted_sink_leaves_nothing_visible(repo):
    sink = repo.block_sink(level=1)
    sink.store(os.urandom(10_000))
    sink.abort()
    assert list(repo.storage.list("data")) == []
    assert list(repo.storage.list("index")) == []
    assert list(repo.storage.list("tmp")) == []


def test_concurrent_stores_with_many_small_packs(repo):
    """Many threads storing at once, packs sealed all the time (a tiny pack target): every
    block is stored once, indexed, and reads back."""
    from concurrent.futures import ThreadPoolExecutor

    from dbsafe.vault.blocks import BlockSink

    sink = BlockSink(repo.storage, repo.keyed, repo.index, level=1, pack_target=1)
    blocks = [os.urandom(2048) for _ in range(400)]
    work = blocks + blocks[:100]  # some twice

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda b: sink.store(b)[0], work))
    sink.close()
    assert ids[:400] == [repo.keyed.digest(b) for b in blocks]
    assert sink.stats.blocks_new == 400 and sink.stats.blocks_reused == 100
    indexed = [b[0] for b in _index_blobs(repo)]
    assert sorted(indexed) == sorted(i.hex() for i in ids[:400])
    fresh = Repository.open(repo.storage.root)
    assert all(fresh.read_block(i) == b for i, b in zip(ids, blocks, strict=False))
