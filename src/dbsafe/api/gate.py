"""The gate every request passes before any endpoint runs (a plain ASGI middleware).

0. It refuses a ``Host`` header that is not one of the names this serve answers to (400
   ``request.bad_host``: DNS rebinding, api/hosts.py).
1. It reads the body whole, up to ``MAX_BODY`` bytes (requests are small JSON documents or
   forms): a larger one is answered 413 before anything parses it.
2. It finds who is calling — a bearer token, else the portal's session cookie — and, for
   ``/api/`` and the OpenAPI document, answers 401 to a caller it cannot name, before the
   request reaches routing: without a valid token nobody learns even which paths exist.
   (The role a path needs is checked next, by the endpoint's ``need(...)`` dependency,
   before it looks anything up.)
   A change sent to ``/api/`` with the portal's cookie must carry the session's CSRF token
   in ``X-CSRF-Token`` (the portal's own forms carry it as a field).
3. After the answer, caches of what the pages show are dropped, and every change (POST,
   PUT, PATCH, DELETE) is written to the audit log: who, what (method, path and the body
   without secrets), when, from where, and the outcome (``ok`` or the error code).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from anyio import to_thread
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dbsafe.api.errors import error_json, for_programs
from dbsafe.api.hosts import AllowedHosts
from dbsafe.catalog.base import Catalog
from dbsafe.core.errors import DbsafeError
from dbsafe.services import operations
from dbsafe.web.http import SESSION_COOKIE

log = logging.getLogger("dbsafe.api")
MAX_BODY = 64 * 1024
PUBLIC_API = ("/api/v1/health",)
CHANGES = ("POST", "PUT", "PATCH", "DELETE")
SECRET_FIELDS = ("password", "password_again", "token", "passphrase", "csrf_token",
                 "login_csrf")


class CallerCache:
    """Who a credential named, for ``TTL`` seconds: a page or a script polling many times a
    second costs one catalog lookup per credential per ``TTL``, not one per request. The
    gate clears it after every change made here (a revoked token, a removed user, a logout
    take effect at once); a revocation made elsewhere (the CLI, another serve) takes effect
    here within ``TTL`` — the bound docs/access.md states."""

    TTL = 2.0
    LIMIT = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: dict[str, tuple[operations.Principal, float]] = {}
        self._clock = clock

    def get(self, credential: str) -> operations.Principal | None:
        hit = self._seen.get(credential)
        return hit[0] if hit and hit[1] > self._clock() else None

    def put(self, credential: str, principal: operations.Principal) -> None:
        if len(self._seen) >= self.LIMIT:
            self._seen.clear()
        self._seen[credential] = (principal, self._clock() + self.TTL)

    def clear(self) -> None:
        self._seen.clear()


def principal_of(catalog: Catalog, headers: dict[str, str], cookies: dict[str, str]
                 ) -> operations.Principal | None:
    """The caller a request names, None when it names nobody; ``auth.invalid`` when what it
    sends is not valid."""
    header = headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if header:
        if scheme.lower() != "bearer" or not credentials.strip():
            raise DbsafeError("auth.invalid")
        return operations.token_principal(catalog, credentials.strip())
    session = cookies.get(SESSION_COOKIE)
    if session:
        return operations.session_principal(catalog, session)
    return None


def _audit_detail(body: bytes, content_type: str) -> dict | None:
    if not body:
        return None
    if "json" in content_type:
        try:
            data = json.loads(body)
        except ValueError:
            return {"body": "(not JSON)"}
    elif "form" in content_type:
        data = dict(parse_qsl(body.decode(errors="replace")))
    else:
        return {"body_bytes": len(body)}
    if isinstance(data, dict):
        return {k: ("***" if k in SECRET_FIELDS else v) for k, v in data.items()}
    return {"body": data}


def needs_caller(path: str) -> bool:
    """The API (but its health), its OpenAPI document and /metrics answer only a known
    caller."""
    return for_programs(path) and path not in PUBLIC_API


class Gate:
    def __init__(self, app: ASGIApp, catalog: Callable[[], Catalog],
                 changed: Callable[[], None] = lambda: None,
                 hosts: AllowedHosts | None = None) -> None:
        self.app = app
        self.catalog = catalog
        self.changed = changed  # told after every change request (caches drop their copy)
        self.hosts = hosts or AllowedHosts.for_serving("127.0.0.1")
        self.callers = CallerCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        host = request.headers.get("host")
        if not self.hosts.allows(host):
            await self._refuse(scope, receive, send,
                               DbsafeError("request.bad_host", host=(host or "")[:100]))
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await self._refuse(scope, receive, send,
                                   DbsafeError("request.too_large", limit=MAX_BODY))
                return
        path = scope["path"]
        catalog = self.catalog()
        credential = request.headers.get("authorization") or \
            request.cookies.get(SESSION_COOKIE) or ""
        try:
            principal = self.callers.get(credential) if credential else None
            if principal is None:
                principal = await to_thread.run_sync(principal_of, catalog,
                                                     dict(request.headers), request.cookies)
                if principal is not None:
                    self.callers.put(credential, principal)
        except DbsafeError as exc:
            if for_programs(path):
                await self._refuse(scope, receive, send, exc)
                return
            principal = None  # the portal sends a stale session to its login page
        if principal is None and needs_caller(path):
            await self._refuse(scope, receive, send, DbsafeError("auth.required"))
            return
        if (principal is not None and principal.csrf is not None and path.startswith("/api/")
                and scope["method"] in CHANGES
                and request.headers.get("x-csrf-token") != principal.csrf):
            # a change over the API with the portal's cookie (not a token) must carry the
            # session's CSRF token, as the portal's forms do
            await self._refuse(scope, receive, send, DbsafeError("auth.csrf"))
            return
        scope.setdefault("state", {})["principal"] = principal

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 500
        if scope["method"] in CHANGES:
            self.changed()  # a page rendered after the change (not redirected) must see it

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, replay, send_status)
        finally:
            if scope["method"] in CHANGES:
                self.callers.clear()
                self.changed()
                if not scope["state"].get("audited"):
                    await to_thread.run_sync(self._audit, catalog, scope, request, body,
                                             status)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, error: DbsafeError) -> None:
        await error_json(error)(scope, receive, send)

    @staticmethod
    def _audit(catalog: Catalog, scope: Scope, request: Request, body: bytes,
               status: int) -> None:
        principal = scope["state"].get("principal")
        if principal is None:
            return  # nothing changed: the portal's login audits itself
        code = scope["state"].get("error_code")
        outcome = "ok" if status < 400 else (code or f"http.{status}")
        client = scope.get("client")
        try:
            operations.audit(catalog, principal, client[0] if client else "unknown",
                         f"{scope['method']} {scope['path']}", scope["path"], outcome,
                         _audit_detail(body, request.headers.get("content-type", "")))
        except Exception:  # noqa: BLE001 - the answer is sent: log, never fail it now
            log.exception("could not write the audit log")
