"""Re-read every block of a recovery point (a differential: and its base blocks it uses) and
check it against its id; with ``deep``, compare its pages with the live files' too."""

from __future__ import annotations

import json
import threading
import time

from dbsafe.core.concurrency import run_parallel
from dbsafe.core.errors import DbsafeError
from dbsafe.services.activity.jobs import Job, ProgressFn
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.lifecycle.points import list_points, load_point
from dbsafe.services.restore import combine, live_check
from dbsafe.vault.repository import BlockError


def verify_point(vault: Vault, manifest: dict, workers: int, on_bytes,
                 expect=lambda n: None) -> dict:
    """Problems of one point: each damaged block with the files that use it. Its entries
    are read once for the distinct blocks (``expect`` is told their bytes) and, when one is
    damaged, once more for the files using it: nothing is held per file."""
    try:
        base = combine.load_base(vault.repo, manifest)
        sizes = combine.blocks_used(manifest, base)
    except DbsafeError as exc:
        if exc.code != "point.base_missing":
            raise
        return _refused(manifest["point_id"], exc)
    expect(sum(sizes.values()))
    problems: list[dict] = []
    lock = threading.Lock()

    def check(id_hex: str) -> None:
        try:
            vault.repo.read_block(bytes.fromhex(id_hex))
        except BlockError as exc:
            with lock:
                problems.append({"block_id": id_hex, "problem": exc.kind, "reason": exc.reason,
                                 "files": []})
        on_bytes(sizes[id_hex])

    run_parallel(workers, "dbsafe-verify", ((check, (id_hex,)) for id_hex in sizes))
    if problems:
        users = combine.files_using(manifest, combine.load_base(vault.repo, manifest),
                                    {p["block_id"] for p in problems})
        for p in problems:
            p["files"] = sorted(set(users.get(p["block_id"], ())))
    damaged_files = sorted({f for p in problems for f in p["files"]})
    return {"point_id": manifest["point_id"], "blocks": len(sizes), "ok": not problems,
            "problems": problems, "damaged_files": damaged_files}


def _refused(point_id: str, exc: DbsafeError) -> dict:
    """The report of a point whose manifest (or base) cannot be restored as it is."""
    problem = "base_missing" if exc.code == "point.base_missing" else "manifest_invalid"
    return {"point_id": point_id, "blocks": 0, "ok": False,
            "problems": [{"block_id": None, "problem": problem, "reason": exc.message,
                          "files": []}],
            "damaged_files": []}


def _verified(vault: Vault, manifest: dict, workers: int, job: Job, alone: bool) -> dict:
    """``verify_point``; a point whose entries in parts break the format's rules (found as
    they are read) is reported as refused among others, raised when verified ``alone``."""
    try:
        return verify_point(vault, manifest, workers, job.advance, job.expect)
    except DbsafeError as exc:
        if exc.code != "vault.manifest_invalid" or alone:
            raise
        return _refused(manifest["point_id"], exc)


def _readable(vault: Vault, name: str) -> tuple[list[str], list[dict]]:
    """The points whose manifests are readable (each is loaded again as it is verified:
    one held at a time), and a failed report for each one the format's rules refuse (a
    forged manifest is damage to report, not a reason to leave the others unchecked)."""
    readable, refused = [], []
    for p in list_points(vault, name):
        try:
            load_point(vault, name, p["point_id"])
            readable.append(p["point_id"])
        except DbsafeError as exc:
            if exc.code != "vault.manifest_invalid":
                raise
            refused.append(_refused(p["point_id"], exc))
    return readable, refused


def run_verify(vault: Vault, name: str, point_id: str | None = None,
               workers: int | None = None, on_progress: ProgressFn | None = None,
               deep: bool = False) -> dict:
    """Verify one point, or every point of ``name``; raises verify.failed when any is damaged.
    ``deep``: each point's relation pages are also compared with the live files' pages the
    server has not changed since the point started (services/restore/live_check.py): a
    point whose blocks are intact but whose pages differ fails with ``verify.live_differs``.

    The report is attached to the error (``details['report']``) so --json can still print it.
    """
    refused: list[dict]
    if point_id:
        load_point(vault, name, point_id)  # a point refused before any job is recorded
        point_ids, refused = [point_id], []
    else:
        point_ids, refused = _readable(vault, name)
    held: dict[str, list | None] = {}  # each point's databases
    with Job(vault.catalog, "verify", name, on_progress) as job:
        t0 = time.perf_counter()
        server = get_server(vault, name) if deep else None
        reports = list(refused)
        for one in point_ids:  # one manifest held at a time, its entries read as it goes
            manifest = load_point(vault, name, one)[1]
            held[one] = manifest.get("databases")
            # its bytes are expected as its blocks are known: its entries are read for
            # them once, not once more beforehand
            report = _verified(vault, manifest, workers or vault.read_workers(), job,
                               alone=point_id is not None)
            if server is not None and report["ok"]:  # a damaged point is not compared
                report["live"] = live_check.compare_point(
                    vault, server, manifest, workers or vault.read_workers(), job.advance)
            reports.append(report)
            del manifest
        result = {"server": name, "points": reports, "ok": all(r["ok"] for r in reports),
                  "seconds": round(time.perf_counter() - t0, 3)}
        bad = [r for r in reports if not r["ok"]]
        if bad:
            # the databases the damage concerns: their health turns critical, no other's
            if all(held.get(r["point_id"]) is not None for r in bad):
                vault.catalog.update_job(job.id, items=json.dumps(sorted(
                    {d["name"] for r in bad for d in held[r["point_id"]] or () if d["included"]})))
            err = DbsafeError("verify.failed", point_id=", ".join(r["point_id"] for r in bad),
                              problems=sum(len(r["problems"]) for r in bad),
                              files=len({f for r in bad for f in r["damaged_files"]}))
            err.report = result
            raise err
        differ = [r for r in reports if not r.get("live", {"ok": True})["ok"]]
        if differ:
            result["ok"] = False
            err = DbsafeError("verify.live_differs", name=name,
                              point_id=", ".join(r["point_id"] for r in differ),
                              pages=sum(r["live"]["pages_differ"] for r in differ))
            err.report = result
            raise err
        job.finish(result)
        return result
