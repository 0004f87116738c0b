"""The REST API's routes under ``/api/v1`` (``api_router``). The app ``dbsafe serve`` runs
puts them together with the portal, behind one gate (api/gate.py) and one error format
(api/errors.py): cli/web_app.py."""

from __future__ import annotations

from fastapi import APIRouter

from dbsafe import __version__
from dbsafe.api import errors
from dbsafe.api.routes import (
    access,
    agents,
    alerts,
    backups,
    checks,
    deletion,
    instant,
    items,
    jobs,
    planner,
    points,
    policies,
    protection,
    replicasets,
    reports,
    restores,
    servers,
)
from dbsafe.api.routes import vault as vault_routes

API_PREFIX = "/api/v1"
ROUTERS = [items.router, jobs.router, backups.router, points.router, restores.router,
           access.router]
# the rest of the CLI's actions
ROUTERS += [servers.router, protection.router, replicasets.router, policies.router,
            alerts.router, planner.router, checks.router, deletion.router,
            vault_routes.router, reports.router, instant.router]
# a fleet's agents and their registration (docs/fleet.md)
ROUTERS += [agents.router]


def api_router() -> APIRouter:
    router = APIRouter(responses=errors.COMMON_RESPONSES)

    @router.get("/health", tags=["service"])
    def health() -> dict:
        """Liveness, without a token (it says nothing about the vault's contents)."""
        return {"status": "ok", "version": __version__}

    for r in ROUTERS:
        router.include_router(r)
    return router
