"""Page LSN evidence a drill uses to tell a table changed after its count
(engines/postgres/stats.changed_pages_between), on relation files written here."""

from __future__ import annotations

from pathlib import Path

from dbsafe.engines.postgres.pages import PAGE_SIZE
from dbsafe.engines.postgres.stats import changed_pages_between


def _page(lsn: int) -> bytes:
    return ((lsn >> 32).to_bytes(4, "little") + (lsn & 0xFFFFFFFF).to_bytes(4, "little")
            + bytes(PAGE_SIZE - 8))


def _relation(tmp_path: Path, *segments: list[int]) -> str:
    base = tmp_path / "base" / "5" / "16384"
    base.parent.mkdir(parents=True)
    for n, lsns in enumerate(segments):
        path = base if n == 0 else base.with_name(f"16384.{n}")
        path.write_bytes(b"".join(_page(x) for x in lsns))
    return "base/5/16384"


def test_a_page_between_the_count_and_the_end_of_recovery(tmp_path):
    rel = _relation(tmp_path, [0x100, 0x2_0000_0500, 0x300])
    assert changed_pages_between(tmp_path, rel, 0x2_0000_0400, 0x2_0000_0600)
    # at the count itself: not after it; above the end of recovery: the drill's own
    assert not changed_pages_between(tmp_path, rel, 0x2_0000_0500, 0x2_0000_0600)
    assert not changed_pages_between(tmp_path, rel, 0x300, 0x2_0000_04FF)


def test_later_segments_are_read_and_missing_files_are_unchanged(tmp_path):
    rel = _relation(tmp_path, [0x10, 0x20], [0x10, 0x9000])
    assert changed_pages_between(tmp_path, rel, 0x8000, 0xA000)
    assert not changed_pages_between(tmp_path, rel, 0x9000, 0xA000)
    assert not changed_pages_between(tmp_path, "base/5/99999", 0, 1 << 62)


def test_a_partial_last_page_is_ignored(tmp_path):
    rel = _relation(tmp_path, [0x10])
    with open(tmp_path / rel, "ab") as f:
        f.write(_page(0x5000)[:100])
    assert not changed_pages_between(tmp_path, rel, 0x1000, 0x9000)
