"""``GET /metrics``: the vault and its fleet for Prometheus (docs/fleet.md, *Metrics*).

A custom collector turns the services' figures (operations.vault_figures, fleet.list_agents)
into metric families when Prometheus scrapes; nothing is counted in this process between
scrapes, so every serve of a vault (and a restarted one) answers the same. The figures are
read at most once per ``Figures.TTL`` seconds, whatever the number of scrapers, on a vault
handle of their own (a slow reading never holds up the API's). Labels are bounded by what
the vault holds — job types and states, servers, databases, agents — never job ids.

It needs a caller with the ``read`` permission, like the API (a bearer token: the gate
answers 401 without one, api/gate.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dbsafe.api.deps import need
from dbsafe.services import fleet, operations
from dbsafe.services.handle import Vault

PATH = "/metrics"
router = APIRouter()


@dataclass(frozen=True)
class Reading:
    vault: dict
    agents: list[dict]
    taken: float      # time.monotonic()
    seconds: float    # what reading them took


class Figures:
    """The newest reading, renewed when it is older than ``TTL`` seconds: one reading at a
    time (scrapes arriving meanwhile wait for it and share it)."""

    TTL = 5.0

    def __init__(self, open_vault: Callable[[], Vault], ttl: float = TTL) -> None:
        self._open_vault = open_vault
        self._vault: Vault | None = None
        self.ttl = ttl
        self._reading: Reading | None = None
        self._lock = threading.Lock()

    def get(self) -> Reading:
        with self._lock:
            reading = self._reading
            if reading is None or time.monotonic() - reading.taken > self.ttl:
                if self._vault is None:
                    self._vault = self._open_vault()
                start = time.monotonic()
                now = datetime.now(UTC)
                reading = self._reading = Reading(
                    operations.vault_figures(self._vault, now),
                    fleet.list_agents(self._vault), time.monotonic(),
                    time.monotonic() - start)
            return reading


def _gauge(name: str, text: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"dbsafe_{name}", text, labels=labels)


class VaultCollector(Collector):
    """The metric families of one reading (docs/fleet.md lists them)."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        reading = self.figures.get()
        v = reading.vault
        jobs = _gauge("jobs_last_24h", "Jobs started in the last 24 hours, by type and "
                      "state.", ["type", "state"])
        for (kind, state), n in sorted(v["jobs_24h"].items()):
            jobs.add_metric([kind, state], n)
        active = _gauge("jobs_active", "Jobs queued, running or cancelling now, by type and "
                        "state.", ["type", "state"])
        for (kind, state), n in sorted(v["jobs_active"].items()):
            active.add_metric([kind, state], n)
        rpo = _gauge("database_rpo_seconds", "Seconds since the newest restorable instant of "
                     "a protected database (+Inf: none yet).", ["server", "database"])
        for d in v["databases"]:
            rpo.add_metric([d["server"], d["database"]], d["rpo_seconds"])
        newest = _gauge("log_chain_newest_wal_timestamp_seconds", "Unix time of the newest "
                        "commit in the server's archived WAL.", ["server"])
        gaps = _gauge("log_chain_gaps", "Gaps (missing WAL) in the server's log chain.",
                      ["server"])
        lag = _gauge("archive_lag_bytes", "WAL the server wrote that is not in the vault, as "
                     "its last health check measured.", ["server"])
        for s in v["servers"]:
            if s["newest_wal"] is not None:
                newest.add_metric([s["server"]],
                                  datetime.fromisoformat(s["newest_wal"]).timestamp())
            if s["gaps"] is not None:
                gaps.add_metric([s["server"]], s["gaps"])
            if s["archive_lag_bytes"] is not None:
                lag.add_metric([s["server"]], s["archive_lag_bytes"])
        yield from (jobs, active, rpo, newest, gaps, lag)
        yield from self._agents(reading.agents)
        errors = _gauge("metrics_errors", "Servers whose figures could not be read at the "
                        "last reading (see the serve's log).", [])
        errors.add_metric([], len(v["errors"]))
        took = _gauge("metrics_read_seconds", "Seconds the last reading of the figures "
                      "took.", [])
        took.add_metric([], reading.seconds)
        yield from (errors, took)

    @staticmethod
    def _agents(agents: list[dict]) -> Iterator[Metric]:
        labels = ["agent", "host"]
        up = _gauge("agent_up", "1 when the agent is active, 0 when silent or revoked.",
                    labels)
        contact = _gauge("agent_last_contact_seconds", "Seconds since the agent's last "
                         "call.", labels)
        owned = _gauge("agent_servers", "Servers the agent owns.", labels)
        for a in agents:
            key = [a["id"], a["host"]]
            up.add_metric(key, 1 if a["state"] == "active" else 0)
            if a["since_contact"] is not None:
                contact.add_metric(key, a["since_contact"])
            owned.add_metric(key, len(a["servers"]))
        yield from (up, contact, owned)


def registry(figures: Figures) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding the vault's collector."""
    found = CollectorRegistry(auto_describe=False)
    found.register(VaultCollector(figures))
    return found


@router.get(PATH, include_in_schema=False, dependencies=[Depends(need("read"))])
def metrics(request: Request) -> Response:
    """The text exposition format, for Prometheus (and anyone with a reader's token)."""
    return Response(generate_latest(request.app.state.metrics),
                    media_type=CONTENT_TYPE_LATEST)
