"""Who may do what: API tokens, portal users and sessions, roles, and the audit log.

Roles mirror the cloud service's three built-in ones:

- ``reader`` (Backup Reader): reads everything, changes nothing;
- ``operator`` (Backup Operator): everything except deleting backup data, stopping
  protection with its data deleted, and changing policies;
- ``contributor`` (Backup Contributor): everything, tokens and users too.

Every endpoint names the *permission* it needs (``read``, ``operate``, ``delete``,
``policy``, ``admin``); a role is the set of permissions it holds. Secrets are never kept:
a token is ``dbs_<id>_<secret>`` and the catalog holds the SHA-256 of the secret (256 random
bits: a slow hash adds nothing); a password is kept as an argon2id hash (argon2-cffi); a
session cookie is kept as its SHA-256 too, so a copy of the catalog opens nothing.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from dbsafe.catalog.base import Catalog
from dbsafe.core.errors import DbsafeError

if TYPE_CHECKING:
    from argon2 import PasswordHasher

ROLES = ("reader", "operator", "contributor")
PERMISSIONS = {
    "reader": frozenset({"read"}),
    "operator": frozenset({"read", "operate"}),
    "contributor": frozenset({"read", "operate", "delete", "policy", "admin"}),
}
# What each permission lets a caller do (error messages say it in these words).
DOING = {"read": "read backup data", "operate": "run backups and restores or protect",
         "delete": "delete backup data", "policy": "change policies",
         "admin": "manage tokens and users"}
TOKEN_PREFIX = "dbs_"
SESSION_IDLE = timedelta(hours=1)
SESSION_MAX = timedelta(hours=12)
MIN_PASSWORD = 12
SHOWN_NAME_MAX = 64       # characters of a typed user name kept in the audit log
DEVICE_MAX = timedelta(days=90)
DEVICE_KEEP = 20          # device cookies remembered per user


@functools.cache
def _hasher() -> PasswordHasher:
    """argon2's hasher, made when a password is first set or checked: every command imports
    this module (the audit), few handle passwords."""
    from argon2 import PasswordHasher

    return PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``name`` (``token:<name>``, ``user:<name>``, ``cli:<os user>``), role,
    and for a portal session its CSRF token."""

    name: str
    role: str
    csrf: str | None = None

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]

    def require(self, permission: str) -> None:
        if not self.may(permission):
            needed = next(r for r in ROLES if permission in PERMISSIONS[r])
            raise DbsafeError("auth.forbidden", role=self.role, action=DOING[permission],
                              needed=needed)


def now_text(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="seconds")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise DbsafeError("auth.role_unknown", role=role)
    return role


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def cli_principal() -> Principal:
    """The CLI runs with the vault's files: whoever can read them holds every role."""
    return Principal(f"cli:{getpass.getuser()}", "contributor")


# tokens -------------------------------------------------------------------------------
def create_token(catalog: Catalog, name: str, role: str, created_by: str) -> dict:
    """A new token; the returned ``token`` is the only time its secret is seen."""
    check_role(role)
    token_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    row = {"id": token_id, "name": name, "role": role, "secret_hash": _digest(secret),
           "created": now_text(), "created_by": created_by}
    catalog.add_token(row)
    return {**public_token(row), "token": f"{TOKEN_PREFIX}{token_id}_{secret}"}


def public_token(row: dict) -> dict:
    return {k: row.get(k) for k in ("id", "name", "role", "created", "created_by",
                                    "last_used", "revoked")}


def list_tokens(catalog: Catalog) -> list[dict]:
    return [public_token(r) for r in catalog.list_tokens()]


def revoke_token(catalog: Catalog, token_id: str) -> dict:
    """Revoke a token and end the portal sessions opened with it (a session whose token is
    revoked is refused anyway: ``session_principal`` checks the token too)."""
    row = catalog.get_token(token_id)
    if row is None:
        raise DbsafeError("token.unknown", token_id=token_id)
    if row["revoked"] is None:
        row["revoked"] = now_text()
        catalog.update_token(token_id, revoked=row["revoked"])
    catalog.remove_sessions(token_id=token_id)
    return public_token(row)


def token_principal(catalog: Catalog, token: str) -> Principal:
    """The caller a bearer token names; ``auth.invalid`` for anything else."""
    return _token_row(catalog, token)[1]


def _token_row(catalog: Catalog, token: str) -> tuple[str, Principal]:
    """(token id, principal) of a valid token; ``auth.invalid`` for anything else."""
    token_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
    row = catalog.get_token(token_id) if token.startswith(TOKEN_PREFIX) and secret else None
    if (row is None or row["revoked"] is not None
            or not hmac.compare_digest(row["secret_hash"], _digest(secret))):
        raise DbsafeError("auth.invalid")
    now = datetime.now(UTC)
    if row["last_used"] is None or now - datetime.fromisoformat(row["last_used"]) > \
            timedelta(minutes=1):  # a write per call would make every read a write
        catalog.update_token(token_id, last_used=now_text(now))
    return token_id, Principal(f"token:{row['name']}", row["role"])


