"""What a DBA wants checked before a restore runs, without starting or writing anything:
the source resolves (a point, or a base plus the WAL that reaches an instant), the target
runs a PostgreSQL version no older than the backup's, has the space, has no database of
the new name, and an instance target's folder is new, below a restore root and plainly
named, and its port free.

Each check is a function that raises its ``DbsafeError`` or returns a sentence saying what
it found. services/restore/database.py calls the same functions before it writes anything, so the
portal's wizard, ``POST /api/v1/servers/{server}/restores/check`` and the restore itself
cannot disagree. ``check_restore`` runs them all and reports each, instead of stopping at
the first failure, so the wizard shows everything to fix at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dbsafe.core.errors import DbsafeError
from dbsafe.core.units import size_text
from dbsafe.engines.postgres import cluster, db_roles, logical, status
from dbsafe.engines.postgres import restore as layout
from dbsafe.engines.postgres.client import connect
from dbsafe.services.backup import selection
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server, open_instance
from dbsafe.services.lifecycle import manifest_checks
from dbsafe.services.lifecycle.points import load_point
from dbsafe.services.protection import replica_sets as replicasets
from dbsafe.services.restore import staging
from dbsafe.services.restore import targets as restore_targets
from dbsafe.services.restore.pitr import STAGE_WINDOW, RecoveryPlan, base_and_plan

SPACE_MARGIN = 1.2  # a load needs the data plus its indexes being built, and some slack
DEFAULT_SEGMENT = 16 << 20  # a WAL segment, when the server's row does not say
NOT_CHECKED = "not checked: the source did not resolve"


def free_bytes(path: Path) -> int:
    """Free bytes for an unprivileged writer on the file system of ``path``, or of its
    nearest existing parent (a target folder the restore will create)."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _require_space(where: str, path: Path, need: int) -> str:
    free = free_bytes(path)
    if free < need:
        raise DbsafeError("restore.no_space", where=where, need=need, free=free)
    return f"needs about {size_text(need)} on {where}; {size_text(free)} free"


def _device(path: Path) -> int:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return os.stat(path).st_dev


def require_places(needs: dict[Path, int]) -> str:
    """Each place an instance restore writes to (the target, each tablespace's place) has
    room for what lands there, places on one file system counted together;
    ``restore.no_space`` names the first that has not."""
    by_device: dict[int, list[tuple[Path, int]]] = {}
    for path, need in needs.items():
        by_device.setdefault(_device(path), []).append((path, need))
    said = []
    for places in by_device.values():
        where = ", ".join(str(p) for p, _ in places)
        said.append(_require_space(where, places[0][0], sum(n for _, n in places)))
    return "; ".join(said)


def instance_needs(manifest: dict, files: Iterable[dict], target: Path,
                   tablespaces: dict[str, Path], plan: RecoveryPlan | None,
                   segment_size: int | None, as_files: bool) -> dict[Path, int]:
    """Bytes an instance restore writes to each place: the data directory's files and the
    backup's WAL into ``target``, a tablespace's files into its place (``tablespaces``; as
    files, into ``target`` too), and a recovery's WAL — all of it for ``--as-files``, the
    stager's window beside the data directory otherwise. All-zero blocks are counted
    though they stay holes: the restored server may fill them."""
    needs = {target: sum(w["size"] for w in manifest["wal"]), **dict.fromkeys(
        tablespaces.values(), 0)}
    for f in files:
        rel = f["path"]
        oid = rel.split("/")[1] if rel.startswith("pg_tblspc/") and rel.count("/") >= 2 \
            else ""
        needs[target if as_files else tablespaces.get(oid, target)] += f["size"]
    if plan is not None:
        staged = len(plan.wal_files) if as_files else min(len(plan.wal_files), STAGE_WINDOW)
        needs[target] += staged * (segment_size or DEFAULT_SEGMENT)
    return needs


# --- the source ---------------------------------------------------------------------------

