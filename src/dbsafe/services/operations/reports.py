"""Backup reports: how the vault's stored bytes and the jobs' outcomes went day by day,
for the dashboard's charts, the reports page and the API (one computation for all three).

Read from the catalog alone, with a few grouped queries whatever the number of points: a
day is a UTC calendar day. Stored bytes are those of the points the catalog still records
(each point's new bytes, counted from the day it ended until the day it was deleted):
points purged before the range leave no trace, so the first days may read lower than the
vault held then.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbsafe.services.handle.vault_handle import Vault

MAX_DAYS = 366


def _days(days: int, now: datetime) -> list[str]:
    """The last ``days`` UTC days, oldest first, today included."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1 to {MAX_DAYS}, not {days}")
    today = now.astimezone(UTC).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]


def stored_over_time(vault: Vault, days: int = 30, now: datetime | None = None) -> dict:
    """``{"days": [...], "servers": {name: [bytes held at each day's end]}, "total": [...],
    "added": {name: [bytes stored that day]}}``."""
    shown = _days(days, now or datetime.now(UTC))
    since = f"{shown[0]}T00:00:00"
    index = {day: n for n, day in enumerate(shown)}
    change: dict[str, list[int]] = {}
    added: dict[str, list[int]] = {}
    for row in vault.catalog.stored_by_day(since):
        server = row["server"]
        change.setdefault(server, [0] * len(shown))
        added.setdefault(server, [0] * len(shown))
        if row["day"] is None:  # what it held before the range
            change[server][0] += int(row["added"] or 0)
        elif row["day"] in index:
            n = index[row["day"]]
            if row.get("removed") is not None:
                change[server][n] -= int(row["removed"])
            else:
                change[server][n] += int(row["added"] or 0)
                added[server][n] += int(row["added"] or 0)
    held = {server: _running(steps) for server, steps in sorted(change.items())}
    total = [sum(series[n] for series in held.values()) for n in range(len(shown))]
    return {"days": shown, "servers": held, "total": total,
            "added": {server: added[server] for server in held}}


def jobs_per_day(vault: Vault, days: int = 14, now: datetime | None = None) -> dict:
    """``{"days": [...], "states": {state: [jobs started that day that ended so]}}``,
    every state that occurs, in the order of ``STATE_ORDER``."""
    shown = _days(days, now or datetime.now(UTC))
    index = {day: n for n, day in enumerate(shown)}
    states: dict[str, list[int]] = {}
    for row in vault.catalog.jobs_by_day(f"{shown[0]}T00:00:00"):
        if row["day"] in index:
            states.setdefault(row["state"], [0] * len(shown))[index[row["day"]]] += row["n"]
    ordered = sorted(states, key=lambda s: (STATE_ORDER.index(s) if s in STATE_ORDER
                                            else len(STATE_ORDER), s))
    return {"days": shown, "states": {s: states[s] for s in ordered}}


STATE_ORDER = ["completed", "completed_with_warnings", "failed", "cancelled", "running",
               "queued", "cancelling"]


def _running(steps: list[int]) -> list[int]:
    out, held = [], 0
    for step in steps:
        held += step
        out.append(held)
    return out

