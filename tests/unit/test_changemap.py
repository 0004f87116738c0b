"""The change map's page choice (engines/postgres/changemap.py ChangeMap.pages): which
pages of a main-fork segment file a WAL-tracked differential reads. The WAL side is tested
against pg_waldump (tests/integration/test_wal_block_refs.py) and the whole path on real
clusters (tests/integration/test_tracked_differential.py); here, the rules that a workload
rarely reaches: a relation past its first 1 GiB segment, a cut then re-extended relation,
a relation number used again, files in created databases and tablespaces."""

from __future__ import annotations

import struct
from array import array
from types import SimpleNamespace

from dbsafe.engines.postgres import _walscan
from dbsafe.engines.postgres.changemap import (
    BLOCKS,
    ChangeMap,
    MapBuilder,
    block_numbers,
    from_summaries,
    relation_of,
)
from dbsafe.engines.postgres.files import PAGES_PER_SEGMENT
from dbsafe.engines.postgres.wal import record_segments

SEG = PAGES_PER_SEGMENT


def _map(**blocks: list[int]) -> ChangeMap:
    m = ChangeMap(0, 1 << 40)
    for name, numbers in blocks.items():
        m.blocks[(1663, 5, int(name[1:]))] = array(BLOCKS, sorted(numbers))
    return m


def test_relation_of_each_place_a_main_fork_lives():
    assert relation_of("global/1262") == (1664, 0, 1262)
    assert relation_of("base/5/16384") == (1663, 5, 16384)
    assert relation_of("base/5/16384.3") == (1663, 5, 16384)
    assert relation_of("pg_tblspc/16390/PG_15_202209061/5/16400.1") == (16390, 5, 16400)
    assert relation_of("base/5/16384_fsm") is None  # other forks are not the map's
    assert relation_of("base/5/PG_VERSION") is None
    assert relation_of("pg_tblspc/16390/5/16400") is None  # not a tablespace's layout


def test_pages_named_in_a_later_segment_file_are_found_by_its_own_offset():
    m = _map(r100=[3, 4, 5, 9, SEG + 2, SEG + 3, 2 * SEG])
    assert m.pages("base/5/100", 0, SEG, SEG) == [(3, 3), (9, 1)]
    assert m.pages("base/5/100.1", SEG, SEG, SEG) == [(2, 2)]
    assert m.pages("base/5/100.2", 2 * SEG, 10, 10) == [(0, 1)]
    assert m.pages("base/5/100.3", 3 * SEG, 10, 10) == []


def test_pages_past_the_base_copy_are_read_and_named_pages_past_the_end_are_not():
    m = _map(r100=[1, 50])
    # grown from 10 to 14 pages: pages 10-13 are new; block 50 no longer exists
    assert m.pages("base/5/100", 0, 14, 10) == [(1, 1), (10, 4)]
    assert m.pages("base/5/200", 0, 12, 10) == [(10, 2)]  # named nowhere, grown
    assert m.pages("base/5/200", 0, 10, 10) == []


def test_named_pages_that_run_into_the_new_pages_are_one_run():
    m = _map(r100=[2, 8, 9])
    assert m.pages("base/5/100", 0, 14, 10) == [(2, 1), (8, 6)]


def test_a_cut_relation_is_read_from_where_it_was_cut():
    """Cut to 4 blocks, then grown again without WAL naming the new pages (bulk extension
    writes empty pages unlogged): the base's old pages there must not come back."""
    m = _map(r100=[1])
    m.truncated[(1663, 5, 100)] = 4
    assert m.pages("base/5/100", 0, 8, 10) == [(1, 1), (4, 4)]
    m.truncated[(1663, 5, 100)] = SEG + 6  # cut inside the second segment file
    assert m.pages("base/5/100.1", SEG, 10, 10) == [(6, 4)]
    assert m.pages("base/5/100", 0, SEG, SEG) == [(1, 1)]


def test_created_relations_databases_and_tablespaces_are_read_whole():
    m = _map(r100=[1])
    m.whole.add((1663, 5, 100))  # a number used again: a new file at the base's path
    m.whole_databases.add((1663, 7))
    m.whole_tablespaces.add(16390)
    assert m.pages("base/5/100", 0, 10, 10) is None
    assert m.pages("base/7/300", 0, 10, 10) is None
    assert m.pages("pg_tblspc/16390/PG_15_202209061/5/16400", 0, 10, 10) is None
    assert m.pages("base/5/101", 0, 10, 10) == []


