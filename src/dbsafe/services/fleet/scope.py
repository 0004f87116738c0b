"""What an agent may ask of the catalog: one rule per catalog method (docs/fleet.md, *Scope*).

An agent runs the same services as the control plane, with a catalog that sends each call
here (agent/remote_catalog.py). A call is answered only when its rule holds for the agent:
the server, instance, cluster (system identifier), job or point it names belongs to one of
the agent's servers; lists come back filtered to them; a few reads are of nothing any
server owns (policies). A method without a rule is refused, like a call out of scope:
403 ``agent.out_of_scope``, and the refusal is written to the audit log.

The agent's servers are the rows whose ``agent_id`` is its id. They are looked up once per
``SCOPE_TTL`` seconds per agent: a server moved to another agent is out of the old agent's
scope within that time.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbsafe.catalog.sql import SqlCatalog
from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow
from dbsafe.policy.model import DEFAULT_POLICY
from dbsafe.services.activity.alerts import deliver_row
from dbsafe.services.activity.jobs import FINAL, job_ended
from dbsafe.services.fleet.agents import AgentIdentity
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.operations.access import Principal, audit

SCOPE_TTL = 2.0
VAULT_ALERTS = ("vault_full", "vault_space_low")  # alerts of no server an agent may raise


@dataclass(frozen=True)
class Owned:
    """What one agent may touch now: its servers' names, instance ids and clusters; the
    names its running ``server-add`` jobs register (``granted``); and, for reading only,
    the servers whose backups its running restores and restore checks read (``read_*``:
    its own and those)."""

    servers: frozenset[str]
    instances: frozenset[int]
    clusters: frozenset[str]
    granted: frozenset[str] = frozenset()
    read_servers: frozenset[str] = frozenset()
    read_instances: frozenset[int] = frozenset()
    read_clusters: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    """``check`` refuses a call out of scope (it may rewrite the arguments); ``answer``
    shapes the result (filters a list); ``after`` runs on the control plane once the call
    is done (delivering an agent's alert, ending its job)."""

    check: Callable[[Vault, Owned, dict], None]
    answer: Callable[[Vault, Owned, Any], Any] | None = None
    after: Callable[[Vault, dict, Any], None] | None = None


class OutOfScope(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


# the checks -----------------------------------------------------------------------------
def _server(arg: str, reading: bool = False) -> Callable[[Vault, Owned, dict], None]:
    def check(vault: Vault, owned: Owned, call: dict) -> None:
        allowed = owned.read_servers if reading else owned.servers
        if call.get(arg) not in allowed | owned.granted:
            raise OutOfScope(f"server {call.get(arg)!r}")
    return check


def _new_server(vault: Vault, owned: Owned, call: dict) -> None:
    """A server is added only by the agent a ``server-add`` job asked to, as a server."""
    if call["name"] not in owned.granted or call.get("kind", "server") != "server":
        raise OutOfScope(f"a new server {call['name']!r}")


def _instance(arg: str, reading: bool = False) -> Callable[[Vault, Owned, dict], None]:
    def check(vault: Vault, owned: Owned, call: dict) -> None:
        if call.get(arg) not in (owned.read_instances if reading else owned.instances):
            raise OutOfScope(f"instance {call.get(arg)!r}")
    return check


def _cluster(reading: bool = False) -> Callable[[Vault, Owned, dict], None]:
    def check(vault: Vault, owned: Owned, call: dict) -> None:
        sysid = call.get("system_identifier")
        if sysid is None and isinstance(call.get("row"), dict):
            sysid = call["row"].get("system_identifier")
        if sysid not in (owned.read_clusters if reading else owned.clusters):
            raise OutOfScope(f"cluster {sysid!r}")
    return check


def _point(reading: bool = False) -> Callable[[Vault, Owned, dict], None]:
    def check(vault: Vault, owned: Owned, call: dict) -> None:
        row = vault.catalog.get_point(call["point_id"])
        if row is None or row["instance_id"] not in (owned.read_instances if reading
                                                     else owned.instances):
            raise OutOfScope(f"point {call['point_id']!r}")
    return check


def _mine(row: dict | None, owned: Owned, agent_id: str) -> bool:
    """A job of one of the agent's servers, or one the control plane queued for it (a
    restore onto its host names the server it restores from)."""
    return row is not None and (row.get("agent_id") == agent_id
                                or row["server"] in owned.servers)


def _job(vault: Vault, owned: Owned, call: dict) -> None:
    if not _mine(vault.catalog.get_job(call["job_id"]), owned, call["agent_id"]):
        raise OutOfScope(f"job {call['job_id']!r}")


def _new_job(vault: Vault, owned: Owned, call: dict) -> None:
    row = vault.catalog.get_job(call["job_id"])
    if row is not None:
        if not _mine(row, owned, call["agent_id"]) or row["server"] != call["server"]:
            raise OutOfScope(f"job {call['job_id']!r}")
    elif call["server"] not in owned.servers:
        raise OutOfScope(f"server {call['server']!r}")


def _drill(arg: str) -> Callable[[Vault, Owned, dict], None]:
    """A drill's row shares its job's id: only the agent running that drill job (queued for
    it, of one of its servers) writes it, and only while the job runs."""
    def check(vault: Vault, owned: Owned, call: dict) -> None:
        drill = call[arg]
        drill_id = drill.get("id") if isinstance(drill, dict) else drill
        job = vault.catalog.get_job(drill_id) if isinstance(drill_id, str) else None
        if job is None or job["type"] != "drill" or job.get("agent_id") != call["agent_id"] \
                or job["server"] not in owned.servers or job["state"] != "running" \
                or (isinstance(drill, dict) and drill.get("server") != job["server"]):
            raise OutOfScope(f"drill {str(drill_id)[:60]!r}")
    return check


def _alert(vault: Vault, owned: Owned, call: dict) -> None:
    alert = call["alert"]
    if alert.get("server") is None and alert.get("kind") in VAULT_ALERTS:
        return
    if alert.get("server") not in owned.servers:
        raise OutOfScope(f"an alert of server {alert.get('server')!r}")


def _resolve(vault: Vault, owned: Owned, call: dict) -> None:
    key = call.get("key")
    if call.get("alert_id") is not None or key is None:
        raise OutOfScope("an alert by id")
    kind, server, _item = key
    if not (server is None and kind in VAULT_ALERTS) and server not in owned.servers:
        raise OutOfScope(f"an alert of server {server!r}")
    call["key"] = tuple(key)


def _list_jobs(vault: Vault, owned: Owned, call: dict) -> None:
    server = call.get("equal", {}).get("server")
    if server is not None and server not in owned.read_servers:
        raise OutOfScope(f"server {server!r}")


def _node_report(vault: Vault, owned: Owned, call: dict) -> None:
    row = call["row"]
    if row.get("server") not in owned.servers:
        raise OutOfScope(f"a report of server {row.get('server')!r}")


def _count(vault: Vault, owned: Owned, call: dict) -> None:
    """Items of an own instance, or of the whole vault (a number: its limits hold for all)."""
    if call.get("instance_id") is not None:
        _instance("instance_id", reading=True)(vault, owned, call)


def _shipped_policy(vault: Vault, owned: Owned, call: dict) -> None:
    """The shipped default policy, as every reader of policies writes it when it is missing
    (inventory/policies.py): that one only, with its shipped settings."""
    if call["name"] != DEFAULT_POLICY.name or \
            json.loads(call["body"]) != DEFAULT_POLICY.to_dict():
        raise OutOfScope(f"policy {str(call['name'])[:60]!r}")


def _anyone(vault: Vault, owned: Owned, call: dict) -> None:
    """Reads of what no server owns (policies: the fleet's configuration)."""


def _job_write(vault: Vault, owned: Owned, call: dict) -> None:
    row = vault.catalog.get_job(call["job_id"])
    if not _mine(row, owned, call["agent_id"]):
        raise OutOfScope(f"job {call['job_id']!r}")
    if row is not None and row["state"] not in ("running", "cancelling"):
        raise OutOfScope(f"job {call['job_id']!r}, which is {row['state']}")
    call["fields"]["reported"] = utcnow()  # every write on its job is a heartbeat too


# the answers and what follows them ----------------------------------------------------
def _own_rows(key: str) -> Callable[[Vault, Owned, Any], Any]:
    def answer(vault: Vault, owned: Owned, rows: Any) -> Any:
        return [r for r in rows if r.get(key) in owned.read_servers]
    return answer


def _own_points(vault: Vault, owned: Owned, ids: Any) -> Any:
    mine = {p["point_id"] for i in owned.read_instances for p in vault.catalog.list_points(i)}
    return sorted(set(ids) & mine)


def _nothing(vault: Vault, owned: Owned, result: Any) -> Any:
    return []


def _deliver_raised(vault: Vault, call: dict, result: Any) -> None:
    row, new = result
    if new:
        deliver_row(vault.catalog, row, "raised", call["now"])


def _deliver_resolved(vault: Vault, call: dict, rows: Any) -> None:
    for row in rows:
        deliver_row(vault.catalog, row, "resolved", call["now"])


def _server_owner(vault: Vault, call: dict, result: Any) -> None:
    vault.catalog.update_server(call["name"], agent_id=call["agent_id"])


def _job_written(vault: Vault, call: dict, result: Any) -> None:
    """A job's end raises its alerts here; then its followers are woken (fleet/follow.py),
    for its progress and its end."""
    if call["fields"].get("state") in FINAL:
        job_ended(vault.catalog, call["job_id"])
    vault.catalog.notify_job_update(call["job_id"])


RULES: dict[str, Rule] = {
    # servers and instances of its host (read: and those its restores read)
    "add_server": Rule(_new_server, after=_server_owner),
    "get_server": Rule(_server("name", reading=True)),
    "list_servers": Rule(_anyone, answer=_own_rows("name")),
    "update_server": Rule(_server("name")),
    "get_instance": Rule(_instance("instance_id", reading=True)),
    "update_instance": Rule(_instance("instance_id")),
    "replace_databases": Rule(_instance("instance_id")),
    "list_databases": Rule(_instance("instance_id", reading=True)),
    # replica sets of its nodes: their nodes, and what its agent sees of its own nodes
    "get_replica_set": Rule(_server("name", reading=True)),
    "list_nodes": Rule(_server("replica_set", reading=True)),
    "get_node_report": Rule(_server("server", reading=True)),
    "report_node": Rule(_node_report),
    # protected items (discovery, protection, backups' selection)
    "list_items": Rule(_instance("instance_id", reading=True)),
    "set_item": Rule(_instance("instance_id")),
    "count_items": Rule(_count),
    "protect_items": Rule(_instance("instance_id")),
    "list_protected": Rule(_instance("instance_id", reading=True)),
    # points and the log chain
    "add_point": Rule(_instance("instance_id")),
    "list_points": Rule(_instance("instance_id", reading=True)),
    "get_point": Rule(_point(reading=True)),
    "point_ids": Rule(_anyone, answer=_own_points),
    "deleted_point_ids": Rule(_anyone, answer=_own_points),
    "set_table_counts": Rule(_point()),
    "add_wal_file": Rule(_cluster()),
    "list_wal_files": Rule(_cluster(reading=True)),
    "wal_file_names": Rule(_cluster(reading=True)),
    "delete_wal_files": Rule(_cluster()),  # reconciling with the repository (logchain)
    # jobs of its servers and those queued for it: the job's end raises its alerts here
    "create_job": Rule(_new_job),
    "update_job": Rule(_job_write, after=_job_written),
    "get_job": Rule(_job),
    "list_jobs": Rule(_list_jobs, answer=_own_rows("server")),
    # the drills it runs (a drill's row has its job's id)
    "add_drill": Rule(_drill("row")),
    "update_drill": Rule(_drill("drill_id")),
    # alerts of its servers, delivered by the control plane; agents deliver nothing
    "upsert_alert": Rule(_alert, after=_deliver_raised),
    "resolve_alert_rows": Rule(_resolve, after=_deliver_resolved),
    "list_alert_channels": Rule(_anyone, answer=_nothing),
    # policies: the fleet's configuration, read by every agent
    "get_policy": Rule(_anyone),
    "insert_policy": Rule(_shipped_policy),
    "list_policies": Rule(_anyone),
    "policy_users": Rule(_anyone, answer=_own_rows("server")),
}
# The columns an agent may write or filter by, for the methods that take them as keywords
# (the catalog names them in its SQL: a key is never a free string).
FIELDS: dict[str, frozenset[str]] = {
    "update_job": frozenset({"bytes_done", "bytes_total", "state", "end_time", "error_code",
                             "error_message", "result", "warnings", "node", "items",
                             "reason"}),
    "create_job": frozenset({"host", "trigger", "backup_type", "items", "reason", "node"}),
    "update_instance": frozenset({"needs_full", "discovered", "data_checksums",
                                  "wal_segment_size", "recovery_model",
                                  "auto_protect_policy"}),
    "set_item": frozenset({"oid", "state", "state_reason", "warning"}),
    "list_jobs": frozenset({"server", "type", "backup_type", "trigger", "state"}),
    "update_server": frozenset(),
    "update_drill": frozenset({"state", "finished", "checks", "error_code", "error_message",
                               "rto_seconds", "rpo_seconds"}),
}
# what a job an agent runs may become (never queued again, never another agent's)
JOB_STATES = frozenset({"running", "completed", "completed_with_warnings", "failed",
                        "cancelled"})
# checks that need the calling agent's id (the job and drill rules: a job queued for it)
AGENT_AWARE = frozenset({"create_job", "update_job", "get_job", "add_drill", "update_drill"})
# methods that return a set (JSON has none: the agent's catalog turns the list back)
SET_RESULTS = ("point_ids", "deleted_point_ids", "wal_file_names")


class Scopes:
    """The agents' owned servers, looked up at most every SCOPE_TTL seconds each."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, Owned]] = {}
        self._lock = threading.Lock()

    def owned(self, vault: Vault, agent: AgentIdentity) -> Owned:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(agent.id)
        if cached is not None and cached[0] > now:
            return cached[1]
        servers = vault.catalog.list_servers()
        mine = [s for s in servers if s.get("agent_id") == agent.id and s["kind"] == "server"]
        # a replica set a node of its host belongs to is its too (its points, its log
        # chain); the set's other nodes it may read (which node takes which backup)
        sets = {s["replica_set"] for s in mine if s["replica_set"]}
        rows = mine + [s for s in servers if s["name"] in sets]
        running = vault.catalog.list_jobs(100, agent_id=agent.id, state="running")
        sources = {j["server"] for j in running if j["type"] in ("restore", "restore-check")}
        read = rows + [s for s in servers if (s["name"] in sources or s["replica_set"] in sets)
                       and s not in rows]
        owned = Owned(frozenset(s["name"] for s in rows),
                      frozenset(int(s["instance_id"]) for s in rows),
                      frozenset(s["system_identifier"] for s in rows),
                      frozenset(j["server"] for j in running if j["type"] == "server-add"),
                      frozenset(s["name"] for s in read),
                      frozenset(int(s["instance_id"]) for s in read),
                      frozenset(s["system_identifier"] for s in read))
        with self._lock:
            self._cache[agent.id] = (now + SCOPE_TTL, owned)
        return owned

    def forget(self, agent: AgentIdentity) -> None:
        """What the agent owns changed (it added a server): look again at its next call."""
        with self._lock:
            self._cache.pop(agent.id, None)


def call(vault: Vault, scopes: Scopes, agent: AgentIdentity, method: str,
         args: list, kwargs: dict) -> Any:
    """Run one catalog call for an agent, or raise ``agent.out_of_scope`` (audited)."""
    rule = RULES.get(method)
    bound = _bind(method, args, kwargs) if rule is not None else None
    try:
        if rule is None or bound is None:
            raise OutOfScope(f"catalog call {method[:60]!r}")
        _check_fields(method, bound)
        owned = scopes.owned(vault, agent)
        rule.check(vault, owned, {**bound.arguments, "agent_id": agent.id}
                   if method in AGENT_AWARE else bound.arguments)
        if method == "create_job":  # the host a job ran on is the agent's, as registered;
            bound.arguments["extra"]["host"] = agent.host  # its liveness is judged here
            bound.arguments["alive"] = None
    except OutOfScope as refused:
        error = DbsafeError("agent.out_of_scope", agent_id=agent.id, host=agent.host,
                            action=f"call {method[:60]}", what=refused.what)
        audit(vault.catalog, Principal(agent.actor, "agent"), "agent", f"catalog.{method[:60]}",
              refused.what, error.code, {"host": agent.host})
        raise error from None
    result = getattr(vault.catalog, method)(*bound.args[1:], **bound.kwargs)
    if rule.answer is not None:
        result = rule.answer(vault, owned, result)
    if rule.after is not None:
        rule.after(vault, {**bound.arguments, "agent_id": agent.id}, result)
    if method == "add_server" or (method == "update_job"
                                  and bound.arguments["fields"].get("state") in FINAL):
        scopes.forget(agent)  # what it owns, or what a job granted it, changed
    if method == "upsert_alert":
        row, new = result
        return [row, new]
    return sorted(result) if method in SET_RESULTS else result


def _check_fields(method: str, bound: inspect.BoundArguments) -> None:
    """Keyword fields only from the method's allowed columns; a job's state only one an
    agent may set."""
    keywords = _keywords(method)
    if keywords is not None:
        fields = bound.arguments.get(keywords) or {}
        extra = set(fields) - FIELDS.get(method, frozenset())
        if extra:
            raise OutOfScope(f"column(s) {', '.join(sorted(k[:40] for k in extra))}")
        if "state" in fields and method == "update_job" and fields["state"] not in JOB_STATES:
            raise OutOfScope(f"job state {str(fields['state'])[:40]!r}")


def _bind(method: str, args: list, kwargs: dict) -> inspect.BoundArguments | None:
    """The call's arguments by name (as the catalog method declares them); None when they
    do not fit it."""
    try:
        bound = _signature(method).bind(None, *args, **kwargs)
    except (TypeError, AttributeError):
        return None
    bound.apply_defaults()
    keywords = _keywords(method)
    if keywords is not None:
        bound.arguments.setdefault(keywords, {})
    return bound


@functools.cache
def _signature(method: str) -> inspect.Signature:
    """The catalog method's signature, read once (every call of every agent binds it)."""
    return inspect.signature(getattr(SqlCatalog, method))


@functools.cache
def _keywords(method: str) -> str | None:
    """The name of the method's ``**fields`` parameter, if it has one."""
    return next((name for name, param in _signature(method).parameters.items()
                 if param.kind is inspect.Parameter.VAR_KEYWORD), None)
