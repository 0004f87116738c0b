"""Logging in (user and password, or a pasted API token) and out."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dbsafe.api.gate import SESSION_COOKIE
from dbsafe.core.errors import DbsafeError
from dbsafe.portal.web import caller, check_csrf, page, vault
from dbsafe.services import access
from dbsafe.services.access import Principal
from dbsafe.services.vault import Vault

router = APIRouter()


def _safe_next(next_url: str | None) -> str:
    """Only a path of this site (no open redirect to another)."""
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse, response_model=None)
def login(request: Request, name: str = Form(""), password: str = Form(""),
          token: str = Form(""), next: str = Form("/"),
          v: Vault = Depends(vault)) -> HTMLResponse | RedirectResponse:
    source = request.client.host if request.client else "unknown"
    try:
        if token.strip():
            who = access.token_principal(v.catalog, token.strip())
            session_id, principal = access.open_session(v.catalog, who)
        else:
            session_id, principal = access.login(v.catalog, name, password)
    except DbsafeError as exc:
        attempted = access.Principal(f"user:{name}" if name else "token:?", "reader")
        access.audit(v.catalog, attempted, source, "login", None, exc.code)
        return page(request, "login.html", status_code=401, next=_safe_next(next),
                    error=exc.message)
    access.audit(v.catalog, principal, source, "login", None, "ok")
    request.scope["state"]["audited"] = True
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict",
                        secure=request.app.state.secure_cookies,
                        max_age=int(access.SESSION_MAX.total_seconds()))
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form(""),
           me: Principal = Depends(caller), v: Vault = Depends(vault)) -> RedirectResponse:
    check_csrf(me, csrf_token)
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        access.end_session(v.catalog, session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
