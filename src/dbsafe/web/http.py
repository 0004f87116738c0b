"""HTTP details the API and the portal share."""

from __future__ import annotations

from fastapi.responses import Response

from dbsafe.core.errors import DbsafeError

# The portal's session cookie: set at login (portal/routes/session.py), read by the gate in
# front of every request (api/gate.py).
SESSION_COOKIE = "dbsafe_session"


def retry_after(response: Response, error: DbsafeError) -> None:
    """An error that says when to come back (429, 503) carries it in ``Retry-After``."""
    if "retry_after" in error.details:
        response.headers["Retry-After"] = str(error.details["retry_after"])