def describe_source(point_id: str, plan: RecoveryPlan | None) -> str:
    if plan is None:
        return f"point {point_id}, as it was when its backup ended"
    return (f"base {point_id}, then {len(plan.wal_files)} WAL file(s) on timeline "
            f"{plan.notes.get('timeline')} to {plan.target.describe()}")


def database_in_point(manifest: dict, db: str) -> str:
    selection.restore_plan(manifest, [db])
    return f"point {manifest['point_id']} holds database {db!r}"


# --- one database into a running server (services/restore/database.py) -------------------------

def database_bytes(manifest: dict, db: str) -> int:
    oids = {d["oid"] for d in manifest.get("databases", []) if d["name"] == db}
    return sum(f["size"] for f in manifest_checks.files(manifest)
               if selection.database_oid(f["path"]) in oids)


def target_server(vault: Vault, name: str) -> dict:
    """The registered server a database goes into; a replica set's primary of now (its
    standbys replay the restore)."""
    target = get_server(vault, name)
    if target["kind"] == "replica-set":

        replicasets.look(vault, name)
        target = get_server(vault, name)
    return target


def target_version(target: dict, manifest: dict) -> str:
    """The target takes writes (no standby) and runs the backup's major version or newer;
    the pg_dump and pg_restore that copy the database are root's (cluster.trusted_program:
    its catalog row may have been changed since it was registered)."""
    for program in ("pg_dump", "pg_restore"):
        cluster.trusted_program(str(Path(target["bin_dir"]) / program))
    with open_instance(target) as conn:
        if status.is_in_recovery(conn):
            raise DbsafeError("restore.target_standby", target=target["name"])
        major = status.server_major(conn)
    source_version = manifest["instance"]["pg_version"]
    if major < source_version:
        raise DbsafeError("restore.target_version_older", target=target["name"],
                          version=major, source_version=source_version)
    return f"{target['name']!r} runs PostgreSQL {major}; the backup is of {source_version}"


def name_free(target: dict, new_name: str, overwrite: bool) -> str:
    with open_instance(target) as conn:
        exists = logical.database_exists(conn, new_name)
    if exists and not overwrite:
        raise DbsafeError("restore.database_exists", target=target["name"], name=new_name)
    if exists:
        return f"{new_name!r} exists in {target['name']!r} and will be replaced (overwrite)"
    return f"{target['name']!r} has no database {new_name!r}"


def roles_kept(source: dict, target: dict, db: str) -> tuple[str, bool]:
    """What the restore will say of owners and grants, before it starts: the roles
    ``db`` names on ``source`` now (the backup may be older: the restore's result says what
    it really kept) that ``target`` lacks. (message, whether it is a warning)."""
    import psycopg

    try:
        with open_instance(source) as conn:  # the same cluster as registered
            port, host = conn.info.port, conn.info.host
            bootstrap = db_roles.bootstrap_superuser(conn)
        with connect(port, host, db) as conn:
            named = {r["role"] for r in db_roles.references(conn, db)}
    except (DbsafeError, psycopg.Error) as exc:
        reason = exc.message if isinstance(exc, DbsafeError) else \
            str(exc).strip().splitlines()[0]
        return (f"roles not compared ({reason}); the restore's result will say which "
                "owners and grants were not kept", True)
    with open_instance(target) as conn:
        present, loader = db_roles.names(conn), db_roles.current_user(conn)
    if bootstrap not in present:
        return (f"{target['name']!r} has no role {bootstrap!r} (the superuser that created "
                f"{source['name']!r}): owners and grants will not be restored at all, "
                f"everything will belong to {loader}", True)
    missing = sorted(named - present)
    if not missing:
        return (f"every role {db!r} names exists in {target['name']!r}: owners, grants, "
                "comments and database settings will be kept", False)
    return (f"{target['name']!r} lacks {', '.join(missing)}, named in {db!r}: what "
            f"{'they own' if len(missing) > 1 else 'it owns'} will belong to {loader}, what "
            "was granted to or by them will not be granted (the result lists each)", True)


