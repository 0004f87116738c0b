"""The block index (vault/index.py): a table of records merged from what was added, kept
in the client's folder between runs; lookups that prefer a pack not excluded; a pack swept
away taking only its own places; a table that is not this vault's ignored."""

from __future__ import annotations

import os

import pytest

from dbsafe.vault import index as index_module
from dbsafe.vault import repository as repository_module
from dbsafe.vault.gc import collect_garbage
from dbsafe.vault.index import BlobIndex
from dbsafe.vault.repository import Repository

VAULT_ID = "ab" * 16


def _blobs(ids: list[bytes], start: int = 0) -> list[list]:
    return [[i.hex(), start + n * 100, 90, 120, 1] for n, i in enumerate(ids)]


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(index_module, "OVERLAY_MAX", 50)  # merged into the table early


def test_blocks_merged_into_the_table_are_found_with_their_places(small, tmp_path):
    ids = [os.urandom(32) for _ in range(300)]
    index = BlobIndex(tmp_path / "blocks.idx", VAULT_ID)
    for n in range(0, 300, 30):
        index.add_pack(f"{n:032x}", _blobs(ids[n:n + 30], 1000), "key1" if n % 60 else None)
    assert index._table is not None and len(index) == 300  # merged, with a few left over
    for n, block_id in enumerate(ids):
        loc = index.get(block_id)
        assert loc is not None and loc.pack_id == f"{n - n % 30:032x}"
        assert (loc.offset, loc.length, loc.raw_length, loc.codec) == \
            (1000 + n % 30 * 100, 90, 120, 1)
        assert loc.key_id == ("key1" if (n - n % 30) % 60 else None)
    assert index.get(os.urandom(32)) is None and os.urandom(32) not in index

    index.save()  # a later run maps the table from the file and finds them all
    again = BlobIndex(tmp_path / "blocks.idx", VAULT_ID)
    assert again.unsaved() == 0 and again.pack_ids() == index.pack_ids()
    assert [again.get(i) for i in ids] == [index.get(i) for i in ids]


def test_a_block_in_two_packs_is_found_in_the_one_not_excluded_and_outlives_a_sweep(small,
                                                                                  tmp_path):
    shared = os.urandom(32)
    others = [os.urandom(32) for _ in range(60)]
    index = BlobIndex(tmp_path / "blocks.idx", VAULT_ID)
    index.add_pack("a" * 32, _blobs([shared] + others[:30]))
    index.add_pack("b" * 32, _blobs(others[30:] + [shared]))  # merged: over 50 blocks
    index.excluded = frozenset({"a" * 32})
    assert index.get(shared).pack_id == "b" * 32 and shared in index
    assert others[0] not in index  # only in the excluded pack: stored again by a writer
    assert index.get(others[0]).pack_id == "a" * 32  # but still readable there
    index.drop_packs({"b" * 32})
    assert index.get(shared).pack_id == "a" * 32 and index.get(others[59]) is None
    assert BlobIndex(tmp_path / "blocks.idx", VAULT_ID).get(shared).pack_id == "a" * 32


@pytest.mark.parametrize("spoil", ["another vault", "cut short", "not a table"])
def test_a_table_that_is_not_this_vault_s_is_ignored(small, tmp_path, spoil):
    ids = [os.urandom(32) for _ in range(60)]
    index = BlobIndex(tmp_path / "blocks.idx", VAULT_ID)
    index.add_pack("a" * 32, _blobs(ids))
    path = tmp_path / "blocks.idx"
    if spoil == "cut short":
        path.write_bytes(path.read_bytes()[:-10])
    elif spoil == "not a table":
        path.write_bytes(b"hello")
    other = "cd" * 16 if spoil == "another vault" else VAULT_ID
    fresh = BlobIndex(path, other)
    assert fresh.pack_ids() == set() and fresh.get(ids[0]) is None


def test_a_client_reads_only_the_index_files_written_since_its_table(tmp_path, monkeypatch):
    monkeypatch.setattr(repository_module, "SAVE_AFTER", 10)
    Repository.init(tmp_path / "vault")
    client = tmp_path / "client"
    client.mkdir()

    def store(repo: Repository, n: int) -> list[bytes]:
        with repo.writing("test"):
            sink = repo.block_sink(level=0)
            ids = [sink.store(os.urandom(3000))[0] for _ in range(n)]
            sink.close()
        return ids

    first = store(Repository.open(tmp_path / "vault"), 40)
    repo = Repository.open(tmp_path / "vault", client_dir=client)
    assert repo.read_block(first[0])  # the index is loaded: 40 blocks read, saved
    assert (client / "blocks.idx").exists()
    second = store(Repository.open(tmp_path / "vault"), 5)
    loaded: list[str] = []
    real = Repository.load_index_file
    monkeypatch.setattr(Repository, "load_index_file",
                        lambda self, pack_id: loaded.append(pack_id) or real(self, pack_id))
    later = Repository.open(tmp_path / "vault", client_dir=client)
    for block_id in first + second:
        assert later.keyed.digest(later.read_block(block_id)) == block_id
    assert len(loaded) == 1  # only the pack written after the table

    # garbage collection sweeps the first pack (no point uses it): its places go
    monkeypatch.setattr(Repository, "load_index_file", real)
    keeper = Repository.open(tmp_path / "vault")
    keeper.save_manifest({"point_id": "20261206T120000Z-0000000a", "wal": [],
                          "files": [{"path": "f", "blocks": [b.hex() for b in second]}]})
    assert collect_garbage(keeper)["packs_deleted"] == 1
    after = Repository.open(tmp_path / "vault", client_dir=client)
    assert after.index.get(first[0]) is None and after.index.get(second[0]) is not None
