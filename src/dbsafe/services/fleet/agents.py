"""Agents: the one-time registration tokens, the credentials they are traded for, revocation,
and what the control plane knows of each agent (docs/fleet.md, *Registration*).

Secrets are never kept: a token's and a credential's secret part (256 random bits each) are
stored as their SHA-256, compared in constant time. A token is traded once (one UPDATE that
marks it used), and only before it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle.vault_handle import Vault

TOKEN_PREFIX = "dbr_"
CREDENTIAL_PREFIX = "dba_"
TOKEN_MINUTES = (1, 24 * 60)  # a token's life: at least a minute, at most a day
DEFAULT_TOKEN_MINUTES = 60
SILENT_AFTER = timedelta(seconds=180)  # no call for longer: the agent is "silent"
CONTACT_EVERY = timedelta(seconds=15)  # last_contact is written at most this often
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


@dataclass(frozen=True)
class AgentIdentity:
    """An authenticated agent: who calls the agents' API."""

    id: str
    host: str

    @property
    def actor(self) -> str:
        return f"agent:{self.id}"


def _now() -> datetime:
    return datetime.now(UTC)


def _text(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_host(host: str) -> str:
    if not HOST_NAME.fullmatch(host):
        raise DbsafeError("agent.invalid", reason=f"host name {host[:80]!r} is not a host name "
                          "(letters, digits, '.', '_' and '-')")
    return host


def create_token(vault: Vault, created_by: str, host: str | None = None,
                 minutes: int = DEFAULT_TOKEN_MINUTES) -> dict:
    """A one-time registration token; the returned ``token`` is the only time its secret is
    seen. ``host`` limits it to the agent of that host."""
    if not TOKEN_MINUTES[0] <= minutes <= TOKEN_MINUTES[1]:
        raise DbsafeError("agent.invalid", reason=f"a registration token lives {TOKEN_MINUTES[0]}"
                          f" to {TOKEN_MINUTES[1]} minutes, not {minutes}")
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = _now()
    row = {"id": token_id, "secret_hash": _digest(secret),
           "host": check_host(host) if host else None, "created": _text(now),
           "created_by": created_by, "expires": _text(now + timedelta(minutes=minutes))}
    vault.catalog.add_agent_token(row)
    return {"id": token_id, "host": row["host"], "expires": row["expires"],
            "token": f"{TOKEN_PREFIX}{token_id}_{secret}"}


def _split(secret_text: str, prefix: str) -> tuple[str, str] | None:
    if not secret_text.startswith(prefix):
        return None
    ident, _, secret = secret_text.removeprefix(prefix).partition("_")
    return (ident, secret) if ident and secret else None


def register(vault: Vault, token: str, host: str, version: str | None,
             address: str | None) -> tuple[AgentIdentity, str]:
    """Trade a registration token for a new agent's credential: (identity, credential).
    ``agent.token_invalid`` for a token unknown, used, expired or forged."""
    check_host(host)
    parts = _split(token, TOKEN_PREFIX)
    row = vault.catalog.get_agent_token(parts[0]) if parts else None
    if parts is None or row is None or not hmac.compare_digest(row["secret_hash"],
                                                               _digest(parts[1])):
        raise DbsafeError("agent.token_invalid")
    if row["host"] is not None and row["host"] != host:
        raise DbsafeError("agent.token_host", expected=row["host"], host=host)
    agent_id = secrets.token_hex(6)
    now = _text(_now())
    if vault.catalog.use_agent_token(row["id"], now, agent_id) is None:
        raise DbsafeError("agent.token_invalid")  # used or expired, maybe a moment ago
    secret = secrets.token_urlsafe(32)
    vault.catalog.add_agent({"id": agent_id, "host": host, "secret_hash": _digest(secret),
                             "version": version, "address": address, "registered": now,
                             "last_contact": now})
    return AgentIdentity(agent_id, host), f"{CREDENTIAL_PREFIX}{agent_id}_{secret}"


def authenticate(vault: Vault, credential: str, address: str | None = None) -> AgentIdentity:
    """The agent a credential names; ``agent.credential_invalid`` or ``agent.revoked``.
    Records the contact (at most every CONTACT_EVERY: a write per call would make every
    poll a write)."""
    parts = _split(credential, CREDENTIAL_PREFIX)
    row = vault.catalog.get_agent(parts[0]) if parts else None
    if parts is None or row is None or not hmac.compare_digest(row["secret_hash"],
                                                               _digest(parts[1])):
        raise DbsafeError("agent.credential_invalid")
    if row["revoked"] is not None:
        raise DbsafeError("agent.revoked", agent_id=row["id"], host=row["host"],
                          revoked=row["revoked"])
    now = _now()
    last = row["last_contact"]
    if last is None or now - datetime.fromisoformat(last) >= CONTACT_EVERY \
            or (address and address != row["address"]):
        vault.catalog.update_agent(row["id"], last_contact=_text(now),
                                   address=address or row["address"])
    return AgentIdentity(row["id"], row["host"])


def touch(vault: Vault, agent: AgentIdentity, version: str | None = None) -> None:
    """An agent's poll that ends with nothing to do: the time of contact (a waiting poll
    is contact too: the poll's start was the last one written); its version when it says
    one that differs from the one known."""
    fields: dict = {"last_contact": _text(_now())}
    if version is not None:
        row = get_agent(vault, agent.id)
        if row["version"] == version:
            return
        fields = {"version": version}
    vault.catalog.update_agent(agent.id, **fields)


def get_agent(vault: Vault, agent_id: str) -> dict:
    row = vault.catalog.get_agent(agent_id)
    if row is None:
        raise DbsafeError("agent.unknown", agent_id=agent_id)
    return row


def agent_named(vault: Vault, name: str) -> str:
    """The id of the agent ``name`` names: its id, or the host name of exactly one agent
    that is not revoked; ``agent.unknown`` otherwise."""
    rows = vault.catalog.list_agents()
    if any(r["id"] == name for r in rows):
        return name
    found = [r["id"] for r in rows if r["host"] == name and r["revoked"] is None]
    if len(found) != 1:
        raise DbsafeError("agent.unknown", agent_id=name)
    return found[0]


def state_of(row: dict, now: datetime | None = None) -> str:
    """active, silent (no call for longer than SILENT_AFTER) or revoked."""
    if row["revoked"] is not None:
        return "revoked"
    last = row["last_contact"]
    if last is None or (now or _now()) - datetime.fromisoformat(last) > SILENT_AFTER:
        return "silent"
    return "active"


def seconds_since(when: str | None, now: datetime | None = None) -> int | None:
    """Whole seconds from ``when`` to now (never below 0: another host's clock may run
    ahead); None for never."""
    if when is None:
        return None
    return max(0, int(((now or _now()) - datetime.fromisoformat(when)).total_seconds()))


def public(row: dict, servers: list[str], now: datetime | None = None) -> dict:
    """What the CLI, the API, the portal and /metrics show of an agent (never its secret's
    hash); ``since_contact``: seconds since its last call, computed once here for all."""
    now = now or _now()
    return {"id": row["id"], "host": row["host"], "state": state_of(row, now),
            "version": row["version"], "address": row["address"],
            "registered": row["registered"], "last_contact": row["last_contact"],
            "since_contact": seconds_since(row["last_contact"], now),
            "revoked": row["revoked"], "servers": servers}


def servers_of(vault: Vault, agent_id: str) -> list[str]:
    return sorted(s["name"] for s in vault.catalog.list_servers()
                  if s.get("agent_id") == agent_id)


def list_agents(vault: Vault) -> list[dict]:
    now = _now()
    owned: dict[str, list[str]] = {}
    for server in vault.catalog.list_servers():
        if server.get("agent_id"):
            owned.setdefault(server["agent_id"], []).append(server["name"])
    return [public(r, sorted(owned.get(r["id"], [])), now) for r in vault.catalog.list_agents()]


def show_agent(vault: Vault, agent_id: str) -> dict:
    return public(get_agent(vault, agent_id), servers_of(vault, agent_id))


def revoke(vault: Vault, agent_id: str) -> dict:
    """Cut an agent off: its next call is refused; its queued jobs fail (queue.py)."""
    row = get_agent(vault, agent_id)
    if row["revoked"] is None:
        row["revoked"] = _text(_now())
        vault.catalog.update_agent(agent_id, revoked=row["revoked"])
    return public(row, servers_of(vault, agent_id))
