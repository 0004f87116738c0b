"""The viewer's own settings: the zone the portal shows instants in (UTC unless chosen),
kept in a cookie of this browser; the CLI, the API and the docs keep UTC."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from dbsafe.core.errors import DbsafeError
from dbsafe.portal.web import ZONE_COOKIE, caller, check_csrf, cookie_secure, zone_named
from dbsafe.services.operations import Principal

router = APIRouter()
YEAR = 365 * 86400


@router.post("/viewer/zone")
def choose_zone(request: Request, zone: str = Form("UTC", max_length=64),
                back: str = Form("/", max_length=2000), csrf_token: str = Form(""),
                me: Principal = Depends(caller)) -> RedirectResponse:
    check_csrf(me, csrf_token)
    if zone != "UTC" and zone_named(zone) is None:
        raise DbsafeError("time.zone_unknown", zone=zone)
    where = urlsplit(back)  # back to the page it was chosen on, never another site
    path = where.path if where.path.startswith("/") and not where.path.startswith("//") \
        and not where.scheme and not where.netloc else "/"
    response = RedirectResponse(path + (f"?{where.query}" if where.query else ""),
                                status_code=303)
    response.set_cookie(ZONE_COOKIE, zone, max_age=YEAR, samesite="lax", httponly=True,
                        secure=cookie_secure(request))
    return response
