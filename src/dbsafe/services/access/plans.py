"""A recovery plan as the state file of a run keeps it (the command makes the plan, its
process carries it out), and back."""

from __future__ import annotations

from dataclasses import asdict

from dbsafe.engines.postgres.recovery import RecoveryTarget
from dbsafe.services.restore.pitr import RecoveryPlan


def plan_to_state(plan: RecoveryPlan | None) -> dict | None:
    return None if plan is None else asdict(plan)


def plan_from_state(state: dict) -> RecoveryPlan | None:
    kept = state.get("plan")
    if kept is None:
        return None
    return RecoveryPlan(kept["base_point"], RecoveryTarget(**kept["target"]),
                        list(kept["wal_files"]), kept.get("target_time"),
                        dict(kept.get("notes") or {}))
