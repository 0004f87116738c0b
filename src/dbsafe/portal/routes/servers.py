"""One server's page (the list of servers, by host, is routes/hosts.py): its databases
read live with the reason one cannot be protected, protecting a set of them in one go,
changing the policy of what is protected, auto-protection, stopping protection, and
discovery on demand (backups, verify and drills started from it: routes/server_tasks.py).

The page reads the catalog and also the server's databases live
(services/protection/discovery.live_databases, one connection): what can be protected is
what the server has now. When the server does not answer, the page says why and shows the catalog's
items still.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from dbsafe.core.errors import DbsafeError
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.portal.web import items as overview_items
from dbsafe.services import fleet, inventory, protection
from dbsafe.services.handle import Vault
from dbsafe.services.inventory import get_server
from dbsafe.services.operations import Principal

router = APIRouter()
NO_POLICY = "-"
"""The policy select's value for "none": the SIMPLE model, on-demand backups only (no
policy name can start with '-')."""


def _server_page(request: Request, v: Vault, name: str, status_code: int = 200,
                 outcome: dict | None = None) -> HTMLResponse:
    server = get_server(v, name)
    items = [r for r in overview_items(request) if r["server"] == name]
    try:
        databases, unreachable = protection.live_databases(v, name), None
    except DbsafeError as exc:
        databases, unreachable = [], exc.message
    nodes = v.catalog.list_nodes(name) if server["kind"] == "replica-set" else []
    return page(request, "server.html", status_code=status_code, server=server,
                items=items, databases=databases, unreachable=unreachable, nodes=nodes,
                policies=[p["name"] for p in inventory.list_policies(v)],
                no_policy=NO_POLICY, outcome=outcome,
                per_request=inventory.MAX_PER_REQUEST)


@router.get("/servers/{name}", response_class=HTMLResponse)
def server_page(request: Request, name: str, me: Principal = Depends(caller),
                v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    return _server_page(request, v, name)


def _outcome() -> dict:
    return {"done": [], "refused": [], "warnings": [], "config_lines": [],
            "restart_needed": False}


def _answer(request: Request, v: Vault, name: str, outcome: dict) -> HTMLResponse:
    """The server page with what the action did; a refusal of everything answers with the
    refusal's status, so a script sees it too."""
    status = 200
    if outcome["refused"] and not outcome["done"]:
        status = outcome["refused"][0].spec.http_status
        request.state.error_code = outcome["refused"][0].code   # the audit log's outcome
    outcome["refused"] = [{"code": e.code, "message": e.message} for e in outcome["refused"]]
    return _server_page(request, v, name, status, outcome)


