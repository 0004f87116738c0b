"""A registration token together with the command that uses it on the VM: what `dbsafe
agent token create`, ``POST /api/v1/agent-tokens`` and the portal's "Register a VM" show.
Built here once, so the three always print the same command (docs/fleet.md,
*Registration*).

The command names the control plane's agents' address and its certificate's fingerprint,
which `dbsafe serve --agents-host` records in the vault's settings when it starts
listening. Before that there is nothing to name: the answer says so (``note``) and the
command carries a placeholder address to replace.
"""

from __future__ import annotations

from dbsafe.services.fleet.agents import DEFAULT_TOKEN_MINUTES, create_token
from dbsafe.services.handle.vault_handle import Vault

PLACEHOLDER_URL = "https://CONTROL-PLANE:8271"
NO_LISTENER = ("this control plane has not listened for agents yet, so the command cannot "
               "name its address and certificate: start `dbsafe serve --agents-host ADDRESS` "
               "first, then create a token again")


def register_command(url: str | None, token: str, fingerprint: str | None) -> str:
    """The command to run as root on the VM."""
    return (f"dbsafe agent register {url or PLACEHOLDER_URL} --token {token}"
            + (f" --fingerprint {fingerprint}" if fingerprint else ""))


def registration_token(vault: Vault, created_by: str, host: str | None = None,
                       minutes: int = DEFAULT_TOKEN_MINUTES, url: str | None = None) -> dict:
    """A new one-time token (``create_token``) with the control plane's agents' address
    (``url``, else the one recorded), its certificate's fingerprint, the ``command`` to run
    on the VM, and a ``note`` when no listener was recorded (None otherwise)."""
    row = create_token(vault, created_by, host, minutes)
    listener = vault.settings.get("agents") or {}
    url = url or listener.get("url")
    fingerprint = listener.get("fingerprint")
    return {**row, "url": url, "fingerprint": fingerprint,
            "command": register_command(url, row["token"], fingerprint),
            "note": None if fingerprint else NO_LISTENER}
