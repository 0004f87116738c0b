"""Synthetic fulls: a full built from the previous full plus the pages the WAL says changed.

A weekly full of a 2 TB instance re-reads 2 TB that has mostly not changed. When a change
map covers everything since the previous full started (docs/change-map.md), dbsafe reads
what a differential would, and writes a manifest that lists every file as a full's does:
the previous full's blocks, with the pages read now as one more layer over them
(docs/repository-format.md, *Synthetic fulls*). It names blocks, never its source point,
so it is restorable on its own and outlives its source. Tracking has to be right for that
to hold, so a full that reads every byte still comes every ``read_full_weeks`` weeks
(docs/policies.md), and ``verify --deep`` compares a point with the live files.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dbsafe.policy.model import Policy
from dbsafe.vault.records import FileEntry, Manifest, layered_blocks

# Syntheses in a row before a full is read: each adds a layer a restore writes over the
# read blocks, and a layer's blocks are read whole for the pages it still holds.
MAX_LAYERS = 16


def read_reason(source: dict | None, policy: Policy | None, now: datetime,
                server: dict) -> str | None:
    """Why a full of ``server`` must read every file rather than be built from ``source``
    (the latest full holding its databases; None: there is none). None: it may be built,
    if a change map covers the range (the caller finds out)."""
    if source is None:
        return "no full holds every database this one will hold"
    if policy is not None and not policy.synthetic_full:
        return f"policy {policy.name} has synthetic_full off"
    if server.get("needs_full"):
        return server["needs_full"]
    build = Manifest(source).build
    weeks = policy.read_full_weeks if policy is not None else Policy("default").read_full_weeks
    read_time = datetime.fromisoformat(build.get("read_time") or source["start_time"])
    if now - read_time >= timedelta(weeks=weeks):
        read_full = build.get("read_full", source["point_id"])
        return (f"the last full that read every file ({read_full}) started "
                f"{(now - read_time).days} days ago; a full is read every {weeks} week(s)")
    if build.get("layers", 0) >= MAX_LAYERS:
        return f"{MAX_LAYERS} synthetic fulls in a row since the last read one"
    return None


def build_of(source: dict) -> dict:
    """The ``build`` of a full made from ``source``."""
    was = Manifest(source).build
    if was["kind"] == "synthetic":
        return {"kind": "synthetic", "source": source["point_id"],
                "read_full": was["read_full"], "read_time": was["read_time"],
                "layers": was["layers"] + 1}
    return {"kind": "synthetic", "source": source["point_id"],
            "read_full": source["point_id"], "read_time": source["start_time"], "layers": 1}


def entry(repo, e: FileEntry, under: dict | None, block_size: int) -> FileEntry:
    """A full's entry from a differential's (``e``, against the source full whose entry of
    the same path is ``under``): a delta becomes the source file's read blocks and layers,
    plus the pages read now as a new layer; a file read whole stays as it is."""
    delta = e.get("delta")
    if delta is None:
        return e
    assert under is not None  # a delta has a base entry
    if not delta["pages"] and e["size"] == under["size"]:  # the source's file as it was
        return FileEntry({**under, "mode": e["mode"], "mtime": e["mtime"]})
    read, old = layered_blocks(under)
    layers = [dict(layer) for layer, _ in old]
    blocks = read[:-(-e["size"] // block_size)] + under["blocks"][len(read):]
    if delta["pages"]:
        layers.append({"pages": delta["pages"], "block_pages": delta["block_pages"]})
        blocks += e["blocks"]
    return FileEntry.new(
        path=e["path"], size=e["size"], mode=e["mode"], mtime=e["mtime"], blocks=blocks,
        checksum=repo.file_checksum([bytes.fromhex(b) for b in blocks]), layers=layers)
