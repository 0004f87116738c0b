"""A vault written by a real backup follows docs/repository-format.md to the letter."""

from __future__ import annotations

import json
import math
import re
import struct

import blake3
import pytest
import zstandard
from conftest import make_vault

HEX = re.compile(r"^[0-9a-f]+$")
POINT_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
WAL_NAME = re.compile(r"^[0-9A-F]{24}$")


def _bound_hash_ok(sealed: bytes, key: bytes, vault_id: str, name: str) -> bool:
    """A version-2 plain seal: BLAKE3-keyed over magic, kind, vault id, the name's length
    (2 bytes, big-endian) and name, then the payload (docs, *Sealed objects*)."""
    binding = vault_id.encode() + struct.pack(">H", len(name)) + name.encode()
    return blake3.blake3(sealed[:9] + binding + sealed[41:], key=key).digest() == sealed[9:41]


def _hex(text: str, length: int) -> bool:
    return len(text) == length and bool(HEX.match(text))


@pytest.fixture(scope="module")
def written(source, module_area, cli_env):
    """A fresh vault holding one full backup of the source: (vault, result, config)."""
    vault = make_vault(cli_env, module_area / "vault")
    vault.add_server("src", source)
    result = vault.backup("src")
    config = json.loads((vault.path / "config").read_text())
    return vault, result, config


def test_config(written):
    _vault, _result, config = written
    assert set(config) == {"format", "vault_id", "created", "block_size", "id_hash", "id_key",
                           "region", "encryption"}
    assert config["encryption"] is None
    assert config["format"] == 1 and config["id_hash"] == "blake3-keyed"
    assert _hex(config["vault_id"], 32) and _hex(config["id_key"], 64)
    assert config["block_size"] % 8192 == 0 and config["block_size"] > 0
    assert config["region"] is None


def test_layout_and_tmp_is_empty(written):
    vault, _result, _config = written
    top = {p.name for p in vault.path.iterdir()}
    assert {"config", "data", "index", "manifests", "catalog.sqlite", "tmp"} <= top
    assert list((vault.path / "tmp").iterdir()) == []


def test_packs_and_index_files(written):
    vault, _result, config = written
    key = bytes.fromhex(config["id_key"])
    repo = vault.repository()
    packs = vault.pack_files()
    assert packs
    index_names = {p.name for p in (vault.path / "index").iterdir()}
    assert index_names == {p.name for p in packs}
    for pack in packs:
        assert _hex(pack.name, 32) and pack.parent.name == pack.name[:2]
        assert pack.parent.parent == vault.path / "data"
        data = pack.read_bytes()
        assert data[-8:] == b"DBSPACK1"
        (header_len,) = struct.unpack("<I", data[-12:-8])
        header = json.loads(zstandard.ZstdDecompressor().decompress(
            data[-12 - header_len:-12]))
        blobs = header["blobs"]
        sealed = (vault.path / "index" / pack.name).read_bytes()
        assert sealed[:9] == b"DBSAFE2\nI"
        assert _bound_hash_ok(sealed, key, config["vault_id"], f"index/{pack.name}")
        doc = json.loads(zstandard.ZstdDecompressor().decompress(sealed[41:]))
        assert doc == {"pack": pack.name, "blobs": blobs}
        assert repo.load_index_file(pack.name) == doc
        offset = 0
        for id_hex, off, length, raw_length, codec in blobs:
            assert off == offset, "blobs are back to back"
            offset += length
            blob = data[off:off + length]
            assert codec in (0, 1)
            raw = zstandard.ZstdDecompressor().decompress(blob) if codec == 1 else blob
            assert len(raw) == raw_length <= config["block_size"]
            assert blake3.blake3(raw, key=key).hexdigest() == id_hex
            if codec == 1:
                assert length < raw_length  # zstd only when it makes the block smaller
        assert offset == len(data) - 12 - header_len


