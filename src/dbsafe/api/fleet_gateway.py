"""The agents' API: what agents on other hosts call, on its own HTTPS listener
(``dbsafe serve --agents-port``, docs/fleet.md *The agents' API*).

Every call but ``register`` carries an agent's credential (``Authorization: Bearer dba_…``),
checked before anything else; a call for another host's server is refused by the scope
rules (services/fleet/scope.py) with 403, and audited. Bodies are bounded (``MAX_BODY``).
A poll for the next job waits on this process's event loop, not on a thread: forty idle
agents hold forty sleeping requests, not forty threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from dbsafe import __version__
from dbsafe.api.errors import error_json, install
from dbsafe.core.errors import DbsafeError
from dbsafe.services import fleet
from dbsafe.services.handle import Vault

log = logging.getLogger("dbsafe.fleet")
PREFIX = "/agent/v1"
# An idle agent connection is kept this long: longer than an agent keeps one for reuse
# (agent/control.py IDLE_REUSE_SECONDS), so that an agent never sends a call on a connection
# the gateway is closing at that moment ("Server disconnected without sending a response";
# uvicorn's default is 5 s).
IDLE_KEEP_SECONDS = 75
MAX_BODY = 4 << 20  # a catalog call's arguments: 2,000 databases' rows fit many times
METHOD = r"^[a-z][a-z_]{0,59}$"
PollWait = Annotated[float, Query(ge=fleet.POLL_WAIT[0], le=fleet.POLL_WAIT[1])]


class Registration(BaseModel):
    model_config = {"extra": "forbid"}
    token: str = Field(min_length=1, max_length=200)
    host: str = Field(min_length=1, max_length=253)
    version: str | None = Field(default=None, max_length=40)


class CatalogCall(BaseModel):
    model_config = {"extra": "forbid"}
    args: list[Any] = []
    kwargs: dict[str, Any] = {}


class JobSignals:
    """Wakes the polls waiting for an agent's next job, from any thread (the queue's
    listeners run where a job is queued: an API thread, the scheduler, the NOTIFY thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, agent_id: str | None) -> None:
        self.loop.call_soon_threadsafe(self._set, agent_id)

    def _set(self, agent_id: str | None) -> None:
        targets = self._events.values() if agent_id is None else \
            [e for a, e in self._events.items() if a == agent_id]
        for event in list(targets):
            event.set()

    def event(self, agent_id: str) -> asyncio.Event:
        event = self._events.get(agent_id)
        if event is None:
            event = self._events[agent_id] = asyncio.Event()
        return event


REAP_EVERY = 5.0


class AgentCredentials:
    """Checks every request's size and credential before the app sees it: a caller without
    a valid credential learns nothing of the routes or their arguments. Plain ASGI (not
    ``@app.middleware``, whose wrapping of each request cost 0.3-0.5 ms of every agent's
    catalog call: bench/README.md); the agent found is ``request.state.agent``."""

    def __init__(self, app: ASGIApp, vault: Vault) -> None:
        self.app = app
        self.vault = vault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                raise DbsafeError("request.too_large", limit=MAX_BODY)
            if scope["path"] != f"{PREFIX}/register":
                scheme, _, credential = headers.get("authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not credential:
                    raise DbsafeError("agent.credential_invalid")
                client = scope.get("client")
                scope.setdefault("state", {})["agent"] = await to_thread.run_sync(
                    fleet.authenticate, self.vault, credential.strip(),
                    client[0] if client else None)
        except DbsafeError as exc:
            await error_json(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _reap_lost(vault: Vault, lost_after: float) -> None:
    """Fail the jobs of agents that fell silent, also where this control plane runs no
    scheduler (`serve --no-scheduler`, whose scheduler's pass does it too): a job followed by
    a CLI must end within its bound wherever the scheduler runs."""
    while True:
        await asyncio.sleep(REAP_EVERY)
        try:
            await to_thread.run_sync(fleet.reap, vault, None,
                                     timedelta(seconds=lost_after))
        except Exception:  # the catalog restarting: the next pass
            log.exception("failing lost agents' jobs")


def create_gateway(vault: Vault, lost_after: float = fleet.LOST_AFTER.total_seconds()
                   ) -> FastAPI:
    """The agents' app. A poll waits at most half of ``lost_after`` (the scheduler's), so
    that a waiting agent's last contact is never old enough to count as lost."""
    scopes = fleet.Scopes()
    longest_wait = lost_after / 2

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        signals = JobSignals(asyncio.get_running_loop())
        app.state.signals = signals
        remove = fleet.add_listener(signals.notify)
        notifications = fleet.JobNotifications.start_for(vault)
        reaper = asyncio.create_task(_reap_lost(vault, lost_after))
        try:
            yield
        finally:
            reaper.cancel()
            remove()
            notifications.stop()

    app = FastAPI(title="dbsafe agents' API", version=__version__, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    install(app)

    app.add_middleware(AgentCredentials, vault=vault)

    @app.post(f"{PREFIX}/register", status_code=201)
    def register(body: Registration, request: Request) -> dict:
        """A registration token traded for the agent's credential and the vault's pins."""
        address = request.client.host if request.client else None
        agent, credential = fleet.register(vault, body.token, body.host, body.version, address)
        log.info("agent %s registered for host %s (from %s)", agent.id, agent.host, address)
        return {"agent_id": agent.id, "host": agent.host, "credential": credential,
                "vault": {"vault_id": vault.repo.config["vault_id"],
                          "repository": vault.settings.get("repository") or str(vault.path),
                          "pins": vault.settings["pins"]}}

    @app.get(f"{PREFIX}/hello")
    def hello(request: Request) -> dict:
        agent = request.state.agent
        return {"agent_id": agent.id, "host": agent.host,
                "vault_id": vault.repo.config["vault_id"], "version": __version__}

    @app.get(f"{PREFIX}/jobs/next", response_model=None)
    async def next_job(request: Request, wait: PollWait = fleet.DEFAULT_POLL_WAIT,
                       version: Annotated[str | None, Query(max_length=40)] = None
                       ) -> dict | Response:
        """The agent's next job, claimed for it; 204 when none came within ``wait``."""
        agent = request.state.agent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(wait, longest_wait)
        event = request.app.state.signals.event(agent.id)
        await to_thread.run_sync(fleet.touch, vault, agent, version)
        while True:
            event.clear()
            job = await to_thread.run_sync(fleet.claim, vault, agent)
            if job is not None:
                scopes.forget(agent)  # what the job grants counts from its first call
                return job
            remaining = deadline - loop.time()
            if remaining <= 0 or await request.is_disconnected():
                await to_thread.run_sync(fleet.touch, vault, agent)
                return Response(status_code=204)
            with suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    @app.post(f"{PREFIX}/jobs/{{job_id}}/report")
    def report(job_id: Annotated[str, Path(max_length=80)], request: Request) -> dict:
        return fleet.report(vault, request.state.agent, job_id)

    @app.post(f"{PREFIX}/catalog/{{method}}")
    def catalog(method: Annotated[str, Path(pattern=METHOD)], request: Request,
                body: Annotated[CatalogCall, Body()]) -> Response:
        result = fleet.call(vault, scopes, request.state.agent, method, body.args, body.kwargs)
        return Response(json.dumps({"result": result}, default=str, ensure_ascii=False,
                                   allow_nan=False, separators=(",", ":")),
                        media_type="application/json")

    return app