def test_block_numbers_sorted_once_and_cut_into_runs():
    numbers = block_numbers(array(BLOCKS, [5, 1, 2, 2, 3, 9, 4294967295]))
    assert numbers.tolist() == [1, 2, 3, 5, 9, 4294967295]
    assert _walscan.block_runs(numbers, 0, 1 << 32) == [(1, 3), (5, 1), (9, 1),
                                                        (4294967295, 1)]
    assert _walscan.block_runs(numbers, 2, 9) == [(0, 2), (3, 1)]   # [2, 9), from 2
    assert _walscan.block_runs(block_numbers(b""), 0, 10) == []


def _refs(*refs: tuple[int, int, int, int, int, int]) -> bytes:
    return b"".join(struct.pack("<QIIIII", *ref) for ref in refs)


def test_block_references_are_kept_per_relation_in_range_and_main_fork_only():
    refs = _refs((10, 1663, 5, 100, 0, 7), (11, 1663, 5, 100, 0, 3),
                 (12, 1663, 5, 100, 0, 7),     # named twice
                 (9, 1663, 5, 100, 0, 1),      # before the range
                 (20, 1663, 5, 100, 0, 2),     # at its end: after it
                 (13, 1663, 5, 100, 1, 9),     # the free space map
                 (14, 1664, 0, 200, 0, 4))
    found = _walscan.blocks_by_relation(refs, 10, 20)
    assert {rel: array(BLOCKS, b).tolist() for rel, b in found.items()} == {
        (1663, 5, 100): [3, 7], (1664, 0, 200): [4]}
    assert _walscan.blocks_by_relation(b"", 0, 1) == {}


def test_blocks_named_in_several_segments_are_merged_sorted_and_once():
    builder = MapBuilder(0, 1 << 40, 1, 16 << 20)
    for refs in (_refs((1, 1663, 5, 100, 0, 9), (2, 1663, 5, 100, 0, 1)),
                 _refs((3, 1663, 5, 100, 0, 4), (4, 1663, 5, 100, 0, 9)),
                 _refs((5, 1663, 5, 101, 0, 6))):
        builder._add_refs(SimpleNamespace(packed_refs=refs))  # one segment's references
    m = builder.finish()
    assert {rel: b.tolist() for rel, b in m.blocks.items()} == {
        (1663, 5, 100): [1, 4, 9], (1663, 5, 101): [6]}
    assert m.describe()["blocks"] == 4


def test_the_servers_summaries_become_the_same_kind_of_map():
    """PostgreSQL 17's rows: blocks, limit blocks (a create is 0, a cut its new size), and
    relfilenode 0 with a limit for a database whose files were copied anew."""
    rows = [(100, 1663, 5, 0, 7, False), (100, 1663, 5, 0, 3, False),
            (100, 1663, 5, 0, 7, False),                 # named twice
            (100, 1663, 5, 1, 2, False),                 # the free space map: not the map's
            (200, 1663, 5, 0, 4, True), (200, 1663, 5, 0, 2, True),   # cut twice: from 2
            (300, 1663, 5, 0, 0, True),                  # created: from 0, i.e. whole
            (0, 1663, 9, 0, 0, True)]                    # database 9 copied
    m = from_summaries(rows, 10, 20)
    assert m.pages("base/5/100", 0, 10, 10) == [(3, 1), (7, 1)]
    assert m.pages("base/5/200", 0, 10, 10) == [(2, 8)]
    assert m.pages("base/5/300", 0, 10, 10) == [(0, 10)]
    assert m.pages("base/9/400", 0, 10, 10) is None
    assert m.pages("base/5/500", 0, 10, 10) == []


def test_a_range_ending_at_a_segments_first_record_does_not_need_that_segment():
    """Right after a segment switch the server's position is the next segment's first
    record, whose bytes may not be written yet: no record starts before it there."""
    seg = 16 << 20
    assert list(record_segments(seg + 40, 3 * seg + 40, seg)) == [1, 2]
    assert list(record_segments(seg + 40, 3 * seg + 48, seg)) == [1, 2, 3]
    assert list(record_segments(seg + 40, seg + 100, seg)) == [1]
