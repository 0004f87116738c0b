"""An agent's registration with its control plane, and what it keeps of it on the VM
(docs/fleet.md, *Registration*).

The agent's folder (``DBSAFE_AGENT_HOME``, else ``/var/lib/dbsafe/agent``; root's alone,
0700) holds ``agent.json`` (the control plane's address, the agent's id and credential, how
the control plane's certificate is trusted), the pinned certificate, and ``vault/``: the
agent's client folder of the repository (what it pins of the vault, a key once imported).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dbsafe.agent.control import ControlPlane
from dbsafe.agent.outbox import Outbox
from dbsafe.agent.remote_catalog import RemoteCatalog
from dbsafe.core.errors import DbsafeError
from dbsafe.core.private_files import write_private
from dbsafe.services.handle import Vault
from dbsafe.web.tls import fetch_certificate, fingerprint, pinned_context, same_fingerprint

STATE_FILE = "agent.json"
OUTBOX_FILE = "outbox.jsonl"
PINNED_CERT = "control-plane.pem"
DEFAULT_HOME = Path("/var/lib/dbsafe/agent")


def agent_home() -> Path:
    return Path(os.environ.get("DBSAFE_AGENT_HOME") or DEFAULT_HOME)


@dataclass(frozen=True)
class Enrolment:
    home: Path
    url: str
    agent_id: str
    host: str
    credential: str
    ca_file: str | None

    @property
    def vault_path(self) -> Path:
        return self.home / "vault"

    def control(self) -> ControlPlane:
        pinned = self.home / PINNED_CERT
        context = pinned_context(pinned if self.ca_file is None else None,
                                 Path(self.ca_file) if self.ca_file else None)
        return ControlPlane(self.url, context, self.credential)

    def outbox(self) -> Outbox:
        return Outbox(self.home / OUTBOX_FILE)

    def open_vault(self, catalog: RemoteCatalog) -> Vault:
        """The vault with the control plane's catalog. Reconciling the catalog with the
        repository's manifests is the control plane's work: it sees every server's rows,
        an agent only its own (every other point would look missing from the catalog)."""
        vault = Vault.open(self.vault_path, catalog=catalog)
        vault.agent_id = self.agent_id
        return vault


def load(home: Path | None = None) -> Enrolment:
    home = home or agent_home()
    try:
        state = json.loads((home / STATE_FILE).read_text())
    except FileNotFoundError:
        raise DbsafeError("agent.not_registered") from None
    except ValueError:
        raise DbsafeError("vault.object_corrupt", path=home / STATE_FILE,
                          reason="not JSON") from None
    return Enrolment(home, state["url"], state["agent_id"], state["host"], state["credential"],
                     state.get("ca_file"))


def registered(home: Path | None = None) -> bool:
    return ((home or agent_home()) / STATE_FILE).exists()


def register(url: str, token: str, *, fingerprint_given: str | None = None,
             ca_file: Path | None = None, host: str | None = None, force: bool = False,
             home: Path | None = None) -> dict:
    """Check the control plane's certificate (the fingerprint given, or a CA), trade the
    token for this agent's credential, and make the agent's client folder of the vault
    with the pins the control plane sent. Nothing is sent before the certificate checks."""
    home = home or agent_home()
    if registered(home) and not force:
        old = load(home)
        raise DbsafeError("agent.already_registered", agent_id=old.agent_id, url=old.url)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise DbsafeError("agent.invalid", reason=f"the control plane's address {url[:200]!r} "
                          "is not an https:// URL")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    pinned = None
    if ca_file is None:
        if fingerprint_given is None:
            raise DbsafeError("agent.trust_needed", url=url,
                              reason="no --fingerprint and no --ca-file were given")
        pem = fetch_certificate(parts.hostname, parts.port or 443)
        found = fingerprint(pem)
        if not same_fingerprint(found, fingerprint_given):
            raise DbsafeError("agent.fingerprint_mismatch", url=url, found=found,
                              expected=fingerprint_given)
        pinned = home / PINNED_CERT
        write_private(pinned, pem)
    context = pinned_context(pinned, ca_file)
    host = host or socket.gethostname()
    control = ControlPlane(url, context)
    try:
        answer = control.register(token, host)
    finally:
        control.close()
    state = {"url": url, "agent_id": answer["agent_id"], "host": answer["host"],
             "credential": answer["credential"],
             "ca_file": str(ca_file.resolve()) if ca_file else None,
             "vault_id": answer["vault"]["vault_id"]}
    vault_path = home / "vault"
    if force and vault_path.exists():
        _set_aside(vault_path)
    write_private(home / STATE_FILE, json.dumps(state, indent=2).encode())
    enrolment = load(home)
    control = enrolment.control()
    try:
        Vault.join(vault_path, answer["vault"]["repository"], answer["vault"]["pins"],
                   RemoteCatalog(control))
    finally:
        control.close()
    return {"agent_id": state["agent_id"], "host": state["host"], "url": url,
            "vault_id": state["vault_id"], "home": str(home)}


def _set_aside(path: Path) -> None:
    path.rename(path.with_name(f"{path.name}.replaced-{secrets.token_hex(3)}"))
