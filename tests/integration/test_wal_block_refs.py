"""The WAL decoder of the change maps (engines/postgres/_walscan.c ``block_references``,
docs/change-map.md) against PostgreSQL's own: for every segment a varied workload writes
on a real cluster, the blocks each record names are exactly those ``pg_waldump`` lists,
record by record, and the records that create, cut or drop files come with their main
data. Full-page images (compressed too), relations of several databases and tablespaces,
and the forks a VACUUM touches are all in the workload."""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import PG_BIN, chown_postgres, make_area, new_cluster, remove_area
from test_version_matrix import MATRIX, make_cluster

from dbsafe.engines.postgres import wal

WALDUMP = PG_BIN / "pg_waldump"
RECORD = re.compile(r"rmgr: (\w+)\s.*?lsn: ([0-9A-F]+)/([0-9A-F]+),")
BLKREF = re.compile(r"blkref #\d+: rel (\d+)/(\d+)/(\d+)(?: fork (\w+))? blk (\d+)")
SEGMENT_SIZE = 16 << 20

WORKLOAD = [
    "CREATE TABLE t (id int PRIMARY KEY, v text, tags text[])",
    "INSERT INTO t SELECT g, repeat('x', 200), ARRAY['a' || g % 7] "
    "FROM generate_series(1, 100000) g",
    "CREATE INDEX t_hash ON t USING hash (v)",
    "CREATE INDEX t_gin ON t USING gin (tags)",
    "CHECKPOINT",  # the next changes write full-page images
    "UPDATE t SET v = 'y' WHERE id % 10 = 0",             # HOT and non-HOT
    "UPDATE t SET id = id + 100000 WHERE id % 97 = 0",
    "DELETE FROM t WHERE id % 13 = 0",
    "VACUUM t",                                            # visibility map, free space map
    "SELECT lo_from_bytea(0, decode(repeat('ab', 50000), 'hex'))",
    "CREATE TABLE u (x int)",
    "INSERT INTO u SELECT generate_series(1, 1000)",
    "TRUNCATE u",
    "VACUUM FULL t",
    "CREATE UNLOGGED TABLE n (x int)",
    "INSERT INTO n SELECT generate_series(1, 1000)",
    "CREATE TABLESPACE ts LOCATION '{tablespace}'",
    "ALTER TABLE t SET TABLESPACE ts",
    "CREATE DATABASE d_wal STRATEGY WAL_LOG",
    "CREATE DATABASE d_copy STRATEGY FILE_COPY",
    "DROP TABLE u",
    "DROP DATABASE d_copy",
]


def _waldump(segment: Path, last: Path | None = None
             ) -> tuple[dict[int, list[tuple]], dict[int, str], dict[int, str]]:
    """pg_waldump's records of one segment (to ``last``, when given): {lsn: [(spc, db,
    rel, fork, block)]} and {lsn: resource manager}; given the segment alone, it stops
    before a record that goes on in the next one."""
    out = subprocess.run([str(WALDUMP), "--bkp-details", "-p", str(segment.parent),
                          segment.name, *([last.name] if last else [])],
                         capture_output=True, text=True)
    refs: dict[int, list[tuple]] = defaultdict(list)
    rmgrs: dict[int, str] = {}
    descs: dict[int, str] = {}
    lsn = None
    for line in out.stdout.splitlines():
        rec = RECORD.search(line)
        if rec:
            lsn = (int(rec.group(2), 16) << 32) | int(rec.group(3), 16)
            rmgrs[lsn] = rec.group(1)
            descs[lsn] = line.split("desc: ", 1)[1] if "desc: " in line else ""
            refs.setdefault(lsn, [])
        for m in BLKREF.finditer(line):
            assert lsn is not None
            fork = wal.FORKS.index(m.group(4) or "main")
            refs[lsn].append((int(m.group(1)), int(m.group(2)), int(m.group(3)), fork,
                              int(m.group(5))))
    return refs, rmgrs, descs


