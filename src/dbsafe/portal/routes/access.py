"""Tokens and users: who may use the API and the portal, for the role that manages them
(Backup Contributor, ``admin``), as `dbsafe token` / `dbsafe user` and the API's /tokens
and /users.

A token's secret is shown once, in the answer to the form that made it (never in a URL,
never cached: ``no-store``), and never again; the list shows what the catalog keeps (no
secret). A new user's password is typed twice and goes to the services only: no page
shows it again, the answer to the form is a redirect without it, and the audit log writes
it as ``***`` (api/gate.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dbsafe.core import bounds
from dbsafe.core.errors import DbsafeError
from dbsafe.portal.refusals import Refusal, refusal
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import operations
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter()
ACCESS = "/settings/access"
TokenId = Annotated[str, PathParam(min_length=1, max_length=64)]
AccountName = Annotated[str, PathParam(min_length=1, max_length=bounds.ACCOUNT_MAX)]
# The name's pattern for the inputs' pattern attribute: browsers compile it with
# JavaScript's v flag, where a '-' inside a class must be escaped.
NAME_PATTERN = bounds.ACCOUNT_PATTERN.strip("^$").replace("-]", "\\-]")


def _access_page(request: Request, v: Vault, status_code: int = 200,
                 refused: Refusal | None = None, draft: dict | None = None,
                 created: dict | None = None) -> HTMLResponse:
    response = page(request, "settings_access.html", status_code=status_code,
                    tokens=operations.list_tokens(v.catalog), users=v.catalog.list_users(),
                    roles=operations.ROLES, min_password=operations.MIN_PASSWORD,
                    name_pattern=NAME_PATTERN,
                    name_max=bounds.ACCOUNT_MAX, refused=refused, draft=draft or {},
                    created=created)
    response.headers["Cache-Control"] = "no-store"
    return response


def _checked_name(name: str) -> str:
    """A new token's or user's name, as the CLI and the API take it."""
    problem = bounds.account_problem(name)
    if problem:
        raise DbsafeError("request.invalid", reason=problem)
    return name


@router.get(ACCESS, response_class=HTMLResponse)
def access_page(request: Request, me: Principal = Depends(caller),
                v: Vault = Depends(vault)) -> HTMLResponse:
    me.require("admin")
    return _access_page(request, v)


@router.post(ACCESS + "/tokens", response_class=HTMLResponse)
def create_token(request: Request, name: str = Form("", max_length=bounds.ACCOUNT_MAX),
                 role: str = Form("", max_length=16), csrf_token: str = Form(""),
                 me: Principal = Depends(caller), v: Vault = Depends(vault)) -> HTMLResponse:
    """A new token, its secret in this answer only."""
    me.require("admin")
    check_csrf(me, csrf_token)
    name = name.strip()
    try:
        created = operations.create_token(v.catalog, _checked_name(name), role, me.name)
    except DbsafeError as exc:
        return _access_page(request, v, exc.spec.http_status,
                            refusal(request, "tokens", exc), {"token_name": name,
                                                              "token_role": role})
    return _access_page(request, v, created=created)


@router.post(ACCESS + "/tokens/{token_id}/revoke", response_class=HTMLResponse,
             response_model=None)
def revoke_token(request: Request, token_id: TokenId, csrf_token: str = Form(""),
                 me: Principal = Depends(caller), v: Vault = Depends(vault)) -> Response:
    """Revoke a token: its calls, and the portal sessions opened with it, are refused."""
    me.require("admin")
    check_csrf(me, csrf_token)
    try:
        operations.revoke_token(v.catalog, token_id)
    except DbsafeError as exc:
        return _access_page(request, v, exc.spec.http_status,
                            refusal(request, "tokens", exc))
    return RedirectResponse(ACCESS, status_code=303)


@router.post(ACCESS + "/users", response_class=HTMLResponse, response_model=None)
def add_user(request: Request, name: str = Form("", max_length=bounds.ACCOUNT_MAX),
             role: str = Form("", max_length=16), password: str = Form("", max_length=1024),
             password_again: str = Form("", max_length=1024), csrf_token: str = Form(""),
             me: Principal = Depends(caller), v: Vault = Depends(vault)) -> Response:
    """A portal user: the password typed twice, as `dbsafe user add` asks it."""
    me.require("admin")
    check_csrf(me, csrf_token)
    name = name.strip()
    try:
        _checked_name(name)
        if password != password_again:
            raise DbsafeError("key.passphrase_mismatch")
        operations.add_user(v.catalog, name, role, password)
    except DbsafeError as exc:
        return _access_page(request, v, exc.spec.http_status,
                            refusal(request, "users", exc), {"user_name": name,
                                                             "user_role": role})
    return RedirectResponse(ACCESS, status_code=303)


@router.post(ACCESS + "/users/{name}/remove", response_class=HTMLResponse,
             response_model=None)
def remove_user(request: Request, name: AccountName, csrf_token: str = Form(""),
                me: Principal = Depends(caller), v: Vault = Depends(vault)) -> Response:
    """Remove a user and end their sessions."""
    me.require("admin")
    check_csrf(me, csrf_token)
    try:
        operations.remove_user(v.catalog, name)
    except DbsafeError as exc:
        return _access_page(request, v, exc.spec.http_status,
                            refusal(request, "users", exc))
    return RedirectResponse(ACCESS, status_code=303)
