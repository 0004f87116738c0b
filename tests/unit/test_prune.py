"""Which WAL files pruning treats as belonging to a segment (no cluster needed)."""

from __future__ import annotations

from dbsafe.services.lifecycle.prune import _segment_of

SEG = 16 << 20


def test_segment_partial_and_backup_history_files_belong_to_their_segment():
    assert _segment_of("000000020000000100000003", SEG) == (2, 0x100 + 3)
    assert _segment_of("000000020000000100000003.partial", SEG) == (2, 0x100 + 3)
    assert _segment_of("000000020000000100000003.00000028.backup", SEG) == (2, 0x100 + 3)
    assert _segment_of("00000002.history", SEG) is None
    assert _segment_of("000000020000000100000003.00000028.bak", SEG) is None
