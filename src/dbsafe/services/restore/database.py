"""One database, as it was at a point or an instant, into another running server.

Steps: check the target (version, name, space for the load and the staging) before
anything is written; restore only that database's files plus the instance files into a
staging cluster next to the target's data directory (services/restore/staging.py,
services/backup/selection.py) and recover it to the target instant; rename the staged database
to a temporary name and make it name only roles the target has (engines/postgres/
db_roles.py: what could not be kept is reported); copy it, with its owners, grants,
comments and database-level settings, into the live target (engines/postgres/logical.py);
rename it to the new name (dropping the old one only with ``overwrite``); remove the
staging cluster. The source server is never touched: everything comes from the vault.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from pathlib import Path

from dbsafe.core.concurrency import default_workers
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import cluster, db_roles, logical
from dbsafe.engines.postgres import restore as layout
from dbsafe.engines.postgres.client import connect, one_row
from dbsafe.services.activity.jobs import Job, ProgressFn
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import live_endpoint, open_instance
from dbsafe.services.lifecycle.points import load_point
from dbsafe.services.restore import checks
from dbsafe.services.restore import staging as stage
from dbsafe.services.restore.instance import run_restore
from dbsafe.services.restore.pitr import RecoveryPlan


def restore_database(vault: Vault, name: str, db: str, point_id: str,
                     recovery: RecoveryPlan | None, target_server: str, new_name: str,
                     overwrite: bool = False, workers: int | None = None,
                     on_progress: ProgressFn | None = None) -> dict:
    t0 = time.perf_counter()
    source, manifest = load_point(vault, name, point_id)
    # the checks the portal's wizard and the API's /restores/check show (restore_checks)
    checks.database_in_point(manifest, db)
    target = checks.target_server(vault, target_server)
    checks.target_version(target, manifest)
    checks.name_free(target, new_name, overwrite)
    checks.database_space(target, manifest, db, recovery, source.get("wal_segment_size"))
    owner = cluster.owner_of(Path(target["pgdata"]))
    # one job from staging to the rename: it ends when the database is in the target
    with Job(vault.catalog, "restore", name, on_progress, items=[db]) as job:
        staging = stage.create(target, job.id)
        pgdata = staging.path / "pgdata"
        jobs = workers or default_workers()
        temp_name = f"dbsafe_restore_{secrets.token_hex(4)}"
        try:
            staged = run_restore(vault, name, point_id, to_pgdata=pgdata, port=layout.free_port(),
                                 start=True, workers=workers, recovery=recovery,
                                 databases=[db], job=job, under=staging.held,
                                 tablespace_map=staging.tablespace_map(manifest),
                                 drop_left_out=False)
            t_copy = time.perf_counter()
            t_port, t_host = live_endpoint(Path(target["pgdata"]), target["port"], target["host"])
            fit = _fit(target, (str(pgdata), staged["port"]), db, temp_name, new_name)
            try:
                logical.copy_database(target["bin_dir"], (str(pgdata), staged["port"]),
                                      temp_name, (t_host, t_port), jobs,
                                      staging.folder_for("dump", owner), owner,
                                      fit.keep_owners)
                with open_instance(target) as tconn:
                    if overwrite:
                        logical.drop(tconn, new_name)
                    logical.rename(tconn, temp_name, new_name)
                if overwrite:  # the chain restarts: the next differential or log becomes a full
                    vault.catalog.update_instance(
                        target["instance_id"],
                        needs_full=f"database {new_name} was overwritten by a restore of "
                                   f"{point_id}")
            except BaseException:
                with open_instance(target) as tconn:
                    logical.drop(tconn, temp_name)
                raise
            copy_seconds = time.perf_counter() - t_copy
        finally:
            with contextlib.suppress(DbsafeError):
                if (pgdata / "postmaster.pid").exists():
                    layout.stop(pgdata, source["bin_dir"],
                                manifest["instance"].get("owner") or "postgres")
            staging.remove()
        result = {"server": name, "database": db, "point_id": point_id,
                  "target_server": target_server, "new_name": new_name,
                  "overwrote": overwrite, "recovery": staged["recovery"],
                  "bytes_restored": staged["bytes_written"], "staged_in": str(staging.path),
                  "stage_seconds": staged["seconds"], "copy_seconds": round(copy_seconds, 3),
                  "seconds": round(time.perf_counter() - t0, 3),
                  "roles_missing": fit.missing, "not_kept": fit.not_kept,
                  "note": _note(fit, target_server)}
        job.finish(result)
        return result


def _fit(target: dict, staged: tuple[str, int], db: str, temp_name: str,
         new_name: str) -> db_roles.Fit:
    """Make the staged database ready to copy: in recovery still (a paused target)
    promoted, renamed to ``temp_name`` (the name it is created under in the target),
    naming only roles the target has."""
    import psycopg

    host, port = staged
    try:
        with open_instance(target) as tconn:
            present, loader = db_roles.names(tconn), db_roles.current_user(tconn)
        with connect(port, host, db) as conn:
            if one_row(conn.execute("SELECT pg_is_in_recovery()"))[0]:
                conn.execute("SELECT pg_promote(true, 300)")
        logical.rename_staged(port, host, db, temp_name)
        with connect(port, host, temp_name) as conn:
            return db_roles.fit_to(conn, present, loader, new_name)
    except psycopg.Error as exc:
        raise DbsafeError("restore.copy_failed", step="matching the target's roles",
                          reason=str(exc).strip().splitlines()[0]) from None


def _note(fit: db_roles.Fit, target_server: str) -> str:
    if not fit.not_kept:
        return "owners, grants, comments and database settings kept"
    roles = ", ".join(sorted({r["role"] for r in fit.not_kept}))
    return (f"owners, grants, comments and database settings kept, except what names a "
            f"role {target_server} does not have ({roles}; see not_kept): what such a role "
            f"owned belongs to {fit.loader}, what was granted to or by it is not granted")
