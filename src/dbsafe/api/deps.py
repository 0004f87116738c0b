"""What endpoints ask FastAPI for: the vault, the launcher, and a caller allowed to act.

Both are ``async`` (they only look at the request): FastAPI runs a plain ``def`` dependency
in its thread pool, a hop that costs more than the check on the most frequent calls.

``need("operate")`` is the first dependency of every endpoint that acts: it runs before the
endpoint looks anything up, so a caller without the role is refused (403) whatever the path
names, and learns nothing of what exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request

from dbsafe.api.launch import Launcher
from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle import Vault
from dbsafe.services.operations import Principal


def vault(request: Request) -> Vault:
    return request.app.state.vault


def launcher(request: Request) -> Launcher:
    return request.app.state.launcher


async def principal(request: Request) -> Principal:
    found = getattr(request.state, "principal", None)
    if found is None:
        raise DbsafeError("auth.required")
    return found


def need(permission: str) -> Callable[..., Awaitable[Principal]]:
    async def check(caller: Principal = Depends(principal)) -> Principal:
        caller.require(permission)
        return caller
    check.__name__ = f"need_{permission}"
    return check
