"""The differential's rules without a cluster: page selection by LSN, which files qualify, the
base checks, and how restore lays a delta over its base (docs/repository-format.md)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.base import SourceFile
from dbsafe.engines.postgres.delta import changed_pages, page_runs, tracks_changes
from dbsafe.engines.postgres.wal import TimelineSwitch, parse_lsn
from dbsafe.services.backup.differential import (
    MTIME_MARGIN,
    NOT_READ,
    SCAN,
    WHOLE,
    check_base,
    classify,
    joined,
)
from dbsafe.services.restore.combine import blocks_used, file_writes, files_using

PAGE = 8192


def _pages(*lsns: int) -> bytes:
    out = bytearray()
    for lsn in lsns:
        page = bytearray(PAGE)
        if lsn:
            page[0:4] = (lsn >> 32).to_bytes(4, "little")
            page[4:8] = (lsn & 0xFFFFFFFF).to_bytes(4, "little")
            page[100] = 1  # not an all-zero page
        out += page
    return bytes(out)


def test_changed_pages_by_lsn_zero_and_beyond_the_base():
    since = (3 << 32) | 0x500
    data = _pages(since - 1, since, since + 1, 0, (2 << 32) | 0xFFFFFFFF, (4 << 32), 5, 6)
    assert changed_pages(data, since, first_new=100).tolist() == [1, 2, 3, 5]
    assert changed_pages(data, since, first_new=6).tolist() == [1, 2, 3, 5, 6, 7]
    assert changed_pages(data, since, first_new=-3).tolist() == list(range(8))
    # a trailing partial page is not a page
    assert changed_pages(data + b"\1" * 100, since, first_new=100).tolist() == [1, 2, 3, 5]
    assert changed_pages(b"", since, 0).size == 0


def test_page_runs():
    assert page_runs(np.array([], dtype=np.int64)) == []
    assert page_runs(np.array([0, 1, 2, 5, 7, 8])) == [(0, 3), (5, 1), (7, 2)]


def _src(path: str, size: int = PAGE, paged: bool = True, mtime: float = 0.0) -> SourceFile:
    return SourceFile(path=path, abspath="/x/" + path, size=size, mode=0o600, mtime=mtime,
                      paged=paged)


def test_only_main_forks_of_whole_pages_are_scanned():
    assert tracks_changes(_src("base/5/16400"))
    assert tracks_changes(_src("base/5/16400.3"))
    assert tracks_changes(_src("pg_tblspc/16384/PG_15_202209061/5/16400"))
    for path in ("base/5/16400_fsm", "base/5/16400_vm", "base/5/16400_init"):
        assert not tracks_changes(_src(path)), path
    assert not tracks_changes(_src("base/5/16400", size=PAGE + 10))
    assert not tracks_changes(_src("global/pg_control", paged=False))


def _base(files: list[dict], **extra) -> dict:
    return {"point_id": "F", "start_time": "2026-01-01T12:00:00.000+00:00",
            "start_lsn": "0/5000000", "stop_lsn": "0/6000000", "timeline": 1,
            "instance": {"pg_version": 15, "server": "s"}, "block_size": 2 * PAGE,
            "files": files, **extra}


def _plan(files: list, base: dict) -> dict[str, list[str]]:
    """What a differential does with each file, by kind, and the base's files gone."""
    cutoff = datetime.fromisoformat(base["start_time"]).timestamp() - MTIME_MARGIN
    out: dict[str, list[str]] = {WHOLE: [], SCAN: [], NOT_READ: [], "dropped": []}
    for f, entry in joined(files, base["files"], out["dropped"]):
        out[classify(f, entry, cutoff)[0]].append(f.path)
    return out


def test_files_are_sorted_into_whole_scan_not_read_and_dropped():
    long_ago = 1_700_000_000.0  # 2023, long before the base started
    base = _base([{"path": p, "size": PAGE, "mtime": long_ago, "blocks": ["aa"]}
                  for p in ("base/5/1", "base/5/2", "base/5/3", "base/5/3_vm", "base/5/4",
                            "gone")])
    files = [_src("base/5/1", mtime=long_ago), _src("base/5/2", mtime=long_ago + 1),
             _src("base/5/3", size=2 * PAGE, mtime=long_ago), _src("base/5/3_vm"),
             _src("base/5/9")]
    p = _plan(files, base)
    assert p[NOT_READ] == ["base/5/1"]
    assert p[SCAN] == ["base/5/2", "base/5/3"]
    assert p[WHOLE] == ["base/5/3_vm", "base/5/9"]
    assert p["dropped"] == ["base/5/4", "gone"]  # between two files, and after the last
    # a file whose mtime equals the base's but falls within the margin is read
    recent = _base([{"path": "base/5/1", "size": PAGE, "mtime": 1767268790.0,
                     "blocks": ["aa"]}])
    assert _plan([_src("base/5/1", mtime=1767268790.0)], recent)[SCAN]


