"""Tokens, portal users and the audit log (Backup Contributor only), and who am I."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from dbsafe.api.deps import need, principal, vault
from dbsafe.core import bounds
from dbsafe.services import operations
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal
from dbsafe.web.fields import Limit

router = APIRouter(tags=["access"])
Role = Literal[operations.ROLES]  # type: ignore[valid-type]
Name = Annotated[str, Field(min_length=1, max_length=bounds.ACCOUNT_MAX,
                            pattern=bounds.ACCOUNT_PATTERN)]


class TokenRequest(BaseModel):
    model_config = {"extra": "forbid"}
    name: Name
    role: Role


class UserRequest(BaseModel):
    model_config = {"extra": "forbid"}
    name: Name
    role: Role
    password: str = Field(min_length=operations.MIN_PASSWORD, max_length=1024)


@router.get("/whoami")
def whoami(caller: Principal = Depends(principal)) -> dict:
    """The caller's name, role and what that role may do."""
    return {"name": caller.name, "role": caller.role,
            "permissions": sorted(operations.PERMISSIONS[caller.role])}


@router.get("/tokens", dependencies=[Depends(need("admin"))])
def list_tokens(v: Vault = Depends(vault)) -> list[dict]:
    return operations.list_tokens(v.catalog)


@router.post("/tokens", status_code=201)
def create_token(body: TokenRequest, caller: Principal = Depends(need("admin")),
                 v: Vault = Depends(vault)) -> dict:
    """A new token; its secret (``token``) is in this answer only."""
    return operations.create_token(v.catalog, body.name, body.role, caller.name)


@router.delete("/tokens/{token_id}", dependencies=[Depends(need("admin"))])
def revoke_token(token_id: str, v: Vault = Depends(vault)) -> dict:
    return operations.revoke_token(v.catalog, token_id)


@router.get("/users", dependencies=[Depends(need("admin"))])
def list_users(v: Vault = Depends(vault)) -> list[dict]:
    return v.catalog.list_users()


@router.post("/users", status_code=201, dependencies=[Depends(need("admin"))])
def add_user(body: UserRequest, v: Vault = Depends(vault)) -> dict:
    return operations.add_user(v.catalog, body.name, body.role, body.password)


@router.delete("/users/{name}", dependencies=[Depends(need("admin"))])
def remove_user(name: str, v: Vault = Depends(vault)) -> dict:
    return operations.remove_user(v.catalog, name)


@router.get("/audit", dependencies=[Depends(need("admin"))])
def audit_log(limit: Limit = 100,
              before_id: int | None = Query(None, ge=1, le=2**62),
              actor: str | None = Query(None, max_length=200),
              v: Vault = Depends(vault)) -> list[dict]:
    """Changes, newest first: who, what, when, from where, and the outcome."""
    return operations.audit_log(v.catalog, limit, before_id, actor)
