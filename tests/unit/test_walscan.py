"""The WAL segment scan, checked against PostgreSQL's own pg_waldump on real segments."""

from __future__ import annotations

import re
from datetime import datetime

from conftest import PG_BIN, as_postgres, new_cluster

from dbsafe.engines.postgres.wal import parse_lsn, parse_segment_name, scan

SEG = 16 << 20
XACT_LINE = re.compile(r"rmgr: Transaction .*lsn: ([0-9A-F]+/[0-9A-F]+).*desc: "
                       r"(COMMIT|ABORT) (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+)")
RESTORE_POINT = re.compile(r"desc: RESTORE_POINT (\S+)")


def _waldump(path) -> str:
    proc = as_postgres([str(PG_BIN / "pg_waldump"), str(path)])
    return proc.stdout + proc.stderr


def test_scan_matches_pg_waldump(pg_template, area):
    pg = new_cluster(pg_template, area)
    pg.execute("CREATE TABLE t (id int, v text)")
    for i in range(50):
        pg.execute("INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series(1, 200) g")
        if i == 25:
            pg.execute("SELECT pg_create_restore_point('halfway')")
    with pg.connect() as conn:  # an aborted transaction that wrote: an ABORT record
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (1, 'gone')")
        conn.execute("ROLLBACK")
    pg.execute("SELECT txid_current()")
    name = pg.scalar("SELECT pg_walfile_name(pg_switch_wal())")
    segments = sorted(p for p in (pg.pgdata / "pg_wal").iterdir()
                      if parse_segment_name(p.name, SEG) and p.name <= name)
    seen_xacts = 0
    seen_points = []
    for path in segments:
        _tli, segno = parse_segment_name(path.name, SEG)
        facts = scan(path.read_bytes(), segno, SEG)
        dump = _waldump(path)
        xacts = XACT_LINE.findall(dump)
        assert facts.xacts == len(xacts), path.name
        if xacts:
            # pg_waldump prints times with microseconds in the server's zone (UTC here)
            first = datetime.strptime(xacts[0][2].rsplit(" ", 1)[0], "%Y-%m-%d %H:%M:%S.%f")
            last = datetime.strptime(xacts[-1][2].rsplit(" ", 1)[0], "%Y-%m-%d %H:%M:%S.%f")
            assert facts.first_xact_time.replace(tzinfo=None) == first
            assert facts.last_xact_time.replace(tzinfo=None) == last
        seen_xacts += facts.xacts
        seen_points += [p["name"] for p in facts.restore_points]
        assert facts.end_lsn >= segno * SEG
        assert facts.end_lsn <= (segno + 1) * SEG
    assert seen_xacts >= 52  # 50 inserts, the abort, txid_current
    assert seen_points == ["halfway"]
    assert RESTORE_POINT.findall("".join(_waldump(p) for p in segments)) == ["halfway"]
    # the switched segment ends at its switch record: the next record starts after it
    last = scan((pg.pgdata / "pg_wal" / name).read_bytes(), parse_segment_name(name, SEG)[1], SEG)
    assert last.switched
    current = parse_lsn(pg.scalar("SELECT pg_current_wal_lsn()::text"))
    assert last.end_lsn <= current
