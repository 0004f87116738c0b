"""Backup policies as pure logic: the model and its rules (model), when backups are due
(schedule), which points to keep (retention), and how much a server can protect (planner).

Nothing here touches the catalog, the vault or a clock: callers pass ``now`` and the points,
so every function can be tested with hand-built inputs and a fake time.
"""

from dbsafe.policy.model import DEFAULT_POLICY, WEEKDAYS, Policy, validate

__all__ = ["DEFAULT_POLICY", "WEEKDAYS", "Policy", "validate"]
