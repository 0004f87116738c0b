"""Where a job runs: on this host, or queued for the agent of the host that owns its server
(docs/fleet.md, *Jobs go to the host that owns the cluster*).

``take_backup``, ``protect``, ``restore``, ``check_restore``, ``discover`` and
``add_server`` are what the interfaces and the scheduler call: a server without an agent
(the one-machine case) is backed up here, as always; a server with one is queued for its
agent and followed until the agent ends it, so the caller sees the same result, progress
and errors either way. ``run_claimed`` is the agent's side: the same service, under the
queued job's id.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow
from dbsafe.services.activity.jobs import ProgressFn, claimed_job, new_job_id
from dbsafe.services.backup.request import BackupRequest
from dbsafe.services.backup.request import take_backup as take_here
from dbsafe.services.fleet.agents import agent_named, get_agent, state_of
from dbsafe.services.fleet.follow import follow
from dbsafe.services.fleet.queue import queue_job
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import add_server as register_server
from dbsafe.services.inventory.servers import get_server
from dbsafe.services.protection.archive_setup import archive_command, configure_archiving
from dbsafe.services.protection.discovery import refresh
from dbsafe.services.protection.items import protect as protect_items
from dbsafe.services.protection.items import resolve as resolve_protection
from dbsafe.services.protection.replica_sets import choose_node, look

if TYPE_CHECKING:  # the restore's request is a pydantic model: loaded where a restore is
    # dispatched, so that a backup does not carry pydantic's 12 MB (bench/README.md)
    from dbsafe.services.restore.request import RestoreRequest

# seconds an agent has to answer a restore's checks: they read a few rows and look at the
# host, so a check still unanswered is one no slot of the agent took (busy with long jobs)
# or one of an agent gone; the wizard and the API must not hang on it
CHECK_WAIT = 30.0


def agent_of(vault: Vault, server: str) -> str | None:
    """The agent that owns ``server`` (None: this host's)."""
    return get_server(vault, server).get("agent_id")


def take_backup(vault: Vault, request: BackupRequest,
                on_progress: ProgressFn | None = None) -> dict:
    """The backup ``request`` asks for, run where its server lives; its result."""
    entry = get_server(vault, request.server)
    if entry["kind"] == "replica-set":
        agent_id, request = _set_backup(vault, entry, request)
    else:
        agent_id = entry.get("agent_id")
    if agent_id is None:
        return take_here(vault, request, on_progress)
    job_id = queue_job(vault, agent_id, "backup", request.server, dataclasses.asdict(request),
                       trigger=request.trigger, backup_type=request.type,
                       reason=request.reason, job_id=new_job_id("backup"))
    return follow(vault, job_id, on_progress)


def _set_backup(vault: Vault, entry: dict, request: BackupRequest
                ) -> tuple[str | None, BackupRequest]:
    """(the agent that runs a replica set's backup, the request with the node chosen).
    The node is chosen here, from what the nodes' agents report; the backup runs on the
    chosen node's host, except a log backup: it runs where the primary is (it switches
    WAL there), and the chosen node's agent stores the WAL as it archives it. A set whose
    nodes are all on this host is backed up here, choosing as it always did."""
    nodes = [get_server(vault, n["server"]) for n in vault.catalog.list_nodes(entry["name"])]
    if all(vault.is_here(n) for n in nodes):
        return None, request
    choice = choose_node(vault, entry["name"], request.type)  # records roles and the primary
    if choice.server is None:  # refused here, as a failed job of the set (an alert)
        return None, request
    runs_on = entry["name"] if request.type == "log" else choice.server
    return get_server(vault, runs_on).get("agent_id"), \
        dataclasses.replace(request, node=choice.server)


def add_server(vault: Vault, agent_id: str, name: str, pgdata: str, port: int,
               host: str | None = None, bin_dir: str | None = None,
               region: str | None = None) -> dict:
    """Register a server of the host ``agent_id`` runs on: its agent checks the cluster
    there (the control plane cannot see it) and the server is that agent's from then on."""
    if vault.catalog.get_server(name) is not None:
        raise DbsafeError("server.exists", name=name)
    request = {"name": name, "pgdata": pgdata, "port": port, "host": host,
               "bin_dir": bin_dir, "region": region}
    job_id = queue_job(vault, agent_id, "server-add", name, request,
                       job_id=new_job_id("server-add"))
    return follow(vault, job_id)


def discover(vault: Vault, name: str, now: datetime | None = None) -> dict:
    """Read the databases of ``name`` again where it lives (services/protection/discovery.py
    ``refresh``): an agent's server by its agent, as a ``discovery`` job."""
    agent_id = agent_of(vault, name)
    if agent_id is None:
        return refresh(vault, name, now)
    return follow(vault, queue_job(vault, agent_id, "discovery", name,
                                   {"name": name, "now": now.isoformat() if now else None},
                                   job_id=new_job_id("discovery")))


def discovers_now(vault: Vault, server: dict) -> bool:
    """Whether ``server``'s discovery can run now: on this host always; an agent's only
    while the agent is active (a silent agent's job would wait for the control plane to
    give up on it, holding up the caller: its servers are discovered when it is back)."""
    agent_id = server.get("agent_id")
    if agent_id is None:
        return True
    return state_of(get_agent(vault, agent_id)) == "active"


@dataclasses.dataclass(frozen=True)
class ProtectRequest:
    """`dbsafe protect`'s request, the same for a server of this host or of an agent's."""

    name: str
    databases: list[str] | None
    recovery_model: str | None = None
    change_config: bool = True
    restart: bool = False
    policy: str | None = None
    auto: bool = False


def protect(vault: Vault, request: ProtectRequest) -> dict:
    """Protect databases of a server where it lives: the archive_command is that host's
    agent's (its WAL socket), and the cluster's settings are changed there."""
    entry = get_server(vault, request.name)
    elsewhere: list[dict] = []
    if entry["kind"] == "replica-set":
        elsewhere = [n for n in (get_server(vault, row["server"]) for row in
                                 vault.catalog.list_nodes(request.name))
                     if not vault.is_here(n)]
        if elsewhere:
            look(vault, request.name)  # the entry follows its primary, and its host's agent
            entry = get_server(vault, request.name)
    agent_id = entry.get("agent_id")
    if agent_id is None and not elsewhere:
        return _protect_here(vault, request)
    # checked here first: a bad choice is refused at once, and the shipped default policy
    # is written by the control plane (an agent writes no policy)
    _, model = resolve_protection(vault, request.policy, request.recovery_model)
    if agent_id is None:
        result = _protect_here(vault, request)
    else:
        result = follow(vault, queue_job(vault, agent_id, "protect", request.name,
                                         dataclasses.asdict(request),
                                         job_id=new_job_id("protect")))
    for node in elsewhere:  # a set's nodes on other hosts: archiving set up by their agents
        if node.get("agent_id") == agent_id:
            continue
        done = follow(vault, queue_job(vault, node["agent_id"], "archiving", node["name"],
                                       {"node": node["name"], "model": model,
                                        "change_config": request.change_config,
                                        "restart": request.restart},
                                       job_id=new_job_id("archiving")))
        result["nodes"] = [*result.get("nodes", []), done]
        result["archiving_active"] = result["archiving_active"] and done["archiving_active"]
        result["restart_needed"] = result["restart_needed"] or done["restart_needed"]
    return result


def _protect_here(vault: Vault, request: ProtectRequest) -> dict:
    _, model = resolve_protection(vault, request.policy, request.recovery_model)
    command = archive_command(vault) if model == "FULL" else None
    return protect_items(vault, request.name, request.databases, request.recovery_model,
                         command, change_config=request.change_config,
                         restart=request.restart, policy=request.policy, auto=request.auto)


def restore(vault: Vault, server: str, request: RestoreRequest, *,
            tablespace_map: dict[str, str] | None = None, owner: str | None = None,
            workers: int | None = None, on_progress: ProgressFn | None = None) -> dict:
    """The restore ``request`` asks of ``server``'s backups, run on the host it writes to:
    the target server's (one database into a live server), the target's ``host`` (a new
    data directory or files), else this host. That host's agent reads the repository
    itself; the source's host takes no part."""
    from dbsafe.services.restore.request import run_request

    agent_id = restore_agent(vault, request)
    if agent_id is None:
        return run_request(vault, server, request, tablespace_map=tablespace_map,
                           owner=owner, workers=workers, on_progress=on_progress)
    get_server(vault, server)  # an unknown source is refused here, at once
    job_id = queue_job(vault, agent_id, "restore", server,
                       {"server": server, "request": request.model_dump(),
                        "tablespace_map": tablespace_map, "owner": owner, "workers": workers},
                       job_id=new_job_id("restore"))
    return follow(vault, job_id, on_progress)


def check_restore(vault: Vault, server: str, request: RestoreRequest) -> dict:
    """Every check of ``request`` (services/restore/checks.py), run on the host the restore
    would run on (``restore_agent``): its restore roots, folders, free space, ports and
    clusters are that host's, which this one cannot see. There it is a short job of the
    agent, ``restore-check``: it writes nothing, raises no alert and is no restore. The
    answer is the local check's, with ``host`` (None: this host). An agent that does not
    answer within CHECK_WAIT seconds (busy, or gone: a silent agent's queued job is failed
    by the control plane, a revoked one's at once) ends it ``restore.check_unanswered``."""
    from dbsafe.services.restore.request import check_request

    try:
        agent_id = restore_agent(vault, request)
    except DbsafeError as exc:
        if exc.code != "server.unknown":
            raise
        agent_id = None  # an unknown target server: the local checks say so, as a check
    if agent_id is None:
        return {**check_request(vault, server, request), "host": None}
    get_server(vault, server)  # an unknown source is refused here, at once
    agent = get_agent(vault, agent_id)

    def unanswered(reason: str) -> DbsafeError:
        return DbsafeError("restore.check_unanswered", host=agent["host"], agent_id=agent_id,
                           reason=reason)

    if state_of(agent) == "silent":  # its agent_unreachable alert is up: no job would run
        raise unanswered(f"it has not called since {agent['last_contact']}")
    job_id = queue_job(vault, agent_id, "restore-check", server,
                       {"server": server, "request": request.model_dump()},
                       job_id=new_job_id("restore-check"))
    try:
        result = follow(vault, job_id, within=CHECK_WAIT,
                        late=lambda: unanswered(f"nothing within {CHECK_WAIT:.0f} s: it is "
                                                "busy with other jobs, or gone"))
    except DbsafeError as exc:
        if exc.code not in ("job.agent_lost", "agent.revoked"):
            raise
        now = get_agent(vault, agent_id)
        raise unanswered(f"it was revoked at {now['revoked']}" if now["revoked"] else
                         f"it has not called since {now['last_contact']}") from exc
    return {"ok": result["ok"], "checks": result["checks"], "host": agent["host"]}


def restore_agent(vault: Vault, request: RestoreRequest) -> str | None:
    """The agent of the host a restore writes to (None: this host)."""
    from dbsafe.services.restore.request import ServerTarget

    target = request.target
    if isinstance(target, ServerTarget):
        return agent_of(vault, target.server)
    host = getattr(target, "host", None)
    return None if host is None else agent_named(vault, host)


def run_claimed(vault: Vault, job: dict, on_progress: ProgressFn | None = None) -> dict:
    """Run a job this agent claimed, under the claimed id (the service's own job takes the
    queued row over)."""
    runners: dict[str, Callable[[dict], Any]] = {
        "backup": lambda r: take_here(vault, BackupRequest(**r), on_progress),
        "server-add": lambda r: _ended(vault, job["id"], _add_here(vault, r)),
        "protect": lambda r: _ended(vault, job["id"],
                                    _protect_here(vault, ProtectRequest(**r))),
        "archiving": lambda r: _ended(vault, job["id"], configure_archiving(
            vault, get_server(vault, r["node"]), r["model"],
            archive_command(vault) if r["model"] == "FULL" else None, r["change_config"],
            r["restart"], "always")),
        "discovery": lambda r: _ended(vault, job["id"], refresh(
            vault, r["name"], datetime.fromisoformat(r["now"]) if r["now"] else None)),
        "restore": lambda r: _restore_here(
            vault, r["server"], r["request"],
            tablespace_map=r["tablespace_map"], owner=r["owner"], workers=r["workers"],
            on_progress=on_progress),
        "restore-check": lambda r: _ended(vault, job["id"], _check_here(
            vault, r["server"], r["request"])),
        "verify": lambda r: _verify_here(vault, r, on_progress),
        "drill": lambda r: _drill_here(vault, r),
    }
    runner = runners.get(job["type"])
    if runner is None:
        raise DbsafeError("agent.job_unknown", type=job["type"])
    token = claimed_job.set([job["id"]])
    try:
        return runner(job["request"])
    finally:
        claimed_job.reset(token)


def _restore_here(vault: Vault, server: str, request: dict, **options: Any) -> dict:
    from dbsafe.services.restore.request import RestoreRequest, run_request

    return run_request(vault, server, RestoreRequest.model_validate(request), **options)


def _check_here(vault: Vault, server: str, request: dict) -> dict:
    from dbsafe.services.restore.request import RestoreRequest, check_request

    return check_request(vault, server, RestoreRequest.model_validate(request))


def _verify_here(vault: Vault, request: dict, on_progress: ProgressFn | None) -> dict:
    from dbsafe.services.restore.verify import run_verify

    return run_verify(vault, request["server"], request["point_id"], request["workers"],
                      on_progress, bool(request.get("deep")))


def _drill_here(vault: Vault, request: dict) -> dict:
    from dbsafe.services.restore.drills import run_drill

    root = request["scratch_root"]
    return run_drill(vault, request["server"], request["point_id"],
                     amcheck=request["amcheck"], scratch_root=None if root is None else Path(root))


def _add_here(vault: Vault, request: dict) -> dict:
    return register_server(vault, request["name"], Path(request["pgdata"]), request["port"],
                           request["host"], request["bin_dir"], request["region"])


def _ended(vault: Vault, job_id: str, result: dict) -> dict:
    """End a claimed job whose service has no job of its own (registering, protecting)."""
    vault.catalog.update_job(job_id, state="completed", end_time=utcnow(),
                             result=json.dumps(result, default=str))
    return result