def test_manifest(written):
    vault, result, config = written
    key = bytes.fromhex(config["id_key"])
    bs = config["block_size"]
    (path,) = list((vault.path / "manifests").iterdir())
    assert path.name == result["point_id"] and POINT_ID.match(path.name)
    sealed = path.read_bytes()
    assert sealed[:9] == b"DBSAFE2\nM"
    assert _bound_hash_ok(sealed, key, config["vault_id"], f"manifests/{path.name}")
    m = json.loads(zstandard.ZstdDecompressor().decompress(sealed[41:]))
    required = {"format", "point_id", "type", "copy_only", "instance", "start_time",
                "end_time", "start_lsn", "stop_lsn", "timeline", "backup_label",
                "tablespace_map", "tablespaces", "compression", "block_size", "entries",
                "wal", "stats"}
    assert required <= set(m) and "files" not in m
    # the file entries: in parts, each sealed, bound to its name, in path order
    parts = sorted((vault.path / "entries" / path.name).iterdir())
    assert [p.name for p in parts] == [f"{i:06d}" for i in range(m["entries"]["parts"])]
    m["files"] = []
    for part in parts:
        sealed_part = part.read_bytes()
        assert sealed_part[:9] == b"DBSAFE2\nF"
        assert _bound_hash_ok(sealed_part, key, config["vault_id"],
                              f"entries/{path.name}/{part.name}")
        doc = json.loads(zstandard.ZstdDecompressor().decompress(sealed_part[41:]))
        assert doc["format"] == 1 and doc["point_id"] == path.name
        assert doc["part"] == part.name and 0 < len(doc["files"]) <= 10_000
        m["files"] += doc["files"]
    assert len(m["files"]) == m["entries"]["files"]
    keys = [e["path"].split("/") for e in m["files"]]
    assert keys == sorted(keys) and len({e["path"] for e in m["files"]}) == len(keys)
    assert m["format"] == 1 and m["point_id"] == path.name
    assert m["type"] == "full" and m["copy_only"] is False
    assert {"server", "system_identifier", "pg_version", "pgdata"} <= set(m["instance"])
    assert m["instance"]["server"] == "src" and m["instance"]["pg_version"] == 15
    assert m["start_time"] <= m["end_time"]
    assert m["start_lsn"] == result["start_lsn"] and m["stop_lsn"] == result["stop_lsn"]
    assert f"START WAL LOCATION: {m['start_lsn']}" in m["backup_label"]
    assert m["block_size"] == bs and m["timeline"] == 1
    assert m["compression"]["codec"] == "zstd"
    assert m["tablespaces"] == []

    index = {}
    for f in (vault.path / "index").iterdir():
        for b in vault.repository().load_index_file(f.name)["blobs"]:
            index[b[0]] = b[3]
    for entry in m["files"] + m["wal"]:
        assert len(entry["blocks"]) == math.ceil(entry["size"] / bs), entry["path"]
        raw_ids = b"".join(bytes.fromhex(b) for b in entry["blocks"])
        assert entry["checksum"] == blake3.blake3(raw_ids, key=key).hexdigest()
        for i, b in enumerate(entry["blocks"]):
            assert b in index, f"{entry['path']}: block {i} is in no index file"
            assert index[b] == min(bs, entry["size"] - i * bs)
        assert "/" not in entry["path"] or not entry["path"].startswith("/")
    paths = {e["path"] for e in m["files"]}
    assert {"PG_VERSION", "global/pg_control", "postgresql.conf"} <= paths
    assert not any(p.startswith("pg_wal/") for p in paths)
    assert m["wal"] and all(WAL_NAME.match(w["path"]) for w in m["wal"])
    assert m["stats"]["files"] == len(m["files"])
    assert m["stats"]["bytes_read"] == result["bytes_read"] == \
        sum(e["size"] for e in m["files"] + m["wal"])
    assert m["stats"]["corrupt_pages"] == 0
