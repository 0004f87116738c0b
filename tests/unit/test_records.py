"""vault/records.py: the documents as typed records, their bytes those of before, their shape
checked when read (docs/repository-format.md, *Record types*)."""

from __future__ import annotations

import json

import pytest
import zstandard

from dbsafe.core.errors import DbsafeError
from dbsafe.vault.format import KIND_MANIFEST, KIND_WAL
from dbsafe.vault.records import (
    Database,
    FileEntry,
    IndexFile,
    Instance,
    Manifest,
    Segment,
    WalRecord,
)
from dbsafe.vault.repository import Repository

ID = "ab" * 32
POINT = "20260101T000000Z-0123abcd"
SEGMENT = "000000010000000000000007"


def _log_manifest() -> Manifest:
    """As services/backup/log_backup.py builds one (its own key order)."""
    return Manifest.new(
        format=1, point_id=POINT, type="log", copy_only=False,
        instance=Instance.new(server="s", system_identifier="1", pg_version=15,
                              pgdata="/srv/pg"),
        start_time="2026-01-01T00:00:00.000+00:00", end_time="2026-01-01T00:01:00.000+00:00",
        start_lsn="0/1000000", stop_lsn="0/2000000", timeline=1,
        segments=[SEGMENT], files=[], wal=[], dirs=[], tablespaces=[],
        stats={"bytes_read": 1, "bytes_stored": 0, "files": 0, "corrupt_pages": 0},
        corrupt_pages=[], retention=None)


def _literal() -> dict:
    """The same manifest as the dict literal of before."""
    return {
        "format": 1, "point_id": POINT, "type": "log", "copy_only": False,
        "instance": {"server": "s", "system_identifier": "1", "pg_version": 15,
                     "pgdata": "/srv/pg"},
        "start_time": "2026-01-01T00:00:00.000+00:00",
        "end_time": "2026-01-01T00:01:00.000+00:00",
        "start_lsn": "0/1000000", "stop_lsn": "0/2000000", "timeline": 1,
        "segments": [SEGMENT], "files": [], "wal": [], "dirs": [], "tablespaces": [],
        "stats": {"bytes_read": 1, "bytes_stored": 0, "files": 0, "corrupt_pages": 0},
        "corrupt_pages": [], "retention": None}


def test_a_record_writes_the_bytes_of_the_dict_it_replaces():
    record = _log_manifest()
    assert record.to_json() == json.dumps(_literal(), separators=(",", ":")).encode()
    assert list(record) == list(_literal())
    assert record == _literal() and record.as_dict() == _literal()


def test_a_sealed_record_is_the_sealed_dict(tmp_path):
    repo = Repository.init(tmp_path / "v")
    sealed = repo.keyed.seal(KIND_MANIFEST, _log_manifest(), f"manifests/{POINT}")
    assert sealed == repo.keyed.seal(KIND_MANIFEST, _literal(), f"manifests/{POINT}")
    payload = zstandard.ZstdDecompressor().decompress(sealed[41:])
    assert payload == _log_manifest().to_json()


def test_the_repository_hands_out_records(tmp_path):
    repo = Repository.init(tmp_path / "v")
    with repo.writing("test"):
        repo.save_manifest(_log_manifest())
        repo.save_wal_record("1", WalRecord.new(
            format=1, name=SEGMENT, size=3, blocks=[ID], checksum="00", mtime=1.5,
            archived="2026-01-01T00:00:00.000+00:00", server="s",
            segment=Segment.new(timeline=1, segno=7, segment_size=16 << 20)))
    manifest = repo.load_manifest_whole(POINT)
    assert isinstance(manifest, Manifest) and manifest == _literal()
    assert manifest.instance.system_identifier == "1" and manifest.type == "log"
    record = repo.load_wal_record("1", SEGMENT)
    assert isinstance(record, WalRecord) and record.segment.segno == 7
    assert record.segment["segno"] == 7 and record.blocks == [ID] and record.server == "s"


@pytest.mark.parametrize("change, reason", [
    (lambda d: d.update(files="x"), "'files' is not a list"),
    (lambda d: d.pop("wal"), "has no 'wal'"),
    (lambda d: d.update(timeline="1"), "'timeline' is not an integer"),
    (lambda d: d.update(type="weekly"), "'type' is not"),
    (lambda d: d["instance"].pop("system_identifier"), "instance has no"),
    (lambda d: d.update(stats={"bytes_read": 1}), "'stats' is not"),
    (lambda d: d.update(files=[{"path": "f"}]), "without a list of blocks"),
    (lambda d: d.update(databases=[{"name": "x", "included": "yes"}]), "'included'"),
])
def test_a_manifest_of_the_wrong_shape_is_refused_as_corrupt(change, reason, tmp_path):
    doc = _literal()
    change(doc)
    with pytest.raises(DbsafeError) as caught:
        Manifest.parse(doc, f"manifests/{POINT}")
    assert caught.value.code == "vault.object_corrupt" and reason in str(caught.value)
    with pytest.raises(ValueError):
        Manifest.new(**doc)


def test_a_wal_record_of_the_wrong_shape_is_refused_as_corrupt(tmp_path):
    repo = Repository.init(tmp_path / "v")
    with repo.writing("test"):
        repo.save_wal_record("1", {"name": SEGMENT, "blocks": "x"})
    with pytest.raises(DbsafeError) as caught:
        repo.load_wal_record("1", SEGMENT)
    assert caught.value.code == "vault.object_corrupt"
    assert WalRecord.problem({"name": SEGMENT, "blocks": [], "segment": {"timeline": 1}})
    assert repo.keyed.unseal(KIND_WAL, repo.storage.get(f"wal/1/{SEGMENT}"),
                             f"wal/1/{SEGMENT}")["blocks"] == "x"


def test_older_documents_lacking_later_keys_are_read():
    doc = {k: v for k, v in _literal().items() if k != "retention"}
    doc["databases"] = [{"name": "template1", "oid": 1, "included": True}]
    doc["future_key"] = {"kept": True}
    manifest = Manifest.parse(doc, f"manifests/{POINT}")
    assert manifest.retention is None and manifest.databases[0].template is True
    assert manifest["future_key"] == {"kept": True}
    assert Database(doc["databases"][0]).template is True


def test_file_entries_and_index_files():
    entry = FileEntry.new(path="PG_VERSION", size=3, mode=0o600, mtime=1.0, blocks=[ID],
                          checksum="00")
    assert list(entry) == ["path", "size", "mode", "mtime", "blocks", "checksum"]
    assert entry.delta is None and entry.blocks == [ID]
    index = IndexFile.new(pack="p" * 32, blobs=[[ID, 0, 10, 10, 0]])
    assert index.blobs[0].length == 10 and index.key is None
    assert IndexFile.parse_in(dict(index), "index/x", 1 << 20, False) == index
    with pytest.raises(DbsafeError, match="out of bounds"):
        IndexFile.parse_in({"pack": "p", "blobs": [[ID, 0, 10, 9, 0]]}, "index/x", 1 << 20,
                           False)
    with pytest.raises(DbsafeError, match="data key is missing"):
        IndexFile.parse_in(dict(index), "index/x", 1 << 20, True)
