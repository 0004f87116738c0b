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
from dbsafe.engines.postgres import logical
from dbsafe.engines.postgres import restore as layout
from dbsafe.engines.postgres.client import connect
from dbsafe.services import selection
from dbsafe.services.jobs import ProgressFn
from dbsafe.services.pitr import RecoveryPlan
from dbsafe.services.points import load_point
from dbsafe.services.restore import run_restore
from dbsafe.services.servers import get_server, live_endpoint, open_instance
from dbsafe.services.vault import Vault

STAGING_ROOT = Path("/var/tmp")
SPACE_MARGIN = 1.2  # a load needs the data plus its indexes being built, and some slack


def _database_bytes(manifest: dict, db: str) -> int:
    oids = {d["oid"] for d in manifest.get("databases", []) if d["name"] == db}
    return sum(f["size"] for f in manifest["files"] if selection.database_oid(f["path"]) in oids)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def restore_database(vault: Vault, name: str, db: str, point_id: str,
                     recovery: RecoveryPlan | None, target_server: str, new_name: str,
                     overwrite: bool = False, workers: int | None = None,
                     on_progress: ProgressFn | None = None) -> dict:
    t0 = time.perf_counter()
    source, manifest = load_point(vault, name, point_id)
    selection.restore_plan(manifest, [db])  # the point must hold the database
    target = get_server(vault, target_server)
    if target["kind"] == "replica-set":  # into its primary of now; standbys replay it
        from dbsafe.services import replicasets

        replicasets.look(vault, target_server)
        target = get_server(vault, target_server)
    with open_instance(target) as conn:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise DbsafeError("restore.target_standby", target=target_server)
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        if major < manifest["instance"]["pg_version"]:
            raise DbsafeError("restore.target_version_older", target=target_server,
                              version=major, source_version=manifest["instance"]["pg_version"])
        if logical.database_exists(conn, new_name) and not overwrite:
            raise DbsafeError("restore.database_exists", target=target_server, name=new_name)
    need = int(_database_bytes(manifest, db) * SPACE_MARGIN)
    free = _free_bytes(Path(target["pgdata"]))
    if free < need:
        raise DbsafeError("restore.no_space", where=f"{target_server} ({target['pgdata']})",
                          need=need, free=free)
    staging = Path(tempfile.mkdtemp(prefix="dbsafe-staging-", dir=STAGING_ROOT))
    os.chmod(staging, 0o755)
    pgdata = staging / "pgdata"
    jobs = workers or default_workers()
    temp_name = f"{new_name}__dbsafe_{secrets.token_hex(3)}"
    try:
        staged = run_restore(vault, name, point_id, to_pgdata=pgdata, port=layout.free_port(),
                             start=True, workers=workers, on_progress=on_progress,
                             recovery=recovery, databases=[db])
        t_copy = time.perf_counter()
        t_port, t_host = live_endpoint(Path(target["pgdata"]), target["port"], target["host"])
        with open_instance(target) as tconn, connect(staged["port"], str(pgdata), db) as sconn:
            logical.create_like(sconn, db, tconn, temp_name)
        try:
            logical.copy_database(target["bin_dir"], (str(pgdata), staged["port"]), db,
                                  (t_host, t_port), temp_name, jobs, staging)
            with open_instance(target) as tconn:
                if overwrite:
                    logical.drop(tconn, new_name)
                logical.rename(tconn, temp_name, new_name)
            if overwrite:  # the chain restarts: the next differential or log becomes a full
                vault.catalog.update_instance(
                    target["instance_id"],
                    needs_full=f"database {new_name} was overwritten by a restore of {point_id}")
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
    return {"server": name, "database": db, "point_id": point_id,
            "target_server": target_server, "new_name": new_name, "overwrote": overwrite,
            "recovery": staged["recovery"], "bytes_restored": staged["bytes_written"],
            "stage_seconds": staged["seconds"], "copy_seconds": round(copy_seconds, 3),
            "seconds": round(time.perf_counter() - t0, 3),
            "note": "owners and grants are not copied (--no-owner --no-privileges)"}
