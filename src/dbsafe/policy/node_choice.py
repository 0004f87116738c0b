"""Which node of a replica set takes each backup type: the support matrix's four tables.

Pure: it decides from what was seen of the nodes (role, health, region), the set's backup
preference and the vault's region; services/protection/replica_sets.py looks at the nodes.

| preference     | full, diff | log, copy-only                                     |
| -------------- | ---------- | -------------------------------------------------- |
| primary        | primary    | primary                                            |
| secondary-only | primary    | a secondary; never the primary                     |
| secondary      | primary    | a secondary; the primary when no secondary can     |
| none           | primary    | like secondary (the seed's table says "Secondary") |

Only nodes in the vault's region take backups (cross-region backups are not supported):
a primary in another region means no full or differential at all, and logs only where the
preference allows a secondary of the vault's region. Among several eligible secondaries the
one with the most WAL replayed wins (the least behind), then the name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREFERENCES = ("primary", "secondary-only", "secondary", "none")
BACKUP_TYPES = ("full", "diff", "log", "copy-only")


@dataclass(frozen=True)
class NodeState:
    server: str
    role: str                 # primary, standby, or unknown (not reachable)
    region: str | None
    healthy: bool
    reason: str | None = None  # why not healthy
    replay_lsn: int = 0        # standbys: how far they replayed


@dataclass(frozen=True)
class Choice:
    server: str | None        # None: no node may take this backup now
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"server": self.server, "reason": self.reason}


def choose(nodes: list[NodeState], preference: str, vault_region: str | None,
           backup_type: str) -> Choice:
    if preference not in PREFERENCES:
        raise ValueError(f"backup preference {preference!r} is not one of {PREFERENCES}")
    if backup_type not in BACKUP_TYPES:
        raise ValueError(f"backup type {backup_type!r} is not one of {BACKUP_TYPES}")

    def in_region(n: NodeState) -> bool:
        return vault_region is None or n.region == vault_region

    primaries = [n for n in nodes if n.role == "primary"]
    primary = primaries[0] if len(primaries) == 1 else None
    secondaries = sorted((n for n in nodes if n.role == "standby" and n.healthy and in_region(n)),
                         key=lambda n: (-n.replay_lsn, n.server))

    def from_primary(why: str) -> Choice:
        if primary is None:
            if len(primaries) > 1:
                return Choice(None, "more than one node runs as primary ("
                              + ", ".join(n.server for n in primaries)
                              + "): resolve the split before backups can run")
            return Choice(None, "no node of the set is a reachable primary")
        if not primary.healthy:
            return Choice(None, f"the primary {primary.server} is not healthy: {primary.reason}")
        if not in_region(primary):
            return Choice(None, f"the primary {primary.server} is in region {primary.region}, "
                          f"not the vault's region {vault_region}: cross-region backups are not "
                          "supported; they resume when the primary is back in "
                          f"{vault_region}")
        return Choice(primary.server, why)

    if backup_type in ("full", "diff") or preference == "primary":
        why = ("full and differential backups always run on the primary"
               if backup_type in ("full", "diff") else "backup preference is primary")
        return from_primary(why)
    where = f" in the vault's region {vault_region}" if vault_region else ""
    if secondaries:
        return Choice(secondaries[0].server,
                      f"backup preference {preference}: a healthy secondary{where}")
    why = _why_no_secondary(nodes, primary, in_region)
    if preference == "secondary-only":
        return Choice(None, f"backup preference secondary-only: no healthy secondary{where} "
                      f"({why}), and this preference never uses the primary")
    fallback = from_primary(f"backup preference {preference}: no healthy secondary{where} "
                            f"({why}), so the primary takes it")
    if fallback.server is None:
        return Choice(None, f"no healthy secondary{where} ({why}), and {fallback.reason}")
    return fallback


def _why_no_secondary(nodes: list[NodeState], primary: NodeState | None,
                      in_region: Callable[[NodeState], bool]) -> str:
    others = [n for n in nodes if n is not primary]
    if not others:
        return "the set has no other node"
    said = []
    for n in others:
        if n.role != "standby":
            said.append(f"{n.server} is {n.role}" + (f": {n.reason}" if n.reason else ""))
        elif not in_region(n):
            said.append(f"{n.server} is in region {n.region}")
        else:
            said.append(f"{n.server}: {n.reason}")
    return "; ".join(said)


def plan(nodes: list[NodeState], preference: str, vault_region: str | None) -> dict[str, Any]:
    """The node for every backup type now: {type: {"server", "reason"}}."""
    return {t: choose(nodes, preference, vault_region, t).as_dict() for t in BACKUP_TYPES}
