"""LSN text and WAL segment names, checked against PostgreSQL's own functions."""

from __future__ import annotations

import pytest

from dbsafe.engines.postgres.wal import format_lsn, parse_lsn, wal_segment_name

LSNS = ["0/1", "0/6000028", "0/FFFFFFF", "1/0", "1/2A", "A/FF000010", "FF/FFFFFFFF"]


@pytest.mark.parametrize("text", LSNS)
def test_lsn_round_trip(text):
    assert format_lsn(parse_lsn(text)) == text


def test_parse_lsn_value():
    assert parse_lsn("1/2A") == (1 << 32) + 0x2A
    assert parse_lsn("0/6000028") == 0x6000028


def test_wal_segment_names_match_postgres(source):
    timeline = source.scalar("SELECT timeline_id FROM pg_control_checkpoint()")
    seg = int(source.scalar("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"))
    for text in [t for t in LSNS if parse_lsn(t) % seg]:
        # pg_walfile_name puts an LSN on a segment boundary in the previous segment (it is
        # the end of that one); every LSN here is inside a segment.
        expected = source.scalar("SELECT pg_walfile_name(%s::pg_lsn)", params=(text,))
        assert wal_segment_name(timeline, parse_lsn(text), seg) == expected, text
    assert wal_segment_name(3, parse_lsn("1/2A"), 16 << 20) == "000000030000000100000000"
    assert wal_segment_name(1, parse_lsn("0/3000001"), 64 << 20) == \
        "000000010000000000000000"
