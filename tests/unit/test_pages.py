"""``pages.page_checksums`` against the checksums PostgreSQL stored in real pages."""

from __future__ import annotations

import numpy as np
import pytest

from dbsafe.engines.postgres.pages import PAGE_SIZE, bad_pages, page_checksums, page_lsn


def _stored(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint16).reshape(-1, PAGE_SIZE // 2)[:, 4]


def _nonzero(data: bytes) -> np.ndarray:
    pages = np.frombuffer(data, dtype=np.uint8).reshape(-1, PAGE_SIZE)
    return pages.any(axis=1)


@pytest.fixture(scope="module")
def relation_files(source) -> dict[str, bytes]:
    """Bytes of a few relation files of the checksummed source cluster, read after a
    checkpoint (every page on disk then carries the checksum PostgreSQL computed)."""
    source.execute("CHECKPOINT")
    files = {}
    for db, rel in (("bench", "pgbench_accounts"), ("bench", "pgbench_accounts_pkey"),
                    ("bench", "kinds"), ("postgres", "pg_class"), ("postgres", "pg_database")):
        path = source.relation_path(rel, db)
        files[f"{db}.{rel}"] = path.read_bytes()
    assert source.scalar("SHOW data_checksums") == "on"
    return files


def test_page_checksums_equal_postgres(relation_files):
    checked = 0
    for name, data in relation_files.items():
        assert len(data) % PAGE_SIZE == 0 and data, name
        live = _nonzero(data)
        ours = page_checksums(data, 0)
        theirs = _stored(data)
        mismatch = np.nonzero((ours != theirs) & live)[0]
        assert mismatch.size == 0, f"{name}: pages {mismatch[:10].tolist()} differ"
        assert bad_pages(data, 0) == []
        checked += int(live.sum())
    assert checked > 1000  # pgbench_accounts alone has ~8000 pages


def test_block_number_is_part_of_the_checksum(relation_files):
    data = relation_files["bench.kinds"][: 4 * PAGE_SIZE]
    assert (page_checksums(data, 1) != _stored(data)).all()
    # The same pages seen as blocks 131072.. (segment 1 of a relation) fail, too.
    assert bad_pages(data, 131072) == [0, 1, 2, 3]


def test_bad_pages_finds_a_damaged_page_and_ignores_zero_pages(relation_files):
    data = bytearray(relation_files["bench.pgbench_accounts"][: 8 * PAGE_SIZE])
    data[5 * PAGE_SIZE + 4000] ^= 0x10
    data[3 * PAGE_SIZE: 4 * PAGE_SIZE] = bytes(PAGE_SIZE)  # a new, never-written page
    assert bad_pages(bytes(data), 0) == [5]
    # A trailing partial page is not checked (nor counted).
    assert bad_pages(bytes(data) + b"\x01" * 100, 0) == [5]
    assert bad_pages(b"", 0) == []


def test_page_lsn_reads_pd_lsn(relation_files):
    page = relation_files["postgres.pg_class"][:PAGE_SIZE]
    hi = int.from_bytes(page[0:4], "little")
    lo = int.from_bytes(page[4:8], "little")
    assert page_lsn(page) == (hi << 32) | lo
    assert page_lsn(b"\x01\0\0\0\x02\0\0\0") == (1 << 32) | 2
