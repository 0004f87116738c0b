"""Table-level restore: tables of one database, as they were at an instant, back into a
live server, taken from an instant instance (docs/instant-access.md, *Restoring a table*).

Steps: check the target server (a primary, a version able to load the dump, the database
there); start an instant instance of the source at the instant, promoted (its writes are
local and thrown away); check each table existed then and that its name (or ``as_name``)
is free in the target; rename it in the instance when it comes back under a new name;
copy the tables with pg_dump and pg_restore in one transaction (engines/postgres/
tables.py); stop the instance. Nothing is written to the source or to the vault; the
target gets all the tables or none.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dbsafe.core.errors import DbsafeError
from dbsafe.core.fdtree import make_dir, open_dir
from dbsafe.engines.postgres import cluster
from dbsafe.engines.postgres import restore as layout
from dbsafe.engines.postgres import tables as engine
from dbsafe.engines.postgres.client import connect
from dbsafe.services.access.instant import plan_source, start_instant, stop_run
from dbsafe.services.activity.jobs import Job, ProgressFn
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import live_endpoint, open_instance
from dbsafe.services.lifecycle.points import load_point
from dbsafe.services.restore import checks
from dbsafe.services.restore.pitr import base_and_plan

if TYPE_CHECKING:
    import psycopg

TABLE_KINDS = {"r": "table", "p": "partitioned table"}


def restore_tables(vault: Vault, name: str, db: str, tables: list[str], target_server: str,
                   time_: str | None = None, point_id: str | None = None,
                   as_name: str | None = None,
                   on_progress: ProgressFn | None = None) -> dict:
    """Bring ``tables`` (``schema.table``) of database ``db`` of server ``name``, as they
    were at ``time_`` (or at the end of ``point_id``), into database ``db`` of
    ``target_server``; one table may come back as ``as_name`` (in its schema)."""
    t0 = time.perf_counter()
    wanted = [engine.split_name(t) for t in dict.fromkeys(tables)]
    if not wanted:
        raise DbsafeError("restore.table_name", table="(none given)")
    if as_name is not None:
        if len(wanted) != 1:
            raise DbsafeError("restore.table_as_many", count=len(wanted))
        schema, as_name = engine.split_name(as_name if "." in as_name
                                            else f"{wanted[0][0]}.{as_name}")
        if schema != wanted[0][0]:
            raise DbsafeError("restore.table_name", table=f"{schema}.{as_name} (--as names "
                                                          f"a table of {wanted[0][0]})")
    source = plan_source(vault, name, point_id, time_, pause=False)  # planned once
    base, manifest = source.base, source.manifest
    checks.database_in_point(manifest, db)
    target = checks.target_server(vault, target_server)
    checks.target_version(target, manifest)
    t_port, t_host = live_endpoint(Path(target["pgdata"]), target["port"], target["host"])
    with Job(vault.catalog, "restore", name, on_progress, items=[db]) as job:
        instant = start_instant(vault, name, time_, point_id, promote=True, ttl=6 * 3600,
                                source=source)
        try:
            socket_dir, port = instant["socket_dir"], instant["port"]
            moves = _prepare(instant, target, db, wanted, as_name)
            owner = cluster.owner_of(Path(target["pgdata"]))
            dump = _dump_folder(instant, owner) / "tables.pgdump"
            with connect(port, socket_dir, db) as iconn, open_instance(target, db) as tconn:
                keep_owners = all(engine.role_exists(tconn, engine.table_owner(iconn, s, t))
                                  for s, t in moves.values())
            engine.copy_tables(target["bin_dir"], (socket_dir, port), (t_host, t_port), db,
                               list(moves.values()), dump, owner, keep_owners)
        finally:
            ended = stop_run(vault, instant["id"])
        result = {"server": name, "database": db, "target_server": target_server,
                  "point_id": base, "target": instant["target"],
                  "tables": [{"table": f"{s}.{t}", "restored_as": f"{ns}.{nt}"}
                             for (s, t), (ns, nt) in moves.items()],
                  "owners_kept": keep_owners,
                  "note": None if keep_owners else
                  "the tables' owners are not roles of the target: they are owned by the "
                  "role that loaded them, with no grants",
                  "fetched_bytes": ended["fetched_bytes"],
                  "instant_seconds": instant["seconds_to_ready"],
                  "seconds": round(time.perf_counter() - t0, 3)}
        job.finish(result)
    return result


def check_tables(vault: Vault, name: str, db: str, tables: list[str], target_server: str,
                 time_: str | None = None, point_id: str | None = None,
                 as_name: str | None = None) -> dict:
    """The restore wizard's checks of a table restore, without starting anything: the
    source, the database in it, the target, and each table's schema and name there. Whether
    a table existed at the instant is known once an instance runs: the restore says it."""
    from dbsafe.services.access.instant import fuse_problem

    found: dict = {}

    def source() -> str:
        base, plan = base_and_plan(vault, name, point_id, time_)
        found["manifest"] = load_point(vault, name, base)[1]
        return checks.describe_source(base, plan)

    def database() -> str:
        return checks.database_in_point(found["manifest"], db)

    def target() -> str:
        found["target"] = checks.target_server(vault, target_server)
        return checks.target_version(found["target"], found["manifest"])

    def names() -> str:
        wanted = [engine.split_name(t) for t in dict.fromkeys(tables)]
        if not wanted:
            raise DbsafeError("restore.table_name", table="(none given)")
        if as_name is not None and len(wanted) != 1:
            raise DbsafeError("restore.table_as_many", count=len(wanted))
        said = []
        with open_instance(found["target"], db) as tconn:
            for schema, table in wanted:
                new = engine.split_name(as_name)[1] if as_name else table
                _require_free(tconn, schema, new, db, target_server)
                said.append(f"{schema}.{new}")
        return f"free in {target_server}/{db}: " + ", ".join(said)

    def fuse() -> str:
        problem = fuse_problem()
        if problem:
            raise DbsafeError("instant.no_fuse", reason=problem)
        return "the tables are read from an instant instance of the vault"

    done = [checks.run_check("source", source)]
    for label, check in (("database", database), ("target", target), ("tables", names),
                         ("instant access", fuse)):
        if all(c["ok"] for c in done):
            done.append(checks.run_check(label, check))
        else:
            done.append({"check": label, "ok": False, "code": None, "warning": False,
                         "message": "not checked: a check above failed"})
    return {"ok": all(c["ok"] for c in done), "checks": done}


def _prepare(instant: dict, target: dict, db: str, wanted: list[tuple[str, str]],
             as_name: str | None) -> dict[tuple[str, str], tuple[str, str]]:
    """Each table as it is asked for → as it will be named in the target, after checking
    it existed at the instant and its name is free in the target; renamed in the instance
    when asked to come back under another name."""
    moves = {}
    with connect(instant["port"], instant["socket_dir"], db) as iconn, \
            open_instance(target, db) as tconn:
        for schema, table in wanted:
            kind = engine.table_kind(iconn, schema, table)
            if kind not in TABLE_KINDS:
                raise DbsafeError("restore.table_unknown", table=f"{schema}.{table}",
                                  database=db, target=instant["target"])
            new = as_name or table
            _require_free(tconn, schema, new, db, target["name"])
            moves[(schema, table)] = (schema, new)
        for (schema, table), (_s, new) in moves.items():
            if new != table:
                engine.rename_with_dependents(iconn, schema, table, new)
    return moves


def _require_free(tconn: psycopg.Connection, schema: str, name: str, db: str,
                  server: str) -> None:
    """The target has the schema, and nothing named ``name`` in it (nothing is replaced)."""
    if not engine.schema_exists(tconn, schema):
        raise DbsafeError("restore.schema_missing", schema=schema, database=db, server=server)
    if engine.table_kind(tconn, schema, name) is not None:
        raise DbsafeError("restore.table_exists", table=f"{schema}.{name}", database=db,
                          server=server)


def _dump_folder(instant: dict, owner: str) -> Path:
    """A folder for the dump in the instance's own run folder (removed with it), owned by
    the target cluster's OS user, who runs pg_dump and pg_restore."""
    run_dir = Path(instant["mountpoint"]).parent
    fd = open_dir(run_dir)
    try:
        made = make_dir("dump", fd, 0o700)
        os.fchown(made, *layout.owner_ids(owner))
        os.close(made)
    finally:
        os.close(fd)
    return run_dir / "dump"
