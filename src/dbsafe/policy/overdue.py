"""When a protected database's backups are overdue, from its policy alone (pure).

The newest instant a database can be restored to must not be older than the *deadline*:
the scheduled slot before the latest one, less a grace of 15 minutes. The slots are the log
backups' when the policy takes them (the FULL model: each log backup ends the log chain
with a commit of its own, so the chain reaches the slot's time even on an idle server), and
the fulls' and differentials' when it does not (SIMPLE). The latest scheduled backup may
still be running, or have failed (``backup_failed`` says that at once): one missed slot is
tolerated, the second is overdue. Depending on where the present falls between two slots,
the allowed age is one to two intervals plus the grace: with log backups every 15 minutes,
30 to 45 minutes; with a daily full, 24 to 48 hours and 15 minutes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dbsafe.policy.model import Policy
from dbsafe.policy.schedule import latest_slot

GRACE = timedelta(minutes=15)


def slot_kinds(policy: Policy) -> tuple[str, ...]:
    """The backup kinds whose slots make a database's data restorable to a newer instant."""
    return ("log",) if policy.log_every else ("full", "diff")


def restorable_deadline(policy: Policy, now: datetime) -> datetime | None:
    """The instant a database's newest restorable instant must reach by ``now`` (UTC);
    None when the policy schedules nothing yet to hold it to."""
    def latest(at: datetime) -> datetime | None:
        slots = [s for kind in slot_kinds(policy) if (s := latest_slot(policy, kind, at))]
        return max(slots, default=None)

    newest = latest(now)
    if newest is None:
        return None
    previous = latest(newest - timedelta(microseconds=1))
    return previous - GRACE if previous is not None else None
