"""The ASGI application ``dbsafe serve`` runs: the REST API under ``/api/v1`` and the
portal at ``/``, behind one gate (api/gate.py) and one error format (api/errors.py)."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from dbsafe import __version__
from dbsafe.api import errors
from dbsafe.api.gate import SPEC, Gate
from dbsafe.api.hosts import AllowedHosts
from dbsafe.api.launch import Launcher
from dbsafe.api.routes import (
    access,
    alerts,
    backups,
    checks,
    deletion,
    items,
    jobs,
    planner,
    points,
    policies,
    protection,
    replicasets,
    restores,
    servers,
)
from dbsafe.api.routes import vault as vault_routes
from dbsafe.api.streams import StreamSlots
from dbsafe.services import lifecycle, operations
from dbsafe.services.handle import Vault

API_PREFIX = "/api/v1"
ROUTERS = [items.router, jobs.router, backups.router, points.router, restores.router,
           access.router]
# the rest of the CLI's actions
ROUTERS += [servers.router, protection.router, replicasets.router, policies.router,
            alerts.router, planner.router, checks.router, deletion.router,
            vault_routes.router]


def api_router() -> APIRouter:
    router = APIRouter(responses=errors.COMMON_RESPONSES)

    @router.get("/health", tags=["service"])
    def health() -> dict:
        """Liveness, without a token (it says nothing about the vault's contents)."""
        return {"status": "ok", "version": __version__}

    for r in ROUTERS:
        router.include_router(r)
    return router


def create_app(vault_path: Path, *, secure_cookies: bool = False,
               hosts: AllowedHosts | None = None) -> FastAPI:
    """The app over the vault at ``vault_path`` (opened once; launched jobs open their own).
    ``secure_cookies``: the portal's cookies get ``Secure`` (HTTPS here or at a proxy);
    ``hosts``: the names it answers to (default: the loopback names, api/hosts.py)."""
    vault = Vault.open(vault_path)
    launcher = Launcher(vault.path)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # the first listing of points reconciles the catalog with the repository (seconds
        # on a large vault): done now, in the background, rather than in a user's request
        threading.Thread(target=lifecycle.reconcile, args=(vault,), name="reconcile",
                         daemon=True).start()
        yield
        launcher.shutdown(vault.catalog)
        _app.state.login_guard.shutdown()

    app = FastAPI(title="dbsafe", version=__version__, lifespan=lifespan,
                  description="Backup vault for PostgreSQL: servers, protection, policies, "
                              "backups, points, restores, jobs, alerts. Send "
                              "`Authorization: Bearer TOKEN` (`dbsafe token create`).",
                  docs_url="/api/docs", redoc_url=None, openapi_url=SPEC,
                  swagger_ui_oauth2_redirect_url=None)
    app.state.vault = vault
    app.state.launcher = launcher
    app.state.secure_cookies = secure_cookies
    app.state.streams = StreamSlots()
    app.state.overview = operations.OverviewCache(lambda: Vault.open(vault.path))
    errors.install(app)
    app.include_router(api_router(), prefix=API_PREFIX)
    from dbsafe.portal import pages
    pages.install(app)
    app.add_middleware(Gate, catalog=lambda: vault.catalog,
                       changed=app.state.overview.invalidate, hosts=hosts)
    return app
