"""What every portal page shares: templates, the caller (or a redirect to the login page),
CSRF checks on forms, and rendering of errors as a page rather than JSON."""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from dbsafe.core import stamps, units
from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal
from dbsafe.web.http import retry_after

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


ZONE_COOKIE = "dbsafe_zone"
# the zones the header offers (routes/viewer.py takes any IANA name; these are the common)
ZONES = ["UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Madrid",
         "Europe/Rome", "Europe/Warsaw", "Europe/Helsinki", "Europe/Moscow", "Africa/Cairo",
         "Africa/Johannesburg", "Asia/Dubai", "Asia/Kolkata", "Asia/Singapore",
         "Asia/Shanghai", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland",
         "America/Sao_Paulo", "America/New_York", "America/Chicago", "America/Denver",
         "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu"]
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
# the zone the page being rendered shows instants in (the viewer's choice; None: UTC)
viewer_zone: ContextVar[ZoneInfo | None] = ContextVar("viewer_zone", default=None)


def zone_named(name: str | None) -> ZoneInfo | None:
    """The IANA zone ``name`` names, or None (UTC, an unknown or malformed name)."""
    if not name or len(name) > 64 or not _ZONE_NAME.fullmatch(name) or name == "UTC":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_of(request: Request) -> ZoneInfo | None:
    """The zone the viewer chose to read instants in (the ``dbsafe_zone`` cookie)."""
    return zone_named(request.cookies.get(ZONE_COOKIE))


def when(text: str | None, never: str = "never") -> str:
    """An instant as every page shows it: as the CLI shows it (core/stamps.py), in UTC, or
    in the zone the viewer chose, named."""
    return stamps.shown(text, viewer_zone.get()) if text else never


def ago(seconds: int | None, never: str = "never") -> str:
    """How long ago (the exact instant is beside it, in a title)."""
    return never if seconds is None else stamps.ago(seconds)


def duration(job: dict) -> str:
    """How long a job took, or has run so far."""
    if not job.get("start_time"):
        return ""
    end = stamps.parse(job["end_time"]) if job.get("end_time") else datetime.now(UTC)
    return units.duration_text(max(0.0, (end - stamps.parse(job["start_time"])).total_seconds()))


def span(seconds: int) -> str:
    """A length of time at a glance ("12 min", "3 h"): how much a restore now would lose."""
    return stamps.ago(seconds).removesuffix(" ago")


templates.env.filters["when"] = when
templates.env.filters["ago"] = ago
templates.env.filters["span"] = span
templates.env.filters["size"] = units.size_text
templates.env.filters["duration"] = duration


class LoginNeeded(Exception):
    """Raised by ``caller`` for a page asked without a valid session: the app answers with
    a redirect to /login (portal/pages.py installs the handler)."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def caller(request: Request) -> Principal:
    found = getattr(request.state, "principal", None)
    if found is None:
        raise LoginNeeded(str(request.url.path))
    return found


def vault(request: Request) -> Vault:
    return request.app.state.vault


def items(request: Request) -> list[dict]:
    """Every protected item with its health, from the app's overview snapshot (renewed in
    the background: a page never lists the whole vault itself)."""
    return request.app.state.overview.get().items


class Fragments:
    """Rendered pieces of pages that depend only on the overview snapshot and the query
    (not on who asks): a table of 100 items costs ~10 ms to render and the same first
    page is asked for by everyone with the portal open, so each is rendered once per
    snapshot (at most every 2 s)."""

    LIMIT = 256

    def __init__(self) -> None:
        self._snapshot: object = None
        self._rendered: dict[tuple, Markup] = {}

    def get(self, snapshot: object, key: tuple, template: str, request: Request,
            **context) -> Markup:
        if snapshot is not self._snapshot or len(self._rendered) >= self.LIMIT:
            self._snapshot, self._rendered = snapshot, {}
        zone = zone_of(request)  # its instants are shown in the viewer's zone
        key = (*key, zone)
        found = self._rendered.get(key)
        if found is None:
            token = viewer_zone.set(zone)
            try:
                found = Markup(templates.env.get_template(template).render(**context))
            finally:
                viewer_zone.reset(token)
            self._rendered[key] = found
        return found


fragments = Fragments()


def check_csrf(principal: Principal, token: str | None) -> None:
    """A session's forms carry its CSRF token; a bearer-token caller sends no cookie, so
    a forged cross-site form cannot act for it."""
    if principal.csrf is not None and token != principal.csrf:
        raise DbsafeError("auth.csrf")


def page(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    zone = zone_of(request)
    token = viewer_zone.set(zone)
    try:
        return templates.TemplateResponse(
            request, template, {"me": principal, "zone": zone.key if zone else "UTC",
                                "zones": ZONES, **context}, status_code=status_code)
    finally:
        viewer_zone.reset(token)


def login_redirect(next_url: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(next_url)}", status_code=303)


def error_page(request: Request, error: DbsafeError) -> HTMLResponse:
    request.state.error_code = error.code
    response = page(request, "error.html", status_code=error.spec.http_status, error=error)
    retry_after(response, error)
    return response


def cookie_secure(request: Request) -> bool:
    """Whether cookies get ``Secure``: when dbsafe serves HTTPS itself, runs behind a TLS
    proxy (``--behind-tls-proxy``), or the request came over HTTPS as a proxy trusted by
    ``--forwarded-allow-ips`` says (nobody else's ``X-Forwarded-Proto`` is believed)."""
    return request.app.state.secure_cookies or request.url.scheme == "https"
