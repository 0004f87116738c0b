"""Logging in (user and password, or a pasted API token) and out.

The login form carries a CSRF token of its own, before any session exists: ``GET /login``
sets it in a cookie (``dbsafe_login``, SameSite=Strict, path /login) and in the form, and
``POST /login`` is refused (403 ``auth.csrf``) unless the two match — a page of another site
can neither read the cookie nor have the browser send it, so it cannot log a browser in
(to an account of the attacker's choosing). Attempts pass the login guard
(portal/login_guard.py): throttled per source, account and device, hashed on a pool of
their own.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from anyio import to_thread
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dbsafe.core.errors import DbsafeError
from dbsafe.portal.login_guard import LoginGuard, attempt_keys
from dbsafe.portal.web import caller, check_csrf, cookie_secure, page, vault
from dbsafe.services import operations
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal
from dbsafe.web.http import SESSION_COOKIE, retry_after

router = APIRouter()
log = logging.getLogger("dbsafe.api")
LOGIN_COOKIE = "dbsafe_login"     # the login form's CSRF token
DEVICE_COOKIE = "dbsafe_device"   # a browser that logged in as a user before
LOGIN_PATH = "/login"


def _safe_next(next_url: str | None) -> str:
    """Only a path of this site (no open redirect to another)."""
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return "/"


def _login_page(request: Request, next_url: str, status_code: int = 200,
                error: DbsafeError | None = None) -> HTMLResponse:
    """The form, with the login CSRF token of the browser's cookie (a new one if it has
    none: several tabs share one)."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not (20 <= len(token) <= 64 and token.isascii()):
        token = secrets.token_urlsafe(24)
    if error is not None:
        request.state.error_code = error.code
    response = page(request, "login.html", status_code=status_code, next=_safe_next(next_url),
                    error=error, login_csrf=token)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                        secure=cookie_secure(request), path=LOGIN_PATH)
    if error is not None:
        retry_after(response, error)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _login_page(request, next)


@router.post("/login", response_class=HTMLResponse, response_model=None)
async def login(request: Request, name: str = Form(""), password: str = Form(""),
                token: str = Form(""), next: str = Form("/"), login_csrf: str = Form(""),
                v: Vault = Depends(vault)) -> HTMLResponse | RedirectResponse:
    request.scope["state"]["audited"] = True  # audited here, with the name cut to size
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), login_csrf.encode()):
        return _login_page(request, next, 403, DbsafeError("auth.csrf"))
    guard: LoginGuard = request.app.state.login_guard
    source = request.client.host if request.client else "unknown"
    token = token.strip()
    shown = operations.shown_name(name)
    device = request.cookies.get(DEVICE_COOKIE)
    known = (not token and bool(device) and
             await to_thread.run_sync(operations.device_user, v.catalog, device) == name)
    try:
        attempt = guard.throttle.admit(attempt_keys(source, None if token else shown,
                                                    device if known else None))
    except DbsafeError as exc:  # not audited: a flood would fill the audit log
        return _login_page(request, next, exc.spec.http_status, exc)
    try:
        if token:
            session_id, principal = await to_thread.run_sync(operations.token_login, v.catalog,
                                                             token)
        else:
            session_id, principal = await guard.hashes.run(operations.login, v.catalog, name,
                                                           password)
    except DbsafeError as exc:
        if exc.code != "auth.busy":  # busy: nothing was checked
            for held in attempt.failed():
                log.warning("logins %s held for up to %d s after repeated failures (the "
                            "last from %s)", held, guard.throttle.window, source)
            attempted = Principal(f"user:{shown}" if not token else "token:?", "reader")
            await to_thread.run_sync(operations.audit, v.catalog, attempted, source, "login",
                                     None, exc.code)
        return _login_page(request, next, exc.spec.http_status, exc)
    finally:
        attempt.end()  # a success, or what was raised besides (the failure counted first)
    await to_thread.run_sync(operations.audit, v.catalog, principal, source, "login", None, "ok")
    response = RedirectResponse(_safe_next(next), status_code=303)
    secure = cookie_secure(request)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="strict",
                        secure=secure, max_age=int(operations.SESSION_MAX.total_seconds()))
    if not token and not known:
        remembered = await to_thread.run_sync(operations.remember_device, v.catalog, name)
        response.set_cookie(DEVICE_COOKIE, remembered, httponly=True, samesite="strict",
                            secure=secure, path=LOGIN_PATH,
                            max_age=int(operations.DEVICE_MAX.total_seconds()))
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form(""),
           me: Principal = Depends(caller), v: Vault = Depends(vault)) -> RedirectResponse:
    check_csrf(me, csrf_token)
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        operations.end_session(v.catalog, session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
