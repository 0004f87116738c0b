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


def _distinct_blocks(vault: Vault, manifest: dict) -> tuple[dict[str, list[str]],
                                                          dict[str, int]]:
    """Each distinct block id a restore of the point reads (a differential's and the base
    blocks it uses): the files using it, and its size."""
    used = combine.blocks_used(manifest, combine.load_base(vault.repo, manifest))
    return {k: paths for k, (_, paths) in used.items()}, {k: s for k, (s, _) in used.items()}


def verify_point(vault: Vault, manifest: dict, workers: int, on_bytes) -> dict:
    """Problems of one point: each damaged block with the files that use it."""
    try:
        users, sizes = _distinct_blocks(vault, manifest)
    except DbsafeError as exc:
        if exc.code != "point.base_missing":
            raise
        return {"point_id": manifest["point_id"], "blocks": 0, "ok": False,
                "problems": [{"block_id": None, "problem": "base_missing",
                              "reason": exc.message, "files": []}],
                "damaged_files": []}
    problems = []
    lock = threading.Lock()

    def check(id_hex: str) -> None:
        try:
            vault.repo.read_block(bytes.fromhex(id_hex))
        except BlockError as exc:
            with lock:
                problems.append({"block_id": id_hex, "problem": exc.kind, "reason": exc.reason,
                                 "files": sorted(set(users[id_hex]))})
        on_bytes(sizes[id_hex])

    run_parallel(workers, "dbsafe-verify", [(check, (id_hex,)) for id_hex in users])
    damaged_files = sorted({f for p in problems for f in p["files"]})
    return {"point_id": manifest["point_id"], "blocks": len(users), "ok": not problems,
            "problems": problems, "damaged_files": damaged_files}


def _expected_bytes(vault: Vault, manifest: dict) -> int:
    try:
        return sum(_distinct_blocks(vault, manifest)[1].values())
    except DbsafeError:
        return 0  # reported by verify_point


def _load_all(vault: Vault, name: str) -> tuple[list[dict], list[dict]]:
    """Every point's manifest, and a failed report for each one the format's rules refuse
    (a forged manifest is damage to report, not a reason to leave the others unchecked)."""
    manifests, refused = [], []
    for p in list_points(vault, name):
        try:
            manifests.append(load_point(vault, name, p["point_id"])[1])
        except DbsafeError as exc:
            if exc.code != "vault.manifest_invalid":
                raise
            refused.append({"point_id": p["point_id"], "blocks": 0, "ok": False,
                            "problems": [{"block_id": None, "problem": "manifest_invalid",
                                          "reason": exc.message, "files": []}],
                            "damaged_files": []})
    return manifests, refused


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
        manifests, refused = [load_point(vault, name, point_id)[1]], []
    else:
        manifests, refused = _load_all(vault, name)
    with Job(vault.catalog, "verify", name, on_progress) as job:
        t0 = time.perf_counter()
        job.expect(sum(_expected_bytes(vault, m) for m in manifests))
        reports = refused + [verify_point(vault, m, workers or vault.read_workers(),
                                          job.advance) for m in manifests]
        if deep:
            server = get_server(vault, name)
            by_id = {m["point_id"]: m for m in manifests}
            for report in reports:
                if report["ok"]:  # a damaged point is reported as such, not compared
                    report["live"] = live_check.compare_point(
                        vault, server, by_id[report["point_id"]],
                        workers or vault.read_workers(), job.advance)
        result = {"server": name, "points": reports, "ok": all(r["ok"] for r in reports),
                  "seconds": round(time.perf_counter() - t0, 3)}
        bad = [r for r in reports if not r["ok"]]
        if bad:
            # the databases the damage concerns: their health turns critical, no other's
            held = {m["point_id"]: m.get("databases") for m in manifests}
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