def staging_bytes(manifest: dict, db: str, plan: RecoveryPlan | None,
                  segment_size: int) -> int:
    """What a single-database restore writes in its staging folder, at most at once: the
    restored files (the instance's and the database's; the other databases' are sparse)
    with the backup's WAL, the WAL recovery is fed ahead of it, and the dump (estimated
    at the database's size: its rows as text, without indexes)."""
    chosen = selection.restore_plan(manifest, [db])
    restored = sum(f["size"] for f in manifest_checks.files(manifest) if chosen.keeps(f)) + \
        sum(w["size"] for w in manifest["wal"])
    ahead = (min(len(plan.wal_files), STAGE_WINDOW) + 2) * segment_size if plan else 0
    return restored + ahead + database_bytes(manifest, db)


def database_space(target: dict, manifest: dict, db: str, plan: RecoveryPlan | None = None,
                   segment_size: int | None = None) -> str:
    """Space for the load (the database's files × SPACE_MARGIN, on the target's data
    directory's file system) and for the staging (services/restore/staging.py: next to that data
    directory; on the same file system both count at once)."""
    pgdata = Path(target["pgdata"])
    load = int(database_bytes(manifest, db) * SPACE_MARGIN)
    folder = staging.parent_of(target)
    staged = staging_bytes(manifest, db, plan, segment_size or DEFAULT_SEGMENT)
    if os.stat(folder).st_dev == os.stat(pgdata).st_dev:
        return _require_space(f"{folder}, the file system of {target['name']}'s data "
                              f"directory {pgdata} (the load and the staging folder)",
                              folder, load + staged)
    return "; ".join((
        _require_space(f"{target['name']}'s data directory {pgdata} (the load)", pgdata,
                       load),
        _require_space(f"{folder}, where the staging folder goes", folder, staged)))


# --- an instance into a new data directory, or files ------------------------------------

def folder_ready(vault: Vault, path: Path, manifest: dict, as_files: bool) -> str:
    """The target is a new folder below a restore root, with a plain name; so is each
    tablespace's own place (services/restore/targets.py: the rules the restore holds)."""
    placement = restore_targets.place(vault, path)
    places = [] if as_files else [  # tablespaces go back to their own places
        restore_targets.place_tablespace(vault, ts["oid"], Path(ts["location"]), None)
        for ts in manifest["tablespaces"]]
    restore_targets.apart([placement.path, *(p.path for p in places)])
    layout.check_owner(manifest["instance"].get("owner") or "postgres")
    return f"{placement.path} will be created below the restore root {placement.root}"


def binaries(server: dict, manifest: dict) -> str:
    """This host has the backup's PostgreSQL version to start the restored copy with."""
    bin_dir = cluster.find_bin_dir(manifest["instance"]["pg_version"], server["bin_dir"])
    return f"PostgreSQL {manifest['instance']['pg_version']} binaries in {bin_dir}"


def port_ready(port: int | None, start: bool, recovers: bool) -> str:
    if start and port is None:
        raise DbsafeError("restore.port_in_use", port="(none given)")
    if port is not None:
        if not layout.port_free(port):
            raise DbsafeError("restore.port_in_use", port=port)
        return f"port {port} is free"
    if recovers:
        return "recovery runs on a free port chosen when it starts"
    return "not started: no port needed"


def instance_space(path: Path, server: dict, manifest: dict, databases: list[str] | None,
                   plan: RecoveryPlan | None, as_files: bool) -> str:
    chosen = selection.restore_plan(manifest, databases)
    files = (f for f in manifest_checks.files(manifest) if chosen.keeps(f))
    tablespaces = {} if as_files else {ts["oid"]: Path(ts["location"])
                                       for ts in manifest["tablespaces"]}
    return require_places(instance_needs(manifest, files, path, tablespaces, plan,
                                         server.get("wal_segment_size"), as_files))


