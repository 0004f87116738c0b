"""The catalog as an agent sees it: every call is sent to the control plane, which answers
only for this agent's servers (services/fleet/scope.py). The services an agent runs are the
control plane's own; they cannot tell this catalog from a local one, except that it
delivers no alerts (``delivers_alerts``: the control plane does) and holds no locks.

With the control plane unreachable, WAL archiving goes on (docs/fleet.md, *Resilience*):
the reads it makes are answered with their last answer (``STALE_READS``, kept in a file
for an agent restarted meanwhile), and the reports
it writes wait in the outbox (``WAITING_WRITES``, agent/outbox.py). Every other call fails
as it would, and the job or push that made it with it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbsafe.agent.control import ControlPlane
from dbsafe.agent.outbox import Outbox
from dbsafe.core.errors import DbsafeError
from dbsafe.core.private_files import write_private
from dbsafe.services.fleet import SET_RESULTS

# reads of the archive path, answered from their last answer while the control plane is away
STALE_READS = frozenset({"list_servers", "get_server", "get_policy", "list_policies",
                         "list_items", "list_protected", "get_instance"})
# writes of the archive path that may wait, and what they answer meanwhile
WAITING_WRITES: dict[str, Any] = {"add_wal_file": None, "resolve_alert_rows": []}
# writes that need not wait: the shipped default policy, which the control plane has
SKIPPED_WRITES: dict[str, Any] = {"insert_policy": False}


class RemoteCatalog:
    delivers_alerts = False

    def __init__(self, control: ControlPlane, outbox: Outbox | None = None,
                 answers: Path | None = None) -> None:
        self._control = control
        self._outbox = outbox
        self._answers_file = answers
        self._answers: dict[str, Any] = _load(answers)
        self._lock = threading.Lock()

    def send(self, method: str, args: list, kwargs: dict) -> Any:
        """One call as the control plane answers it (the outbox's sender too)."""
        return self._control.catalog(method, args, kwargs)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.pop("alive", None)  # a job's liveness is the control plane's own rule
            return self._shaped(method, self._call(method, list(args), kwargs))
        return call

    def _call(self, method: str, args: list, kwargs: dict) -> Any:
        key = (json.dumps([method, args, kwargs], sort_keys=True, default=str)
               if method in STALE_READS else "")  # only their answers are kept
        try:
            if self._outbox is not None and len(self._outbox) and method in WAITING_WRITES:
                raise DbsafeError("agent.control_unreachable", url=self._control.url,
                                  reason="earlier reports still wait")  # keep their order
            result = self.send(method, args, kwargs)
        except DbsafeError as exc:
            if exc.code != "agent.control_unreachable":
                raise
            if method in WAITING_WRITES and self._outbox is not None:
                self._outbox.append(method, args, kwargs)
                return WAITING_WRITES[method]
            if method in SKIPPED_WRITES:
                return SKIPPED_WRITES[method]
            with self._lock:
                if method in STALE_READS and key in self._answers:
                    return self._answers[key]
            raise
        if method in STALE_READS:
            with self._lock:
                changed = self._answers.get(key) != result
                self._answers[key] = result
                if changed and self._answers_file is not None:
                    _save(self._answers_file, self._answers)
        return result

    @staticmethod
    def _shaped(method: str, result: Any) -> Any:
        if method in SET_RESULTS:
            return set(result)
        if method == "upsert_alert":
            return tuple(result)
        return result

    def exclusive(self, name: str) -> Any:
        raise DbsafeError("agent.catalog_remote", path=f"lock {name!r} (held on the "
                          "control plane)")

    def describe(self) -> dict:
        return {"backend": "control plane", "location": self._control.url}

    def close(self) -> None:
        """Nothing to close: the connection is the agent's."""


def _load(path: Path | None) -> dict[str, Any]:
    """The last answers kept by an earlier run (an agent restarted while its control plane
    is away archives with them)."""
    if path is None:
        return {}
    try:
        found = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _save(path: Path, answers: dict[str, Any]) -> None:
    write_private(path, json.dumps(answers, default=str).encode())
