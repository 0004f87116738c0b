"""Synthetic fulls without a cluster: the entries a synthesis writes (services/backup/
synthetic.py) read back through the restore's reading (services/restore/combine.py) give
the bytes the file had, through layers that replace each other's pages, cuts, and a
differential on top; and the rules that make a full read every file instead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbsafe.policy.model import Policy
from dbsafe.services.backup import synthetic
from dbsafe.services.restore.combine import file_writes
from dbsafe.vault.records import FileEntry

PAGE = 8192
BS = 4 * PAGE  # four pages a block, so that files span several blocks
PATH = "base/1/100"


class Store:
    """Blocks by id, and ``file_checksum`` as a repository has it."""

    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        id_hex = f"{len(self.blocks):064x}"
        self.blocks[id_hex] = data
        return id_hex

    def file_checksum(self, ids: list[bytes]) -> str:
        return "00" * 32


def page(tag: int) -> bytes:
    return bytes([tag]) * PAGE


def whole(store: Store, data: bytes) -> dict:
    blocks = [store.put(data[i:i + BS]) for i in range(0, len(data), BS)]
    return FileEntry.new(path=PATH, size=len(data), mode=0o600, mtime=1.0, blocks=blocks,
                         checksum="00")


def delta(store: Store, size_pages: int, pages: dict[int, bytes]) -> dict:
    """A differential's entry storing ``pages`` (page number → bytes)."""
    runs: list[list[int]] = []
    for p in sorted(pages):
        if runs and runs[-1][0] + runs[-1][1] == p:
            runs[-1][1] += 1
        else:
            runs.append([p, 1])
    data = b"".join(pages[p] for p in sorted(pages))
    blocks = [store.put(data[i:i + BS]) for i in range(0, len(data), BS)]
    return FileEntry.new(path=PATH, size=size_pages * PAGE, mode=0o600, mtime=2.0,
                         blocks=blocks, checksum="00",
                         delta={"pages": runs,
                                "block_pages": [len(store.blocks[b]) // PAGE for b in blocks]})


def synthesize(store: Store, copied: list[dict], source: dict) -> list[dict]:
    """A synthetic full's entries from a differential's against ``source``."""
    under_of = {e["path"]: e for e in source["files"]}
    return [synthetic.entry(store, e, under_of.get(e["path"]), BS) for e in copied]


def manifest(entries: list[dict], type: str = "full", **more) -> dict:
    return {"point_id": "20260101T000000Z-0123abcd", "type": type, "block_size": BS,
            "start_time": datetime.now(UTC).isoformat(), "files": entries, "wal": [], **more}


def restored(store: Store, point: dict, base: dict | None = None) -> bytes:
    """The file as a restore writes it: pre-sized, blocks, then the page writes."""
    (entry,) = file_writes(point, base)
    out = bytearray(entry["size"])
    used = entry.get("blocks_size", entry["size"])
    for i, id_hex in enumerate(entry["blocks"]):
        data = store.blocks[id_hex][:max(0, min(BS, used - i * BS))]
        out[i * BS:i * BS + len(data)] = data
    offsets = [w[0] for _, writes in entry.get("pages", ()) for w in writes]
    assert len(offsets) == len(set(offsets)), "two writes at one offset: order would matter"
    for id_hex, writes in entry.get("pages", ()):
        for file_offset, at, length in writes:
            out[file_offset:file_offset + length] = store.blocks[id_hex][at:at + length]
    return bytes(out[:entry["size"]])


def test_layers_cuts_and_a_differential_on_top_restore_the_file_as_it_was():
    store = Store()
    pages = [page(i + 1) for i in range(8)]
    read = manifest([whole(store, b"".join(pages))])
    assert restored(store, read) == b"".join(pages)

    # synthesis 1: pages 1, 5 and 6 changed
    changed = {1: page(0x21), 5: page(0x25), 6: page(0x26)}
    s1 = manifest(synthesize(store, [delta(store, 8, changed)], read),
                  build=synthetic.build_of(read))
    (entry,) = s1["files"]
    assert len(entry["layers"]) == 1 and len(entry["blocks"]) == 3
    now = [changed.get(i, p) for i, p in enumerate(pages)]
    assert restored(store, s1) == b"".join(now)

    # synthesis 2: the file cut to 6 pages, page 5 changed again (page 6 of layer 1 now
    # lies past the end)
    s2 = manifest(synthesize(store, [delta(store, 6, {5: page(0x35)})], s1),
                  build=synthetic.build_of(s1))
    (entry,) = s2["files"]
    assert len(entry["layers"]) == 2 and s2["build"]["layers"] == 2
    assert s2["build"]["read_full"] == read["point_id"]
    now = now[:5] + [page(0x35)]
    assert restored(store, s2) == b"".join(now)

    # a differential on the synthetic full: extended to 9 pages, pages 2 and 6-8 stored
    more = {2: page(0x42), 6: page(0x46), 7: page(0x47), 8: page(0x48)}
    diff = manifest([delta(store, 9, more)], type="diff")
    now = [more.get(i, p) for i, p in enumerate(now + [b"", b"", b""])]
    assert restored(store, diff, s2) == b"".join(now)

    # synthesis 3 with nothing changed: the source's entry as it was
    s3 = manifest(synthesize(store, [delta(store, 6, {})], s2))
    assert s3["files"][0]["blocks"] == s2["files"][0]["blocks"]
    assert s3["files"][0]["layers"] == s2["files"][0]["layers"]


def test_a_file_cut_without_a_page_changed_keeps_only_its_read_blocks_below_the_cut():
    store = Store()
    pages = [page(i + 1) for i in range(8)]
    read = manifest([whole(store, b"".join(pages))])
    s1 = manifest(synthesize(store, [delta(store, 3, {})], read))
    (entry,) = s1["files"]
    assert entry["layers"] == [] and len(entry["blocks"]) == 1
    assert restored(store, s1) == b"".join(pages[:3])


def _source(read_time: datetime, layers: int | None = None) -> dict:
    doc = {"point_id": "20260101T000000Z-0123abcd", "start_time": read_time.isoformat()}
    if layers is not None:
        doc["build"] = {"kind": "synthetic", "source": "x", "read_full": "y",
                        "read_time": read_time.isoformat(), "layers": layers}
    return doc


def test_a_full_reads_every_file_when_the_rules_say_so():
    now = datetime.now(UTC)
    policy = Policy("p")
    fine = _source(now - timedelta(days=20), layers=3)
    assert synthetic.read_reason(fine, policy, now, {}) is None
    assert synthetic.read_reason(_source(now - timedelta(days=1)), None, now, {}) is None
    assert "no full holds" in synthetic.read_reason(None, policy, now, {})
    assert "synthetic_full off" in synthetic.read_reason(
        fine, policy.with_changes(synthetic_full=False), now, {})
    assert synthetic.read_reason(fine, policy, now, {"needs_full": "an overwrite restore"}) \
        == "an overwrite restore"
    old = synthetic.read_reason(_source(now - timedelta(weeks=4)), policy, now, {})
    assert old is not None and "every 4 week(s)" in old and "28 days ago" in old
    weekly = policy.with_changes(read_full_weeks=2)
    assert "every 2 week(s)" in synthetic.read_reason(fine, weekly, now, {})
    assert "16 synthetic fulls in a row" in synthetic.read_reason(
        _source(now - timedelta(days=1), layers=synthetic.MAX_LAYERS), policy, now, {})


def test_the_policy_checks_its_synthetic_settings():
    from dbsafe.policy.model import violations

    assert not violations(Policy("p"))
    assert any("read_full_weeks must be 1 to 52" in v
               for v in violations(Policy("p", read_full_weeks=0)))
    assert any("synthetic_full must be on or off" in v
               for v in violations(Policy("p", synthetic_full="yes")))  # type: ignore[arg-type]


def test_verify_deep_counts_a_file_dropped_since_the_walk_and_goes_on(tmp_path):
    """``verify --deep`` lists the live files, then reads them: one dropped in between (a
    table dropped while it runs) is counted as gone, not an error."""
    import threading
    from types import SimpleNamespace

    from dbsafe.engines.base import SourceFile
    from dbsafe.services.restore import live_check
    from dbsafe.vault.repository import Repository

    repo = Repository.init(tmp_path / "vault")
    gone = SourceFile(PATH, str(tmp_path / "dropped"), 8 * PAGE, 0o600, 1.0, paged=True)
    tally = live_check._Tally()
    live_check._compare_file(SimpleNamespace(repo=repo), {"path": PATH, "size": 8 * PAGE,
                                                          "blocks": []},
                             gone, 1 << 40, True, tally, threading.Lock(), lambda n: None)
    assert tally.files_gone_since == 1 and tally.files == 0 and tally.differ_count == 0
