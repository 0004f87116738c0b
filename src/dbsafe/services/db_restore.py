"""One database, as it was at a point or an instant, into another running server.

Steps: check the target (version, name, space) before anything is written; restore only
that database's files plus the instance files into a staging cluster (services/selection)
and recover it to the target instant; copy the database into the live target under a
temporary name; swap it in (dropping the old one only with ``overwrite``); remove the
staging cluster. The source server is never touched: everything comes from the vault.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from dbsafe.core.concurrency import default_workers
from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres import cluster, logical
from dbsafe.engines.postgres import restore as layout
from dbsafe.engines.postgres.client import connect
from dbsafe.services import restore_checks as checks
from dbsafe.services.jobs import Job, ProgressFn
from dbsafe.services.pitr import RecoveryPlan
from dbsafe.services.points import load_point
from dbsafe.services.restore import run_restore
from dbsafe.services.servers import live_endpoint, open_instance
from dbsafe.services.vault import Vault

STAGING_ROOT = Path("/var/tmp")


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
    checks.database_space(target, manifest, db)
    # one job from staging to the rename: it ends when the database is in the target
    with Job(vault.catalog, "restore", name, on_progress, items=[db]) as job:
        staging = Path(tempfile.mkdtemp(prefix="dbsafe-staging-", dir=STAGING_ROOT))
        os.chmod(staging, 0o755)
        pgdata = staging / "pgdata"
        jobs = workers or default_workers()
        temp_name = f"{new_name}__dbsafe_{secrets.token_hex(3)}"
        try:
            # the staging folder is root's (mkdtemp: new, 0700, then 0755 so the cluster's
            # owner can reach its data directory); the restore makes pgdata inside it
            staged = run_restore(vault, name, point_id, to_pgdata=pgdata, port=layout.free_port(),
                                 start=True, workers=workers, recovery=recovery,
                                 databases=[db], job=job, under=staging,
                                 drop_left_out=False)
            t_copy = time.perf_counter()
            t_port, t_host = live_endpoint(Path(target["pgdata"]), target["port"], target["host"])
            with open_instance(target) as tconn, connect(staged["port"], str(pgdata), db) as sconn:
                logical.create_like(sconn, db, tconn, temp_name)
            try:
                logical.copy_database(target["bin_dir"], (str(pgdata), staged["port"]), db,
                                      (t_host, t_port), temp_name, jobs, staging,
                                      cluster.owner_of(Path(target["pgdata"])))
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
            shutil.rmtree(staging, ignore_errors=True)
        result = {"server": name, "database": db, "point_id": point_id,
                  "target_server": target_server, "new_name": new_name,
                  "overwrote": overwrite, "recovery": staged["recovery"],
                  "bytes_restored": staged["bytes_written"],
                  "stage_seconds": staged["seconds"], "copy_seconds": round(copy_seconds, 3),
                  "seconds": round(time.perf_counter() - t0, 3),
                  "note": "owners and grants are not copied (--no-owner --no-privileges)"}
        job.finish(result)
        return result
