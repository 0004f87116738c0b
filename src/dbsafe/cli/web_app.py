"""The ASGI application ``dbsafe serve`` runs: the REST API under ``/api/v1`` (dbsafe.api),
Prometheus' ``/metrics`` (api/metrics.py) and the portal at ``/`` (dbsafe.portal), behind
one gate (api/gate.py) and one error format (api/errors.py; a page's errors are pages). The
API and the portal never import each other: this is where both are put together."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from dbsafe import __version__
from dbsafe.api import errors, metrics
from dbsafe.api.app import API_PREFIX, api_router
from dbsafe.api.errors import SPEC
from dbsafe.api.gate import Gate
from dbsafe.api.hosts import AllowedHosts
from dbsafe.api.launch import Launcher
from dbsafe.api.streams import StreamSlots
from dbsafe.portal import pages, web
from dbsafe.portal.dashboard_cache import DashboardCache
from dbsafe.services import lifecycle, operations
from dbsafe.services.handle import Vault


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
    app.state.dashboard = DashboardCache()
    # /metrics' figures, read at most every few seconds on a handle of their own
    app.state.metrics = metrics.registry(metrics.Figures(lambda: Vault.open(vault.path)))
    errors.install(app)
    app.include_router(api_router(), prefix=API_PREFIX)
    app.include_router(metrics.router)
    pages.install(app)
    app.state.error_page = web.error_page  # errors of pages (not of the API): a page
    app.add_middleware(Gate, catalog=lambda: vault.catalog, changed=_changed(app), hosts=hosts)
    return app


def _changed(app: FastAPI) -> Callable[[], None]:
    """What a change made through this process drops: the overview, the dashboard's rest."""
    def changed() -> None:
        app.state.overview.invalidate()
        app.state.dashboard.invalidate()
    return changed