# --- all of them ---------------------------------------------------------------------------

def run_check(name: str, check: Check) -> dict:
    """A check's outcome; a check that passes may still warn (``(message, True)``): what the
    restore will carry as a note, said before it starts."""
    try:
        said = check()
        message, warning = said if isinstance(said, tuple) else (said, False)
        return {"check": name, "ok": True, "message": message, "code": None,
                "warning": warning}
    except DbsafeError as exc:
        return {"check": name, "ok": False, "message": exc.message, "code": exc.code,
                "warning": False}
    except (OSError, ValueError) as exc:  # a path the OS refuses (too long, a NUL byte)
        error = DbsafeError("request.invalid", reason=str(exc))
        return {"check": name, "ok": False, "message": error.message, "code": error.code,
                "warning": False}


def _skipped(name: str) -> dict:
    return {"check": name, "ok": False, "message": NOT_CHECKED, "code": None,
            "warning": False}


Check = Callable[[], str | tuple[str, bool]]  # a message, or (a message, it warns)


def _planned(vault: Vault, target: dict, found: dict) -> list[tuple[str, Check]]:
    """The checks of ``target`` after the source's, in the order they are shown; they read
    what the source check ``found`` (its manifest, server and plan) when they run."""
    db: Any = target.get("database")  # a database target's (the request's model has it)

    def manifest() -> dict:
        return found["manifest"]

    if target["kind"] == "server":
        def into() -> dict:  # resolved once (a replica set's primary is looked up)
            if "into" not in found:
                found["into"] = target_server(vault, target["server"])
            return found["into"]

        return [("database", lambda: database_in_point(manifest(), db)),
                ("version", lambda: target_version(into(), manifest())),
                ("name", lambda: name_free(into(), target["new_name"],
                                           target.get("overwrite", False))),
                ("space", lambda: database_space(
                    into(), manifest(), db, found["plan"],
                    found["server"].get("wal_segment_size"))),
                ("roles", lambda: roles_kept(found["server"], into(), db))]
    path = Path(target["path"])
    if target["kind"] == "files":
        return [("folder", lambda: folder_ready(vault, path, manifest(), True)),
                ("space", lambda: instance_space(path, found["server"], manifest(), None,
                                                 found["plan"], True))]
    checks: list[tuple[str, Check]] = \
        [("database", lambda: database_in_point(manifest(), db))] if db else []
    return checks + [
        ("version", lambda: binaries(found["server"], manifest())),
        ("folder", lambda: folder_ready(vault, path, manifest(), False)),
        ("port", lambda: port_ready(target.get("port"), target.get("start", False),
                                    found["plan"] is not None)),
        ("space", lambda: instance_space(path, found["server"], manifest(),
                                         [db] if db else None, found["plan"], False))]


def check_restore(vault: Vault, server: str, target: dict, *, point_id: str | None = None,
                  time: str | None = None, lsn: str | None = None,
                  restore_point: str | None = None, pause: bool = False) -> dict:
    """Every check of a restore of ``server`` to ``target`` (the API's target as a dict:
    ``kind`` server, pgdata or files, with its fields): ``{"ok", "checks": [{"check",
    "ok", "message", "code"}]}``. Starts nothing, writes nothing."""
    found: dict = {}

    def source() -> str:
        database = target.get("database")
        found["point_id"], found["plan"] = base_and_plan(
            vault, server, point_id, time, lsn, restore_point, pause,
            databases=[database] if database else None)
        found["server"], found["manifest"] = load_point(vault, server, found["point_id"])
        return describe_source(found["point_id"], found["plan"])

    checks = [run_check("source", source)]
    planned = _planned(vault, target, found)
    if "manifest" in found:
        checks += [run_check(name, check) for name, check in planned]
    else:
        checks += [_skipped(name) for name, _ in planned]
    return {"ok": all(c["ok"] for c in checks), "checks": checks}
