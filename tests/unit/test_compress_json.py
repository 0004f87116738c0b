"""A sealed object's JSON is compressed in pieces (vault/format.compress_json): the frame
must hold the bytes the whole document's ``json.dumps`` gives, and declare their size."""

from __future__ import annotations

import json
import tracemalloc

import zstandard

from dbsafe.vault.format import compress_json


def _manifest(files: int) -> dict:
    return {"format": 1, "point_id": "p",
            "files": [{"path": f"base/1/{i}", "size": 8192, "mode": 0o600, "mtime": 1.5,
                       "blocks": ["ab" * 32], "checksum": "cd" * 32, "note": "é\u0000\""}
                      for i in range(files)],
            "between": {"nested": [1, 2]},
            "wal": [{"path": f"{i:024X}"} for i in range(2001)], "last": None}


def test_the_frame_holds_the_whole_documents_json_and_declares_its_size():
    for files in (0, 1999, 2000, 2001, 4500):
        doc = _manifest(files)
        whole = json.dumps(doc, separators=(",", ":")).encode()
        frame = compress_json(doc)
        assert zstandard.frame_content_size(frame) == len(whole)
        assert zstandard.ZstdDecompressor().decompress(frame) == whole


def test_the_json_is_never_held_whole():
    doc = _manifest(60_000)  # ~11 MB of JSON
    size = len(json.dumps(doc, separators=(",", ":")))
    tracemalloc.start()
    try:
        compress_json(doc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size / 3, (peak, size)
