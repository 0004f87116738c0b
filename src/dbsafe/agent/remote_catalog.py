"""The catalog as an agent sees it: every call is sent to the control plane, which answers
only for this agent's servers (services/fleet/scope.py). The services an agent runs are the
control plane's own; they cannot tell this catalog from a local one, except that it
delivers no alerts (``delivers_alerts``: the control plane does) and holds no locks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbsafe.agent.control import ControlPlane
from dbsafe.core.errors import DbsafeError
from dbsafe.services.fleet import SET_RESULTS


class RemoteCatalog:
    delivers_alerts = False

    def __init__(self, control: ControlPlane) -> None:
        self._control = control

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("alive", None)  # a job's liveness is the control plane's own rule
            result = self._control.catalog(method, list(args), kwargs)
            if method in SET_RESULTS:
                return set(result)
            if method == "upsert_alert":
                return tuple(result)
            return result
        return call

    def exclusive(self, name: str) -> Any:
        raise DbsafeError("agent.catalog_remote", path=f"lock {name!r} (held on the "
                          "control plane)")

    def describe(self) -> dict:
        return {"backend": "control plane", "location": self._control.url}

    def close(self) -> None:
        """Nothing to close: the connection is the agent's."""