def token_login(catalog: Catalog, token: str) -> tuple[str, Principal]:
    """A portal session for a pasted token: (cookie value, principal). The session records
    the token, so revoking the token ends it."""
    token_id, principal = _token_row(catalog, token)
    return open_session(catalog, principal, token_id=token_id)


# users and sessions ---------------------------------------------------------------------
def add_user(catalog: Catalog, name: str, role: str, password: str) -> dict:
    check_role(role)
    if len(password) < MIN_PASSWORD:
        raise DbsafeError("user.password_weak", length=len(password), minimum=MIN_PASSWORD)
    if not catalog.add_user(name, role, _hasher().hash(password), now_text()):
        raise DbsafeError("user.exists", name=name)
    return {"name": name, "role": role}


def remove_user(catalog: Catalog, name: str) -> dict:
    if not catalog.remove_user(name):
        raise DbsafeError("user.unknown", name=name)
    catalog.remove_sessions(principal=f"user:{name}")
    catalog.remove_login_devices(name)
    return {"name": name, "removed": True}


def shown_name(text: str, limit: int = SHOWN_NAME_MAX) -> str:
    """A name someone typed, as the audit log and the log keep it: printable characters
    only (any other, a newline or a terminal escape, becomes ``?``), at most ``limit`` of
    them (a longer one is cut and ends with ``…``)."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit + 1])
    return clean if len(clean) <= limit else clean[:limit - 1] + "…"


def remember_device(catalog: Catalog, user_name: str) -> str:
    """A new device cookie for a browser that just logged in as ``user_name`` (kept as its
    SHA-256, the user's ``DEVICE_KEEP`` newest only)."""
    value = secrets.token_urlsafe(32)
    catalog.add_login_device(_digest(value), user_name,
                             datetime.now(UTC).isoformat(timespec="microseconds"), DEVICE_KEEP)
    return value


def device_user(catalog: Catalog, value: str | None) -> str | None:
    """The user a device cookie was given to, if it is one and not older than
    ``DEVICE_MAX``."""
    if not value or len(value) > 100:
        return None
    row = catalog.get_login_device(_digest(value))
    if row is None or datetime.fromisoformat(row["created"]) < datetime.now(UTC) - DEVICE_MAX:
        return None
    return row["user_name"]


def login(catalog: Catalog, name: str, password: str) -> tuple[str, Principal]:
    """Check a password and open a session: (cookie value, principal)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    row = catalog.get_user(name)
    try:
        if row is None:
            _hasher().hash(password)  # the same work either way: timing says nothing
            raise VerificationError
        _hasher().verify(row["password_hash"], password)
    except (VerificationError, InvalidHashError):
        raise DbsafeError("auth.bad_login") from None
    return open_session(catalog, Principal(f"user:{name}", row["role"]))


def open_session(catalog: Catalog, principal: Principal, token_id: str | None = None
                 ) -> tuple[str, Principal]:
    """A session for a principal already authenticated (a password, or the token
    ``token_id`` pasted into the login form)."""
    now = datetime.now(UTC)
    catalog.remove_sessions(before=now_text(now))
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    catalog.add_session({"id_hash": _digest(session_id), "principal": principal.name,
                         "role": principal.role, "csrf": csrf, "created": now_text(now),
                         "expires": now_text(now + SESSION_IDLE),
                         "absolute_expiry": now_text(now + SESSION_MAX),
                         "token_id": token_id})
    return session_id, Principal(principal.name, principal.role, csrf)


def session_principal(catalog: Catalog, session_id: str) -> Principal:
    """The caller a session cookie names. A session opened with a token is refused once
    the token is revoked, even if its row outlived the revocation (a login that raced it)."""
    row = catalog.get_session(_digest(session_id))
    now = datetime.now(UTC)
    if (row is None or min(row["expires"], row["absolute_expiry"]) < now_text(now)
            or row["token_live"] == 0):
        raise DbsafeError("auth.invalid")
    if datetime.fromisoformat(row["expires"]) - now < SESSION_IDLE - timedelta(minutes=1):
        catalog.update_session(row["id_hash"], expires=now_text(now + SESSION_IDLE))
    return Principal(row["principal"], row["role"], row["csrf"])


def end_session(catalog: Catalog, session_id: str) -> None:
    catalog.remove_sessions(id_hash=_digest(session_id))


# the audit log ---------------------------------------------------------------------------
def audit(catalog: Catalog, principal: Principal, source: str, action: str,
          target: str | None, outcome: str, detail: dict | None = None) -> None:
    """One line of the audit log: ``outcome`` is ``ok`` or an error code."""
    catalog.add_audit({"at": now_text(), "actor": principal.name, "role": principal.role,
                       "source": source, "action": action, "target": target,
                       "outcome": outcome,
                       "detail": json.dumps(detail, sort_keys=True) if detail else None})


def audit_log(catalog: Catalog, limit: int = 100, before_id: int | None = None,
              actor: str | None = None) -> list[dict]:
    rows = catalog.list_audit(limit, before_id, actor)
    for r in rows:
        r["detail"] = json.loads(r["detail"]) if r["detail"] else None
    return rows
