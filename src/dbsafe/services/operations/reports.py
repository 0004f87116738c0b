"""Backup reports: how the vault's stored bytes and the jobs' outcomes went day by day,
and what each protected item takes, for the dashboard's charts, the reports page and the
API (one computation for all three).

Read from the catalog alone, with a few grouped queries whatever the number of log
points (the usage per item reads one row per full or differential): a day is a UTC
calendar day. Stored bytes are those of the points the catalog still records
(each point's new bytes, counted from the day it ended until the day it was deleted):
points purged before the range leave no trace, so the first days may read lower than the
vault held then.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from dbsafe.core import bounds
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.inventory.servers import get_server

MAX_DAYS = bounds.REPORT_DAYS[1]
DRILLS_MAX = 10_000  # the newest drills a report reads (a drill a day of 20 servers: 500 days)


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


def rpo_over_time(vault: Vault, days: int = 30, now: datetime | None = None) -> dict:
    """``{"days": [...], "servers": {name: [seconds]}, "worst": [...], "median": [...]}``:
    at each UTC day's end (today: now), how long before it each server's newest live
    point ended — what a restore then would have lost at most, by its newest backup (log
    backups included); None before a server's first point."""
    now = now or datetime.now(UTC)
    shown = _days(days, now)
    index = {day: n for n, day in enumerate(shown)}
    newest: dict[str, list[str | None]] = {}
    for row in vault.catalog.newest_point_by_day(f"{shown[0]}T00:00:00"):
        slots = newest.setdefault(row["server"], [None] * (len(shown) + 1))
        n = 0 if row["day"] is None else index.get(row["day"], -1) + 1
        if n >= 0:
            slots[n] = max(filter(None, (slots[n], row["newest"])), default=None)
    ends = [min(now, datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1))
            for day in shown]
    servers: dict[str, list[int | None]] = {}
    for server, slots in sorted(newest.items()):
        last: str | None = slots[0]
        series: list[int | None] = []
        for n, end in enumerate(ends):
            last = max(filter(None, (last, slots[n + 1])), default=None)
            series.append(None if last is None else
                          max(0, int((end - datetime.fromisoformat(last)).total_seconds())))
        servers[server] = series
    columns = [[v for s in servers.values() if (v := s[n]) is not None]
               for n in range(len(shown))]
    return {"days": shown, "servers": servers,
            "worst": [max(c) if c else None for c in columns],
            "median": [sorted(c)[len(c) // 2] if c else None for c in columns]}


# The columns of each table of ``report()``, in order: a CSV file of no rows still says them.
COLUMNS = {
    "storage": ("server", "held_at_start", "held_at_end", "growth", "stored_by_backups"),
    "databases": ("server", "database", "size_at_start", "size_at_end", "growth",
                  "stored_by_backups", "held_at_end"),
    "jobs": ("server", "type", "jobs", "completed", "with_warnings", "failed", "cancelled",
             "success_rate"),
    "drills": ("server", "point_id", "started", "finished", "state", "rto_seconds",
               "rpo_seconds", "error_code"),
}

STATE_ORDER = ["completed", "completed_with_warnings", "failed", "cancelled", "running",
               "queued", "cancelling"]


def usage_per_item(vault: Vault, days: int = 30, now: datetime | None = None) -> list[dict]:
    """Per protected item of each server over the last ``days`` UTC days: the database's
    size (its files, as backed up) in the newest point live when the range began and in
    the newest live now, the growth between, the bytes its backups stored in the range and
    those its live points hold now. ``database`` None is the instance: the files of no
    database, the WAL, and every point not itemised (log backups, and points of before
    ``stats.usage``, docs/repository-format.md), so the items' ``held_at_end`` add up to
    the server's in ``report()["storage"]``."""
    since = f"{_days(days, now or datetime.now(UTC))[0]}T00:00:00"
    Key = tuple[str, str | None]  # (server, database); None: the instance
    stored: dict[Key, int] = defaultdict(int)
    held: dict[Key, int] = defaultdict(int)
    at_start: dict[Key, int] = {}
    at_end: dict[Key, int] = {}
    # one pass, flat dicts: 2,000 databases' 90 days are ~180,000 (point, database) pairs
    for row in vault.catalog.itemised_points(since):  # oldest first: the newest size wins
        server = row["server"]
        use = json.loads(row["item_usage"])
        shares = [((server, name), d["bytes"], d["stored"])
                  for name, d in use["databases"].items()]
        shares.append(((server, None), use["instance"]["bytes"],
                       max(0, int(row["bytes_stored"]) - sum(s for _, _, s in shares))))
        in_range, live = row["end_time"] >= since, row["deleted_at"] is None
        for key, size, new in shares:
            if in_range:
                stored[key] += new
            else:  # listed only when live at the range's start
                at_start[key] = size
            if live:
                held[key] += new
                at_end[key] = size
    for row in vault.catalog.unitemised_stored(since):
        stored[(row["server"], None)] += int(row["added"] or 0)
        held[(row["server"], None)] += int(row["held"] or 0)
    keys = sorted(stored.keys() | held.keys() | at_start.keys() | at_end.keys(),
                  key=lambda k: (k[0], k[1] is None, k[1] or ""))
    return [{"server": key[0], "database": key[1], "size_at_start": at_start.get(key),
             "size_at_end": at_end.get(key),
             "growth": at_end[key] - at_start[key] if key in at_start and key in at_end
             else None,
             "stored_by_backups": stored.get(key, 0), "held_at_end": held.get(key, 0)}
            for key in keys]


def _running(steps: list[int]) -> list[int]:
    out, held = [], 0
    for step in steps:
        held += step
        out.append(held)
    return out



def report(vault: Vault, days: int = 30, now: datetime | None = None,
           server: str | None = None) -> dict:
    """The reports page's four tables over the last ``days`` UTC days, as rows (the page,
    its CSV files and the API give the same), and ``held``: the bytes held in all at each
    day's end (the page's chart): ``storage`` per server (bytes held at the
    start and the end, growth, bytes stored by its backups), ``databases`` per protected
    item (``usage_per_item``), ``jobs`` per server and type
    (outcomes and the success rate of those that ended), ``drills`` (each with its outcome,
    RTO and RPO). ``server``: that server's rows alone (``server.unknown`` if none is
    registered so), and its bytes held in ``held``."""
    if server is not None:
        get_server(vault, server)
    now = now or datetime.now(UTC)
    stored = stored_over_time(vault, days, now)
    storage = [{"server": server, "held_at_start": held[0], "held_at_end": held[-1],
                "growth": held[-1] - held[0], "stored_by_backups": sum(stored["added"][server])}
               for server, held in stored["servers"].items()]
    since = f"{stored['days'][0]}T00:00:00"
    grouped: dict[tuple[str, str], dict[str, int]] = {}
    for row in vault.catalog.count_jobs_grouped_since(since):
        counts = grouped.setdefault((row["server"] or "", row["type"]), {})
        counts[row["state"]] = counts.get(row["state"], 0) + int(row["n"])
    jobs = []
    for (name, type), counts in sorted(grouped.items()):
        ok = counts.get("completed", 0) + counts.get("completed_with_warnings", 0)
        ended = ok + counts.get("failed", 0) + counts.get("cancelled", 0)
        jobs.append({"server": name, "type": type, "jobs": sum(counts.values()),
                     "completed": counts.get("completed", 0),
                     "with_warnings": counts.get("completed_with_warnings", 0),
                     "failed": counts.get("failed", 0), "cancelled": counts.get("cancelled", 0),
                     "success_rate": round(ok / ended, 4) if ended else None})
    drills = [{"server": d["server"], "point_id": d["point_id"], "started": d["started"],
               "finished": d["finished"], "state": d["state"],
               "rto_seconds": d["rto_seconds"], "rpo_seconds": d["rpo_seconds"],
               "error_code": d["error_code"]}
              for d in vault.catalog.list_drills(limit=DRILLS_MAX) if d["started"] >= since]
    tables = {"storage": storage, "databases": usage_per_item(vault, days, now), "jobs": jobs,
              "drills": drills}
    held = stored["total"]
    if server is not None:
        tables = {name: [r for r in rows if r["server"] == server]
                  for name, rows in tables.items()}
        held = stored["servers"].get(server) or [0] * len(stored["days"])
    return {"days": days, "from": stored["days"][0], "to": stored["days"][-1],
            "server": server, **tables, "held": {"days": stored["days"], "total": held}}

