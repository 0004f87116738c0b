"""The vault's settings page: how it is set up (as the API's /vault shows it) and the forms
that change its region, soft delete and immutability. Every role that reads sees them;
only a Backup Contributor (``admin``, the permission the API's PATCH /vault needs) gets the
forms, and the services' own rules refuse what they refuse in the CLI and the API (a
region is set once, soft delete is not shortened while the vault is immutable, a locked
vault stays locked): the same code, beside the form."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dbsafe.core.errors import DbsafeError
from dbsafe.portal.refusals import Refusal, refusal
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import inventory, lifecycle
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal
from dbsafe.services.restore import restore_roots

router = APIRouter()
SETTINGS = "/settings"


def _settings_page(request: Request, v: Vault, status_code: int = 200,
                   refused: Refusal | None = None, draft: dict | None = None) -> HTMLResponse:
    described = v.describe()
    return page(request, "settings.html", status_code=status_code, vault_info=described,
                roots=[str(r) for r in restore_roots(v)], refused=refused, draft=draft or {},
                days_range=(lifecycle.SOFT_DELETE_MIN_DAYS, lifecycle.SOFT_DELETE_MAX_DAYS))


def _days(text: str) -> int | None:
    """The days typed (empty: keep the current ones)."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 6:
        raise DbsafeError("request.invalid",
                          reason=f"the days to keep deleted points must be a whole number, "
                                 f"not {text[:20]!r}")
    return int(text)


@router.get(SETTINGS, response_class=HTMLResponse)
def settings_page(request: Request, me: Principal = Depends(caller),
                  v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("read")
    return _settings_page(request, v)


@router.post(f"{SETTINGS}/region", response_class=HTMLResponse, response_model=None)
def set_region(request: Request, region: str = Form("", max_length=64),
               csrf_token: str = Form(""), me: Principal = Depends(caller),
               v: Vault = Depends(vault)) -> Response:
    """Give a vault created without a region its region (once, as `dbsafe vault region`)."""
    me.require("admin")
    check_csrf(me, csrf_token)
    try:
        v.set_region(region.strip())
    except DbsafeError as exc:
        return _settings_page(request, v, exc.spec.http_status,
                              refusal(request, "region", exc), {"region": region})
    return RedirectResponse(SETTINGS, status_code=303)


@router.post(f"{SETTINGS}/soft-delete", response_class=HTMLResponse, response_model=None)
def set_soft_delete(request: Request, enabled: str = Form("", max_length=8),
                    days: str = Form("", max_length=20), csrf_token: str = Form(""),
                    me: Principal = Depends(caller), v: Vault = Depends(vault)) -> Response:
    """Soft delete on (kept ``days``) or off, as `dbsafe vault soft-delete`."""
    me.require("admin")
    check_csrf(me, csrf_token)
    try:
        lifecycle.set_soft_delete(v, _days(days), enabled=enabled == "on")
    except DbsafeError as exc:
        return _settings_page(request, v, exc.spec.http_status,
                              refusal(request, "soft_delete", exc),
                              {"days": days, "enabled": enabled == "on"})
    return RedirectResponse(SETTINGS, status_code=303)


@router.post(f"{SETTINGS}/immutability", response_class=HTMLResponse, response_model=None)
def set_immutability(request: Request, state: str = Form("", max_length=16),
                     csrf_token: str = Form(""), me: Principal = Depends(caller),
                     v: Vault = Depends(vault)) -> Response:
    """Immutability on, off or locked (irreversible), as `dbsafe vault immutability`."""
    me.require("admin")
    check_csrf(me, csrf_token)
    try:
        inventory.set_immutability(v, state)
    except DbsafeError as exc:
        return _settings_page(request, v, exc.spec.http_status,
                              refusal(request, "immutability", exc))
    return RedirectResponse(SETTINGS, status_code=303)
