"""Mounts the portal on the app: its pages, static files, and how a page answers a caller
it does not know (a redirect to /login) or an error (an error page, not JSON)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from dbsafe.portal.login_guard import LoginGuard
from dbsafe.portal.routes import (
    access,
    alerts,
    audit,
    channels,
    dashboard,
    database,
    databases,
    hosts,
    instant,
    jobs,
    planner,
    policies,
    reports,
    restore,
    server_tasks,
    servers,
    session,
    settings,
    viewer,
)
from dbsafe.portal.web import HERE, LoginNeeded, login_redirect

ROUTERS = [session.router, dashboard.router, databases.router, database.router,
           restore.router, hosts.router, servers.router, server_tasks.router, jobs.router,
           policies.router, alerts.router, planner.router, audit.router, reports.router,
           settings.router, channels.router, access.router, viewer.router,
           instant.router]


def install(app: FastAPI) -> None:
    app.state.login_guard = LoginGuard()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router, include_in_schema=False)

    @app.exception_handler(LoginNeeded)
    async def _login(_request: Request, exc: LoginNeeded):
        return login_redirect(exc.next_url)
