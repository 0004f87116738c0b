"""Mounts the portal on the app: its pages, static files, and how a page answers a caller
it does not know (a redirect to /login) or an error (an error page, not JSON)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from dbsafe.portal.routes import dashboard, database, restore, session
from dbsafe.portal.web import HERE, LoginNeeded, login_redirect

ROUTERS = [session.router, dashboard.router,
           database.router, restore.router]  # database page, restore wizard (issue 8)


def install(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router, include_in_schema=False)

    @app.exception_handler(LoginNeeded)
    async def _login(_request: Request, exc: LoginNeeded):
        return login_redirect(exc.next_url)


# portal pages: lists, servers, policies, alerts, planner, jobs (issue 8 part 3) --------
def _portal_pages() -> list:
    from dbsafe.portal.routes import alerts, databases, jobs, planner, policies, servers

    return [databases.router, servers.router, policies.router, alerts.router,
            planner.router, jobs.router]


ROUTERS += _portal_pages()
# end of portal pages ---------------------------------------------------------------------
