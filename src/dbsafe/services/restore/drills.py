"""Restore drills: prove that the newest backup restores, and measure how long it takes.

A drill restores the newest restorable state of a server (with the log chain: its newest
instant; else its newest backup; from a base that leaves out no protected database when one
exists) into a scratch cluster on this server, starts it, checks it (connections, every
protected database is there and answers, row counts against those taken at backup time,
optionally amcheck), records RTO (restore + recovery seconds) and RPO (age of the restored
instant when the drill started), and always removes the scratch cluster. See docs/drills.md.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import make_dir, make_path, open_dir
from dbsafe.core.stamps import utcnow
from dbsafe.engines.postgres import checks as pgchecks
from dbsafe.engines.postgres import restore as layout
from dbsafe.engines.postgres import scratch, stats, wal
from dbsafe.engines.postgres.client import connect
from dbsafe.services.activity.jobs import Job, failure, job_alive, running_job
from dbsafe.services.backup import selection
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.lifecycle import coverage, manifest_checks
from dbsafe.services.lifecycle.points import lineage_points, load_point
from dbsafe.services.logchain.chain import BASE_TYPES, log_chain
from dbsafe.services.restore.instance import run_restore
from dbsafe.services.restore.pitr import RecoveryPlan, plan_recovery
from dbsafe.services.restore.targets import name_problem

DEFAULT_SCRATCH_ROOT = Path("/var/tmp/dbsafe-drills")
MAX_LISTED = 20     # tables named in a message
MAX_STORED = 1000   # tables listed in a check's details


@dataclass
class Target:
    """What a drill restores: a base point, recovered by ``plan`` when there is one."""
    point_id: str
    plan: RecoveryPlan | None
    instant: str          # the restored instant (what RPO is measured from)
    label: str


@dataclass
class Drill:
    id: str
    name: str
    checks: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def record(self, name: str, ok: bool | None, **details: object) -> dict:
        check = {"name": name, "ok": ok, **details}
        self.checks.append(check)
        return check

    def fail(self, check: str, reason: str, **details: object) -> DbsafeError:
        self.record(check, False, reason=reason, **details)
        return DbsafeError("drill.check_failed", drill_id=self.id, name=self.name,
                           check=check, reason=reason)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def choose_target(vault: Vault, server: dict, point_id: str | None = None) -> Target:
    """The newest restorable state, or the point given (a log point: recovered to it). Its
    base leaves out none of the databases the instance's backups hold when one such exists
    (a backup taken with --db is not the newest state of the others)."""
    name = server["name"]
    if point_id is not None:
        _, manifest = load_point(vault, name, point_id)
        if manifest["type"] == "log":
            plan = plan_recovery(vault, server, log_point=manifest)
            return Target(plan.base_point, plan, manifest["end_time"], f"log point {point_id}")
        return Target(point_id, None, manifest["end_time"], f"point {point_id}")
    points = lineage_points(vault, server)
    bases = [p for p in points if p["type"] in BASE_TYPES]
    newest = coverage.newest(bases, coverage.instance_databases(vault, server)) or \
        coverage.newest(bases, ())
    if (server["recovery_model"] or "SIMPLE") == "FULL":
        ranges = log_chain(vault, server, points).ranges()
        end = max(ranges, key=lambda r: _time(r["end_time"]), default=None)
        if end is not None and (newest is None or
                                _time(end["end_time"]) > _time(newest["end_time"])):
            # All the WAL of the newest run: recovery replays it to its end (its last
            # commit, end_time), as a restore of a log point does.
            plan = plan_recovery(vault, server, log_point={
                "point_id": "(end of the log chain)", "stop_lsn": end["end_lsn"]})
            return Target(plan.base_point, plan, end["end_time"],
                          f"the end of the log chain ({end['end_lsn']}, timeline "
                          f"{end['timeline']})")
    if newest is None:
        raise DbsafeError("drill.no_point", name=name)
    return Target(newest["point_id"], None, newest["end_time"], f"point {newest['point_id']}")


def scratch_folder(root: Path | None) -> Path:
    """The scratch root, created if missing; refused when someone else could own it (it
    sits in a world-writable folder by default)."""
    root = Path(os.path.abspath(root or DEFAULT_SCRATCH_ROOT))
    problem = name_problem(str(root))
    if problem:  # the drill's data directory is below it, and pg_ctl's shell reads that
        raise DbsafeError("drill.scratch_unsafe", path=root, reason=problem)
    make_path(root, 0o755)
    if root.is_symlink() or not root.is_dir():
        raise DbsafeError("drill.scratch_unsafe", path=root, reason="not a plain folder")
    owner = root.stat().st_uid
    if owner not in (0, os.geteuid()):
        raise DbsafeError("drill.scratch_unsafe", path=root,
                          reason=f"owned by uid {owner}, not by root or this user")
    return root


def _sweep(vault: Vault, root: Path, bin_dir: str) -> list[str]:
    """Remove the scratch folders of this vault's drills whose process died (killed, power
    loss); folders of running drills, or of other vaults' drills, are left alone, and so
    are an agent's folders of drills it may not look up (another agent's on this host)."""
    removed = []
    for child in root.iterdir():
        try:
            job = vault.catalog.get_job(child.name) if child.name.startswith("drill-") \
                else None
        except DbsafeError as exc:
            if exc.code != "agent.out_of_scope":
                raise
            continue
        if job is None or (job["state"] == "running" and job_alive(job)):
            continue
        scratch.destroy(child, bin_dir, _owner_of(child / "pgdata"))
        removed.append(child.name)
    return removed


def _owner_of(pgdata: Path) -> str:
    """Who a stale scratch cluster ran as (root never: its folder was not handed over)."""
    try:
        uid = pgdata.lstat().st_uid
        return pwd.getpwuid(uid).pw_name if uid != 0 else "postgres"
    except (OSError, KeyError):
        return "postgres"


def run_drill(vault: Vault, name: str, point_id: str | None = None, *, amcheck: bool = False,
              scratch_root: Path | None = None) -> dict:
    """Run one drill of server ``name`` as a job of type "drill"; returns its row (also in
    the ``drills`` table, id = job id). A failed check raises ``drill.check_failed`` naming
    it (the job and the row say failed); the scratch cluster is removed in every case."""
    server = get_server(vault, name)
    busy = running_job(vault.catalog, "drill", name)
    if busy:
        raise DbsafeError("drill.already_running", name=name, job_id=busy["id"])
    target = choose_target(vault, server, point_id)
    _, manifest = load_point(vault, name, target.point_id)
    for _entry in manifest_checks.files(manifest):  # a forged entry refuses the drill
        pass  # before its scratch folder is made
    owner = manifest["instance"].get("owner") or "postgres"
    layout.check_owner(owner)
    root = scratch_folder(scratch_root)
    with Job(vault.catalog, "drill", name) as job:
        row: dict = {"id": job.id, "server": name, "point_id": target.point_id,
               "started": utcnow(), "state": "running"}
        vault.catalog.add_drill(row)
        drill = Drill(job.id, name)
        folder = root / job.id
        stale: list[str] = []
        try:
            try:
                stale = _sweep(vault, root, server["bin_dir"])
                rto = _run(vault, server, target, manifest, drill, folder, owner, amcheck,
                           job)
            finally:
                scratch.destroy(folder, server["bin_dir"], owner)
                drill.record("cleanup", not folder.exists(), removed=str(folder),
                             stale_removed=stale)
            if folder.exists():
                raise DbsafeError("drill.check_failed", drill_id=job.id, name=name,
                                  check="cleanup", reason=f"{folder} could not be removed")
        except BaseException as exc:
            ended = failure(exc)
            row.update(state="failed", finished=ended["end_time"],
                       error_code=ended["error_code"], error_message=ended["error_message"],
                       checks=drill.checks)
            vault.catalog.update_drill(job.id, **_stored(row, "state", "finished", "checks",
                                                         "error_code", "error_message"))
            if isinstance(exc, DbsafeError):
                exc.report = _shown(row)  # printed with the error by `--json`
            raise
        state = "completed_with_warnings" if drill.warnings else "completed"
        row.update(state=state, finished=utcnow(), checks=drill.checks,
                   rto_seconds=rto,
                   rpo_seconds=round((_time(row["started"]) - _time(target.instant))
                                     .total_seconds(), 3))
        vault.catalog.update_drill(job.id, **_stored(row, "state", "finished", "checks",
                                                     "rto_seconds", "rpo_seconds"))
        result = _shown(row)
        job.finish(result, state)
        return result


def _stored(row: dict, *keys: str) -> dict:
    return {k: json.dumps(row[k], default=str) if k == "checks" else row[k] for k in keys}


def _shown(row: dict) -> dict:
    """A drill as listed: every column, checks parsed, and the failing check named."""
    checks = row.get("checks") or []
    if isinstance(checks, str):
        checks = json.loads(checks)
    failed = next((c["name"] for c in checks if c.get("ok") is False), None)
    return {**{k: row.get(k) for k in ("id", "server", "point_id", "started", "finished",
                                       "state", "rto_seconds", "rpo_seconds", "error_code",
                                       "error_message")},
            "failed_check": failed, "checks": checks, "job_id": row.get("id")}


def list_drills(vault: Vault, server: str | None = None, limit: int = 100) -> list[dict]:
    """Drills, newest first (of one server with ``server``)."""
    if server is not None:
        get_server(vault, server)
    rows = vault.catalog.list_drills(server, limit)
    for row in rows:
        job = vault.catalog.get_job(row["id"]) if row["state"] == "running" else None
        if job is not None and not (job["state"] == "running" and job_alive(job)):
            fields = {"state": "failed", "finished": job["end_time"] or utcnow(),
                      "error_code": "job.abandoned",
                      "error_message": DbsafeError("job.abandoned", pid=job["pid"]).message}
            vault.catalog.update_drill(row["id"], **fields)
            row.update(fields)
    return [_shown(r) for r in rows]


# ------------------------------------------------------------------------------------------
# one drill
# ------------------------------------------------------------------------------------------

def _run(vault: Vault, server: dict, target: Target, manifest: dict, drill: Drill,
         folder: Path, owner: str, amcheck: bool, job: Job) -> float:
    """Restore, start and check; returns the RTO in seconds."""
    import psycopg  # here: the CLI imports this module at every start

    # The drill's folder stays root's: the restore makes the data directory and the
    # tablespaces in it and hands over only those, so the cluster's owner never holds a
    # folder root writes in (a link planted there would be followed).
    root_fd = open_dir(folder.parent)
    try:
        os.close(make_dir(folder.name, root_fd, 0o755))
    finally:
        os.close(root_fd)
    pgdata = folder / "pgdata"
    port = layout.free_port()
    tablespaces = {ts["oid"]: str(folder / "tablespaces" / ts["oid"])
                   for ts in manifest["tablespaces"]}
    try:
        # a step of the drill's job: a scratch copy that fails is the drill's failure
        # (drill_failed), not a failed restore of the server (restore_failed)
        restored = run_restore(vault, server["name"], target.point_id, to_pgdata=pgdata,
                               port=port, tablespace_map=tablespaces, owner=owner,
                               recovery=target.plan, under=folder, job=job)
        t0 = time.perf_counter()
        scratch.start(pgdata, server["bin_dir"], port, owner)
        started_seconds = time.perf_counter() - t0
    except DbsafeError as exc:
        raise drill.fail("restore", f"[{exc.code}] {exc.message}", target=target.label,
                         base_point=target.point_id) from None
    # Without a plan, recovery to the backup's end happens when the copy first starts.
    rto = restored["seconds"] + (0 if target.plan else started_seconds)
    drill.record("restore", True, target=target.label, base_point=target.point_id,
                 restored_instant=target.instant, restore_seconds=restored["restore_seconds"],
                 recovery_seconds=round(rto - restored["restore_seconds"], 3),
                 rto_seconds=round(rto, 3), bytes_written=restored["bytes_written"])
    conns = partial(connect, port, str(pgdata))
    try:
        with conns(selection.control_database(manifest, restored["databases_left_out"])) \
                as conn:
            # Before any query of the drill's own writes WAL (see _count_check).
            position = wal.parse_lsn(stats.wal_position(conn))
            dbs = pgchecks.databases(conn)
    except (psycopg.Error, DbsafeError) as exc:
        raise drill.fail("connections", stats.error_line(exc)) from None
    drill.record("connections", True, port=port)
    left_out = set(restored["databases_left_out"])
    # every database the instance's backups hold is there, and not as a left-out shell
    missing = sorted(set(coverage.instance_databases(vault, server))
                     - ({db for db, _ in dbs} - left_out))
    if missing:
        raise drill.fail("databases", f"{coverage.named(missing)}: protected, but not in "
                         f"what was restored ({target.label}, base point "
                         f"{target.point_id}); a backup taken with --db holds only the "
                         "databases it names: take a full backup of the instance",
                         missing=missing)
    usable = [db for db, allow in dbs if allow and db not in left_out]
    failed = {db: why for db in usable if (why := pgchecks.answers(conns, db))}
    if failed:
        raise drill.fail("databases", "; ".join(f"{db}: {why}" for db, why in failed.items()))
    drill.record("databases", True, answered=usable,
                 not_checked=sorted({db for db, allow in dbs if not allow} | left_out))
    _count_check(vault, drill, target, conns, pgdata, position, set(usable))
    if amcheck:
        _amcheck(drill, conns, usable)
    return round(rto, 3)


def _count_check(vault: Vault, drill: Drill, target: Target, conns, pgdata: Path,
                 position: int, usable: set[str]) -> None:
    """Row counts of the restored copy against those taken at backup time.

    A table whose count differs is a warning when the database may have changed after the
    backup's stop: a commit between the stop and the count (recorded at backup time), or
    the restore went past the count (point-in-time recovery): a commit that was still
    running when it was counted, a new filenode (TRUNCATE, VACUUM FULL), or a page of the
    table (of pg_class, for a table that appeared or vanished) with an LSN between the
    count and the end of recovery. Otherwise the restore lost or invented rows: a failure.
    """
    import psycopg

    point = vault.catalog.get_point(target.point_id)
    if not point or not point.get("table_counts"):
        drill.record("row_counts", None,
                     skipped="the point has no row counts (taken before dbsafe recorded them)")
        return
    counts = json.loads(point["table_counts"])
    compared, mismatched, changed, notes = 0, [], [], []
    for db, taken in counts["databases"].items():
        if "error" in taken or db not in usable:
            notes.append(f"{db}: not compared ({taken.get('error') or 'not restored'})")
            continue
        try:
            with conns(db) as conn:
                tables = stats.list_tables(conn)
                after = stats.running_then_committed(conn, taken["snapshot"])
                keys = (set(tables) | set(taken["tables"])) - set(taken["not_counted"])
                for key in sorted(keys):
                    compared += 1
                    now = stats.count_rows(conn, tables[key]) if key in tables else None
                    then = taken["tables"].get(key)
                    if now == then:
                        continue
                    entry = {"database": db, "table": key, "at_backup": then, "restored": now}
                    why = _why_changed(conn, pgdata, taken, key, tables.get(key), after,
                                       position)
                    if why:
                        changed.append({**entry, "why": why})
                    else:
                        mismatched.append(entry)
        except (psycopg.Error, DbsafeError) as exc:  # e.g. a relation file is missing
            raise drill.fail("row_counts", f"{db}: {stats.error_line(exc)}") from None
    details = {"tables_compared": compared, "tables_changed": len(changed),
               "changed": changed[:MAX_STORED], "notes": notes,
               "not_counted": {db: t["not_counted"] for db, t in counts["databases"].items()
                               if t.get("not_counted")}}
    if mismatched:
        listed = "; ".join(f"{m['database']}.{m['table']}: {m['at_backup']} at backup, "
                           f"{m['restored']} restored" for m in mismatched[:MAX_LISTED])
        raise drill.fail("row_counts", f"{len(mismatched)} table(s) differ from the counts "
                         f"taken at backup time with no change recorded: {listed}",
                         tables_mismatched=len(mismatched),
                         mismatched=mismatched[:MAX_STORED], **details)
    if changed:
        drill.warnings.append(f"{len(changed)} table(s) changed after the backup's stop")
    drill.record("row_counts", True, **details)


def _why_changed(conn, pgdata: Path, taken: dict, key: str, table: dict | None,
                 after: bool, position: int) -> str | None:
    """Why a table's count may differ although the restore is right; None: no reason."""
    if taken["changed"]:
        return "changed during backup: a transaction committed between its stop and the count"
    if after:
        return "changed after backup: a transaction running at the count was recovered"
    if table is not None and key in taken["filenodes"]:
        if table["filenode"] != taken["filenodes"][key]:
            return "changed after backup: the table was rewritten (new filenode)"
        relpath = stats.relation_filepath(conn, table["oid"])
    else:  # the table appeared or vanished: DDL changes pg_class
        relpath = stats.pg_class_filepath(conn)
    if stats.changed_pages_between(pgdata, relpath, wal.parse_lsn(taken["position"]),
                                   position):
        return "changed after backup: the restore recovered changes made after the count"
    return None


def _amcheck(drill: Drill, conns, usable: list[str]) -> None:
    import psycopg

    checked, failures = 0, []
    for db in usable:
        try:
            n, bad = pgchecks.amcheck(conns, db)
        except (psycopg.Error, DbsafeError) as exc:
            raise drill.fail("amcheck", f"{db}: {stats.error_line(exc)}") from None
        checked += n
        failures += bad
    if failures:
        listed = "; ".join(f"{f['database']} {f['index']}: {f['error']}"
                           for f in failures[:MAX_LISTED])
        raise drill.fail("amcheck", f"{len(failures)} of {checked} btree index(es) are "
                         f"corrupt: {listed}", failures=failures, indexes_checked=checked)
    drill.record("amcheck", True, indexes_checked=checked, databases=len(usable))