def test_check_base_refusals():
    base = _base([])
    check_base(base, "s", 15, "0/6000000", 1)
    for args, words in (((16, None, None), "PostgreSQL 15"),
                        ((15, "0/5FFFFFF", None), "before the full's end"),
                        ((15, None, 2), "timeline 1 to 2")):
        with pytest.raises(DbsafeError) as err:
            check_base(base, "s", *args)
        assert err.value.code == "backup.base_unusable" and words in err.value.message


def test_a_base_on_an_ancestor_timeline_left_after_its_end_is_usable():
    """A promoted standby (or a failover) leaves the base's timeline: the base still serves
    when the server left it at or after the base's stop, never before (the base would hold
    changes the new timeline never had)."""
    base = _base([])
    check_base(base, "s", 15, timeline=2, history=[TimelineSwitch(1, parse_lsn("0/6000000"))])
    check_base(base, "s", 15, timeline=3, history=[TimelineSwitch(1, parse_lsn("0/7000000")),
                                                   TimelineSwitch(2, parse_lsn("0/8000000"))])
    for history in ([TimelineSwitch(1, parse_lsn("0/5FFFFFF"))],   # left before the end
                    [TimelineSwitch(4, parse_lsn("0/9000000"))],   # another lineage
                    []):                                           # no history file
        with pytest.raises(DbsafeError) as err:
            check_base(base, "s", 15, timeline=2, history=history)
        assert err.value.code == "backup.base_unusable"


def test_a_base_taken_with_the_other_checksum_setting_is_refused():
    base = _base([], instance={"pg_version": 15, "server": "s", "data_checksums": False})
    check_base(base, "s", 15, data_checksums=False)
    with pytest.raises(DbsafeError) as err:
        check_base(base, "s", 15, data_checksums=True)
    assert err.value.code == "backup.base_unusable" and "turned on" in err.value.message
    check_base(_base([]), "s", 15, data_checksums=True)  # not recorded: not checked


def test_file_writes_lay_the_delta_over_the_cut_base():
    bs = 2 * PAGE
    base = _base([{"path": "f", "size": 5 * PAGE, "mode": 0o600, "mtime": 1.0,
                   "blocks": ["b0", "b1", "b2"]},
                  {"path": "same", "size": 3 * PAGE, "mode": 0o600, "mtime": 1.0,
                   "blocks": ["s0", "s1"]}])
    diff = {"type": "diff", "base": "F", "block_size": bs, "point_id": "D", "wal": [],
            "instance": {"server": "s"},
            "files": [
                # shrunk to 3 pages, pages 1 and 2 changed, stored in two blocks
                {"path": "f", "size": 3 * PAGE, "mode": 0o600, "mtime": 2.0,
                 "blocks": ["d0", "d1"], "delta": {"pages": [[1, 2]], "block_pages": [1, 1]}},
                {"path": "same", "size": 3 * PAGE, "mode": 0o600, "mtime": 1.0, "blocks": [],
                 "delta": {"pages": [], "block_pages": []}},
                {"path": "new", "size": PAGE, "mode": 0o600, "mtime": 2.0, "blocks": ["n0"]},
            ]}
    f, same, new = file_writes(diff, base)  # one at a time
    assert f["blocks"] == ["b0", "b1"] and f["size"] == 3 * PAGE
    assert f["pages"] == [("d0", [(PAGE, 0, PAGE)]), ("d1", [(2 * PAGE, 0, PAGE)])]
    assert same["blocks"] == ["s0", "s1"] and same["pages"] == []
    assert new == diff["files"][2]
    used = blocks_used(diff, base)
    assert set(used) == {"b0", "b1", "d0", "d1", "s0", "s1", "n0"}
    assert used["b1"] == PAGE and used["d1"] == PAGE
    assert files_using(diff, base, {"b1", "d1", "n0"}) == \
        {"b1": ["f"], "d1": ["f"], "n0": ["new"]}

    # grown: pages beyond the base are in the delta, one run split over two blocks
    diff["files"][0] = {"path": "f", "size": 8 * PAGE, "mode": 0o600, "mtime": 2.0,
                        "blocks": ["g0", "g1"],
                        "delta": {"pages": [[4, 4]], "block_pages": [2, 2]}}
    grown = next(file_writes(diff, base))
    assert grown["blocks"] == ["b0", "b1", "b2"]
    assert grown["pages"] == [("g0", [(4 * PAGE, 0, 2 * PAGE)]),
                              ("g1", [(6 * PAGE, 0, 2 * PAGE)])]