def _their_event(rmgr: str, desc: str) -> tuple:
    """What pg_waldump's description of a storage, database or tablespace record says
    changed, in the shape of ``_our_event``."""
    numbers = [int(n) for n in re.findall(r"\d+", desc.split('"')[0])]
    if rmgr == "Storage" and desc.startswith("CREATE"):
        path = desc.split()[1]
        name, _, fork = path.rsplit("/", 1)[1].partition("_")
        return ("create", int(path.rsplit("/", 2)[1]), int(name), wal.FORKS.index(fork or "main"))
    if rmgr == "Storage":  # TRUNCATE <path> to N blocks flags F
        m = re.match(r"TRUNCATE (\S+) to (\d+) blocks", desc)
        assert m, desc
        return ("truncate", int(m.group(1).rsplit("/", 2)[1]), int(m.group(1).rsplit("/")[-1]),
                int(m.group(2)))
    if rmgr == "Database":  # copy dir S/D to S/D, create dir S/D, dir S/D ...
        kind = ("database copy" if "copy" in desc else "database create" if "create" in desc
                else "database drop")
        pairs = list(zip(numbers[0::2], numbers[1::2], strict=True))
        return (kind, *(pairs[-1:] if kind == "database copy" else sorted(pairs)))
    return ("tablespace create" if desc.startswith("CREATE") else "tablespace drop",
            numbers[0])


def _our_event(events: list[wal.FileEvent]) -> tuple:
    first = events[0]
    if first.kind == "create":
        return ("create", first.db, first.rel, first.fork)
    if first.kind == "truncate":
        return ("truncate", first.db, first.rel, first.blocks)
    if first.kind.startswith("database"):
        return (first.kind, *sorted((e.spc, e.db) for e in events))
    return (first.kind, first.spc)


@pytest.fixture
def written(pg_template):
    """A cluster's pg_wal after the workload ran between two WAL switches (compressed
    full-page images on): the segments, and the cluster."""
    area = make_area("walrefs-")
    tablespace = area / "ts"
    tablespace.mkdir()
    chown_postgres(tablespace)
    pg = new_cluster(pg_template, area, settings={"wal_compression": "pglz",
                                                  "wal_keep_size": "1GB"})
    try:
        first = pg.scalar("SELECT pg_walfile_name(pg_switch_wal())")
        for sql in WORKLOAD:
            pg.execute(sql.format(tablespace=tablespace))
        last = pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
        pg.execute("SELECT pg_switch_wal()")
        pg.execute("CHECKPOINT")
        names = sorted(p.name for p in (pg.pgdata / "pg_wal").iterdir()
                       if wal.SEGMENT.match(p.name) and first < p.name <= last)
        yield pg, [pg.pgdata / "pg_wal" / n for n in names]
    finally:
        pg.stop()
        remove_area(area)


def test_every_block_reference_is_pg_waldumps(written):
    pg, segments = written
    assert len(segments) >= 3, segments  # records run across segment boundaries
    seen_rmgrs: set[str] = set()
    wanted_lsns: set[int] = set()
    decoded_rmgrs: set[int] = set()
    counts = {"records": 0, "refs": 0, "continued": 0, "unfinished": 0, "events": 0,
              "crossing": 0}
    for i, path in enumerate(segments):
        parsed = wal.parse_segment_name(path.name, SEGMENT_SIZE)
        assert parsed is not None
        segno = parsed[1]
        data = path.read_bytes()
        found = wal.changes(data, segno, SEGMENT_SIZE)
        if found.unfinished_lsn is not None and i + 1 < len(segments):
            # with the next segment's bytes the record crossing into it is read whole, and
            # none that starts there
            after = segments[i + 1]
            joined = wal.changes(data, segno, SEGMENT_SIZE, after.read_bytes())
            pair, _, _ = _waldump(path, after)
            assert joined.unfinished_lsn is None and joined.records == found.records + 1
            assert joined.end_lsn == (segno + 1) * SEGMENT_SIZE
            assert [(r.spc, r.db, r.rel, r.fork, r.block) for r in joined.refs
                    if r.lsn == found.unfinished_lsn] == pair[found.unfinished_lsn]
            assert max(r.lsn for r in joined.refs) < (segno + 1) * SEGMENT_SIZE
            counts["crossing"] += 1
        assert found.undecoded == 0, path.name
        theirs, rmgrs, descs = _waldump(path)
        if found.unfinished_lsn is not None:  # goes on in the next segment: not read here
            theirs.pop(found.unfinished_lsn, None)
            assert max(theirs) < found.unfinished_lsn
        ours: dict[int, list[tuple]] = defaultdict(list)
        for ref in found.refs:
            ours[ref.lsn].append((ref.spc, ref.db, ref.rel, ref.fork, ref.block))
        assert found.records == len(theirs), path.name
        assert {k: v for k, v in ours.items()} == {k: v for k, v in theirs.items() if v}, \
            path.name
        seen_rmgrs |= {rmgrs[lsn] for lsn in theirs}
        wanted_lsns |= {lsn for lsn in theirs if rmgrs[lsn] in ("Storage", "Database",
                                                                   "Tablespace")}
        decoded_rmgrs |= {rmid for _, rmid, _, _ in found.main_data}
        counts["records"] += found.records
        counts["refs"] += len(found.refs)
        counts["continued"] += found.continued > 0
        counts["unfinished"] += found.unfinished_lsn is not None
        assert {lsn for lsn, rmid, _, _ in found.main_data if rmid != 1} == \
            {lsn for lsn in theirs if rmgrs[lsn] in ("Storage", "Database", "Tablespace")}
        by_lsn: dict[int, list[wal.FileEvent]] = defaultdict(list)
        for event in wal.file_events(found):
            by_lsn[event.lsn].append(event)
        assert {lsn: _our_event(e) for lsn, e in by_lsn.items()} == {
            lsn: _their_event(rmgrs[lsn], descs[lsn]) for lsn in theirs
            if rmgrs[lsn] in ("Storage", "Database", "Tablespace")}, path.name
        counts["events"] += len(by_lsn)
    print(f"{len(segments)} segments: {counts}")
    assert counts["refs"] > 100_000 and counts["continued"] and counts["crossing"]
    # the workload reached what the change map must understand
    assert {"Heap", "Heap2", "Btree", "Hash", "Gin", "XLOG", "Storage", "Database",
            "Tablespace", "Transaction"} <= seen_rmgrs
    assert wanted_lsns and {1, 2, 4, 5} <= decoded_rmgrs