@router.post("/servers/{name}/discover", response_class=HTMLResponse)
def discover(request: Request, name: str, csrf_token: str = Form(""),
             me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("operate")
    check_csrf(me, csrf_token)
    found = fleet.discover(v, name)
    outcome = _outcome()
    outcome["done"].append(
        f"discovered {len(found['databases'])} databases: new {', '.join(found['new']) or 'none'}"
        f"; gone {', '.join(found['gone']) or 'none'}"
        + "".join(f"; {r['from']} renamed to {r['to']}" for r in found["renamed"])
        + (f"; auto-protected {', '.join(found['auto_protected'])}"
           if found["auto_protected"] else ""))
    outcome["warnings"] = found["warnings"]
    return _answer(request, v, name, outcome)


def _protect(v: Vault, name: str, choice: str, restart: bool, batches: list[list[str]] | None,
             outcome: dict) -> None:
    """Protect each batch (None: every database, and those created later) with the chosen
    policy, collecting what each call did or why it was refused."""
    policy, model = (None, "SIMPLE") if choice == NO_POLICY else (choice, None)
    try:
        protection.resolve(v, policy, model)  # a bad choice: one refusal, not one a batch
    except DbsafeError as exc:
        outcome["refused"].append(exc)
        return
    for batch in batches if batches is not None else [None]:
        try:
            result = fleet.protect(v, fleet.ProtectRequest(name, batch, model, restart=restart,
                                                           policy=policy, auto=batch is None))
        except DbsafeError as exc:
            outcome["refused"].append(exc)
            continue
        outcome["done"].append(
            f"protected {len(result['databases'])} database(s) with policy "
            f"{result['policy'] or 'none'}, recovery model {result['recovery_model']}"
            + (", auto-protection on" if batch is None else ""))
        outcome["warnings"] += result["warnings"]
        outcome["config_lines"] = result["config_lines"] or outcome["config_lines"]
        outcome["restart_needed"] |= result["restart_needed"]


def _batches(names: list[str]) -> list[list[str]]:
    """A selection split into requests of at most ``limits.MAX_PER_REQUEST`` databases (the
    per-request limit); the per-server and per-vault limits still apply to the whole."""
    size = inventory.MAX_PER_REQUEST
    return [names[i:i + size] for i in range(0, len(names), size)]


@router.post("/servers/{name}/protect", response_class=HTMLResponse)
def protect(request: Request, name: str, db: list[str] = Form([]),
            policy: str = Form(NO_POLICY, max_length=100), action: str = Form("selected"),
            restart: bool = Form(False), csrf_token: str = Form(""),
            me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """``action`` "selected" protects the checked databases, "all" every protectable one
    not protected yet."""
    me.require("operate")
    check_csrf(me, csrf_token)
    if action == "all":
        db = [d["name"] for d in protection.live_databases(v, name)
              if d["protectable"] and not d["protected"]]
    elif action != "selected":
        raise DbsafeError("request.invalid", reason=f"action {action!r}: selected or all")
    outcome = _outcome()
    if not db:
        outcome["refused"].append(DbsafeError("request.invalid",
                                              reason="no database selected to protect"))
    else:
        _protect(v, name, policy, restart, _batches(db), outcome)
    return _answer(request, v, name, outcome)


@router.post("/servers/{name}/auto", response_class=HTMLResponse)
def auto_protection(request: Request, name: str, policy: str = Form(NO_POLICY, max_length=100),
                    enable: bool = Form(False), restart: bool = Form(False),
                    csrf_token: str = Form(""), me: Principal = Depends(caller),
                    v: Vault = Depends(vault)) -> HTMLResponse:
    """On: protect every database now and those created later with ``policy``; off: the
    databases created later are left alone (what is protected stays so)."""
    me.require("operate")
    check_csrf(me, csrf_token)
    outcome = _outcome()
    if enable and policy == NO_POLICY:
        # discovery protects new databases with the instance's policy: it needs one
        outcome["refused"].append(DbsafeError("request.invalid",
                                              reason="auto-protection needs a policy"))
    elif enable:
        _protect(v, name, policy, restart, None, outcome)
    else:
        protection.auto_protect_off(v, name)
        outcome["done"].append("auto-protection off: databases created later are not "
                               "protected")
    return _answer(request, v, name, outcome)


@router.post("/servers/{name}/policy", response_class=HTMLResponse)
def change_policy(request: Request, name: str, policy: str = Form(NO_POLICY, max_length=100),
                  restart: bool = Form(False), csrf_token: str = Form(""),
                  me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """Move the server's protected databases to another policy, as `dbsafe protect NAME
    --db ... --policy P` (``POST /api/v1/servers/{server}/protection``). They move
    together, in one request: an instance's protected databases share one policy (its base
    backups and WAL are the instance's), so moving some would be ``protect.policy_mismatch``.
    With auto-protection on, the databases created later get the new policy too."""
    me.require("operate")
    check_csrf(me, csrf_token)
    server = get_server(v, name)
    protected = v.catalog.list_protected(server["instance_id"])
    auto = server["auto_protect_policy"] is not None
    outcome = _outcome()
    if not protected:
        outcome["refused"].append(DbsafeError(
            "request.invalid", reason=f"no database of {name} is protected: protect some first"))
    elif auto and policy == NO_POLICY:
        # discovery protects new databases with the instance's policy: it needs one
        outcome["refused"].append(DbsafeError(
            "request.invalid", reason="auto-protection needs a policy: choose one, or turn "
                                      "auto-protection off first"))
    else:
        chosen, model = (None, "SIMPLE") if policy == NO_POLICY else (policy, None)
        try:
            result = fleet.protect(v, fleet.ProtectRequest(name, protected, model,
                                                           restart=restart, policy=chosen,
                                                           auto=auto))
        except DbsafeError as exc:
            outcome["refused"].append(exc)
        else:
            outcome["done"].append(
                f"{len(result['databases'])} protected database(s) now use policy "
                f"{result['policy'] or 'none'}, recovery model {result['recovery_model']}"
                + (" (auto-protection too)" if auto else ""))
            outcome["warnings"] = result["warnings"]
            outcome["config_lines"] = result["config_lines"]
            outcome["restart_needed"] = result["restart_needed"]
    return _answer(request, v, name, outcome)


@router.post("/servers/{name}/unprotect", response_class=HTMLResponse)
def unprotect(request: Request, name: str, db: list[str] = Form([]),
              data: str = Form("retain"), csrf_token: str = Form(""),
              me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """Stop protecting the checked databases, keeping their data (operate) or deleting the
    points only they use (delete: Backup Contributor)."""
    if data not in ("retain", "delete"):
        raise DbsafeError("request.invalid", reason=f"data {data!r}: retain or delete")
    me.require("operate" if data == "retain" else "delete")
    check_csrf(me, csrf_token)
    if not db:
        raise DbsafeError("request.invalid", reason="no database selected to stop protecting")
    result = protection.unprotect(v, name, db, retain=data == "retain")
    outcome = _outcome()
    outcome["done"].append(
        f"protection stopped for {', '.join(result['databases'])}, data {result['data']}"
        + (f" ({len(result['points_deleted'])} point(s) deleted"
           + (f", kept until {result['purge_after']}" if result["soft_deleted"] else "")
           + ")" if result["points_deleted"] else ""))
    return _answer(request, v, name, outcome)
