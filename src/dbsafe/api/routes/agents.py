"""A fleet's agents (docs/fleet.md): list and show them (any role), revoke one, and create
a registration token with the command to run on the VM (Backup Contributor: ``admin``,
like the API's own tokens — a token makes a new agent, which then runs jobs with the
vault's data)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, vault
from dbsafe.services import fleet
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal

router = APIRouter(tags=["fleet"])
AGENT_ID = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class AgentTokenRequest(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    host: str | None = Field(None, min_length=1, max_length=253,
                             pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                             description="only the agent of this host may use it")
    expires_minutes: int = Field(fleet.DEFAULT_TOKEN_MINUTES, ge=fleet.TOKEN_MINUTES[0],
                                 le=fleet.TOKEN_MINUTES[1],
                                 description="minutes it may be used in")


@router.get("/agents", dependencies=[Depends(need("read"))])
def list_agents(v: Vault = Depends(vault)) -> list[dict]:
    """Every agent: host, state (active, silent, revoked), version, last contact (and
    seconds since), servers."""
    return fleet.list_agents(v)


@router.get("/agents/{agent_id}", dependencies=[Depends(need("read"))])
def show_agent(agent_id: str = AGENT_ID, v: Vault = Depends(vault)) -> dict:
    return fleet.show_agent(v, agent_id)


@router.delete("/agents/{agent_id}", dependencies=[Depends(need("admin"))])
def revoke_agent(agent_id: str = AGENT_ID, v: Vault = Depends(vault)) -> dict:
    """Cut an agent off: its next call is refused, its queued jobs fail."""
    return fleet.revoke(v, agent_id)


@router.post("/agent-tokens", status_code=201)
def create_agent_token(body: AgentTokenRequest, caller: Principal = Depends(need("admin")),
                       v: Vault = Depends(vault)) -> dict:
    """A one-time registration token (``token``, in this answer only), its expiry, and
    ``command``: what to run as root on the VM. Without an agents' listener recorded
    (`dbsafe serve --agents-host`), ``note`` says so and the command's address is a
    placeholder."""
    return fleet.registration_token(v, caller.name, body.host, body.expires_minutes)