@pytest.mark.parametrize("major", MATRIX)
def test_every_major_decodes_and_names_every_changed_block(major, area):
    """On each supported major (the image header's flags changed in 15): the records of
    UPDATEs of every row after a checkpoint, whose full-page images have holes, plain and
    compressed, decode, and name every page the table had."""
    pg = make_cluster(area, major)
    try:
        pg.execute("CREATE TABLE t (id int, v text) WITH (fillfactor = 50)")  # holes
        pg.execute("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
        pages = int(pg.scalar("SELECT pg_relation_size('t') / 8192"))
        relation = int(pg.scalar("SELECT pg_relation_filenode('t')"))
        database = int(pg.scalar("SELECT oid FROM pg_database WHERE datname = 'postgres'"))
        first = pg.scalar("SELECT pg_walfile_name(pg_switch_wal())")
        for compression in ("off", "on" if major < 15 else "pglz"):
            pg.execute(f"ALTER SYSTEM SET wal_compression = '{compression}'")
            pg.execute("SELECT pg_reload_conf()")
            pg.execute("CHECKPOINT")
            pg.execute("UPDATE t SET v = 'y'")  # every page's first change: an image
        # files changed without naming blocks: a table made, then cut to nothing by VACUUM;
        # a database created (copied file by file before 15, logged block by block after)
        # and dropped
        pg.execute("CREATE TABLE gone (x int)")
        gone = int(pg.scalar("SELECT pg_relation_filenode('gone')"))
        pg.execute("INSERT INTO gone SELECT generate_series(1, 1000)")
        pg.execute("DELETE FROM gone")
        pg.execute("VACUUM gone")
        pg.execute("CREATE DATABASE ev")
        ev = int(pg.scalar("SELECT oid FROM pg_database WHERE datname = 'ev'"))
        pg.execute("DROP DATABASE ev")
        last = pg.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())")
        pg.execute("SELECT pg_switch_wal()")
        named: set[int] = set()
        events: list[tuple] = []
        for path in sorted((pg.pgdata / "pg_wal").iterdir()):
            parsed = wal.parse_segment_name(path.name, SEGMENT_SIZE)
            if parsed is None or not first < path.name <= last:
                continue
            found = wal.changes(path.read_bytes(), parsed[1], SEGMENT_SIZE)
            assert found.undecoded == 0, f"PostgreSQL {major}: {path.name}"
            named |= {r.block for r in found.refs
                      if (r.db, r.rel, r.fork) == (database, relation, 0)}
            events += [(e.kind, e.spc, e.db, e.rel, e.fork, e.blocks)
                       for e in wal.file_events(found)]
        assert pages > 100 and set(range(pages)) <= named, f"PostgreSQL {major}"
        made = "database copy" if major < 15 else "database create"
        assert ("create", 1663, database, gone, 0, 0) in events, events
        assert ("truncate", 1663, database, gone, 0, 0) in events, events
        assert [e[:3] for e in events if e[0].startswith("database")] == [
            (made, 1663, ev), ("database drop", 1663, ev)], events
    finally:
        pg.stop()
