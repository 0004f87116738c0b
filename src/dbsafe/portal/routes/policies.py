"""Policies: the list with what uses each, a create form, one policy's page with its edit
form, and delete. The forms carry the model's ranges (min/max/pattern/required) so the
browser checks them first; the model (policy/model.py) has the last word, and its message
is shown beside the form when it refuses."""

from __future__ import annotations

import zoneinfo

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from dbsafe.core.errors import DbsafeError
from dbsafe.policy import model
from dbsafe.policy.model import (
    COMPRESSION_LEVELS,
    DEFAULT_POLICY,
    LOG_MINUTES,
    RANGES,
    WEEKDAYS,
    Policy,
)
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import inventory, protection
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()
# The model's patterns for the inputs' pattern attribute: browsers compile it with
# JavaScript's v flag, where a '-' inside a class must be escaped.
NAME_PATTERN = model._NAME.pattern.replace("_-]", "_\\-]")
TIME_PATTERN = model._HHMM.pattern
NUMBERS = (*RANGES, "log_every", "compression_level", "read_full_weeks")
DAYS = ("full_days", "diff_days", "drill_days")


def _settings(form: FormData, name: str) -> dict:
    """Every setting of the form (it sends them all: an empty number is "none")."""
    settings: dict[str, object] = {
        "full": str(form.get("full", "")).strip(),
        "full_time": str(form.get("full_time", "")).strip(),
        "timezone": str(form.get("timezone", "")).strip(),
        "drill_time": str(form.get("drill_time", "")).strip(),
        "compression": form.get("compression") == "on",
        "synthetic_full": form.get("synthetic_full") == "on"}
    for key in DAYS:
        settings[key] = tuple(str(d) for d in form.getlist(key))
    for key in NUMBERS:
        settings[key] = inventory.whole_number(key, str(form.get(key, "")), name)
    for key in ("compression_level", "read_full_weeks"):
        if settings[key] is None:
            settings[key] = getattr(DEFAULT_POLICY, key)
    return settings


def _form_context() -> dict:
    return {"weekdays": WEEKDAYS, "log_minutes": LOG_MINUTES, "ranges": RANGES,
            "levels": COMPRESSION_LEVELS, "read_weeks": model.READ_FULL_WEEKS,
            "name_pattern": NAME_PATTERN,
            "time_pattern": TIME_PATTERN, "zones": sorted(zoneinfo.available_timezones())}


def _list_page(request: Request, v: Vault, status_code: int = 200, error: str | None = None,
               draft: dict | None = None) -> HTMLResponse:
    return page(request, "policies.html", status_code=status_code,
                policies=inventory.list_policies(v), error=error,
                draft=draft or {**DEFAULT_POLICY.to_dict(), "name": ""}, **_form_context())


def _policy_page(request: Request, v: Vault, name: str, status_code: int = 200,
                 error: str | None = None, draft: dict | None = None,
                 outcome: dict | None = None) -> HTMLResponse:
    shown = inventory.show_policy(v, name)
    return page(request, "policy.html", status_code=status_code, policy=shown, error=error,
                draft=draft or shown, outcome=outcome, **_form_context())


@router.get("/policies", response_class=HTMLResponse)
def policies_page(request: Request, me: Principal = Depends(caller),
                  v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    return _list_page(request, v)


@router.post("/policies", response_class=HTMLResponse, response_model=None)
async def create(request: Request, me: Principal = Depends(caller),
                 v: Vault = Depends(vault)) -> Response:
    me.require("policy")
    form = await request.form()
    check_csrf(me, str(form.get("csrf_token", "")))
    name = str(form.get("name", "")).strip()

    def work() -> Response:
        draft = {**DEFAULT_POLICY.to_dict(), "name": name}
        try:
            settings = _settings(form, name)
            draft.update(settings)
            inventory.create_policy(v, Policy(name).with_changes(**settings))
        except DbsafeError as exc:
            request.state.error_code = exc.code
            return _list_page(request, v, exc.spec.http_status, exc.message, draft)
        return RedirectResponse(f"/policies/{name}", status_code=303)

    return await run_in_threadpool(work)


@router.get("/policies/{name}", response_class=HTMLResponse)
def policy_page(request: Request, name: str, me: Principal = Depends(caller),
                v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    return _policy_page(request, v, name)


@router.post("/policies/{name}", response_class=HTMLResponse)
async def edit(request: Request, name: str, me: Principal = Depends(caller),
               v: Vault = Depends(vault)) -> HTMLResponse:
    """Save the form's settings and apply them at once (services/protection/items.change_policy:
    the servers using it are reconfigured and retention runs)."""
    me.require("policy")
    form = await request.form()
    check_csrf(me, str(form.get("csrf_token", "")))

    def work() -> HTMLResponse:
        draft = inventory.show_policy(v, name)          # policy.unknown: the error page
        try:
            settings = _settings(form, name)
            draft.update(settings)
            result = protection.change_policy(v, name, **settings)
        except DbsafeError as exc:
            request.state.error_code = exc.code
            return _policy_page(request, v, name, exc.spec.http_status, exc.message, draft)
        return _policy_page(request, v, name, outcome=result)

    return await run_in_threadpool(work)


@router.post("/policies/{name}/delete")
async def delete(request: Request, name: str, me: Principal = Depends(caller),
                 v: Vault = Depends(vault)) -> RedirectResponse:
    me.require("policy")
    form = await request.form()
    check_csrf(me, str(form.get("csrf_token", "")))
    await run_in_threadpool(inventory.delete_policy, v, name)
    return RedirectResponse("/policies", status_code=303)
