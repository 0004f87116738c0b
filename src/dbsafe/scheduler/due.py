"""Which scheduled runs are due: a pure function of the catalog's memory and the time.

For each instance with protected items (one policy per instance), and each kind the policy
schedules (full, diff, log, drill), the run due is the policy's latest slot at or before now,
when it is later than the last slot handled. Only the latest slot counts: after a downtime a
missed run is caught up once, not once per missed slot. A new item's first run is the first
slot after it was protected. A slot whose job was lost (its process died, or serve stopped
before the queued run started) is tried once more while it is still the latest slot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from dbsafe.catalog.base import Catalog, parse_time
from dbsafe.policy.model import Policy
from dbsafe.policy.schedule import latest_slot

KINDS = ("full", "diff", "log", "drill")
MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class Work:
    server: str
    instance_id: int
    policy: str
    kind: str
    slot: datetime
    attempt: int = 1

    @property
    def key(self) -> tuple[int, str]:
        return self.instance_id, self.kind


def scheduled_instances(catalog: Catalog) -> list[dict]:
    """Instances with active items and a policy: server, instance_id, policy, since."""
    found: dict[int, dict] = {}
    for item in catalog.list_items():
        if item["state"] not in ("protected", "inconsistent-policy") or not item["policy"]:
            continue
        since = parse_time(item["since"])
        entry = found.setdefault(item["instance_id"], {
            "server": item["server"], "instance_id": item["instance_id"],
            "policy": item["policy"], "since": since})
        entry["since"] = min(entry["since"], since)
    return list(found.values())


def due_work(catalog: Catalog, policies: Mapping[str, Policy], now: datetime,
             busy: set[tuple[int, str]],
             job_lost: Callable[[str | None], bool]) -> list[Work]:
    """Runs due at ``now``. ``busy``: (instance, kind) queued or running in this process;
    ``job_lost(job_id)``: whether a claimed slot's job never finished (abandoned)."""
    due = []
    for inst in scheduled_instances(catalog):
        policy = policies.get(inst["policy"])
        if policy is None:
            continue
        for kind in KINDS:
            if (inst["instance_id"], kind) in busy:
                continue
            slot = latest_slot(policy, kind, now)
            if slot is None:
                continue
            state = catalog.get_slot(inst["instance_id"], policy.name, kind)
            last = parse_time(state["last_slot"]) if state else inst["since"]
            if slot > last:
                due.append(Work(inst["server"], inst["instance_id"], policy.name, kind, slot))
            elif (state and slot == last and state["attempts"] < MAX_ATTEMPTS
                  and job_lost(state["job_id"])):
                due.append(Work(inst["server"], inst["instance_id"], policy.name, kind, slot,
                                attempt=state["attempts"] + 1))
    return due

