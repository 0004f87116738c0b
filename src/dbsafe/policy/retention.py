"""Which recovery points a policy keeps, and why; which expire. Never breaks a chain.

Rules (docs/policies.md):

- Fulls (not copy-only) are *tagged* into tiers, no extra backups are taken: daily = the
  latest full of each local day, weekly = of each ISO week, monthly = of each month,
  yearly = of each year (local dates in the policy's time zone), per database: the latest
  full *that holds it* (a full taken with ``--db`` holds only the databases it names, so
  it does not stand for the others). A tagged point is kept
  while it is younger than its tier's length (keep_daily days, keep_weekly weeks,
  keep_monthly calendar months, keep_yearly calendar years, counted back from ``now``).
- Differentials are kept keep_diff days, log points keep_log days, copy-only fulls
  keep_daily days (30 when the policy has no daily tier). A kind whose retention the policy
  leaves unset (on-demand differentials under a daily-full policy, log points left from
  before a switch to SIMPLE) is kept the service's minimum of 7 days.
- Chain safety: the newest full of each database is always kept; a full is kept while any
  kept differential is based on it; for point-in-time restore, per database, the latest
  full or differential holding it that ended at or before ``now - keep_log`` is kept as a
  base of the log chain (the oldest of those is ``wal_base_point``), so a restore of any
  database to any instant from ``log_keep_from`` to now stays possible.

``databases`` are the databases the policy protects on the instance; a point's
``databases`` are those it holds (None: every one, as a log point or a point from before
dbsafe recorded them). Without ``databases`` every point counts for the instance as one.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dbsafe.policy.model import RANGES, Policy, known_timezone

TYPES = ("full", "diff", "log")
MIN_DAYS = 7                  # the service's minimum retention for any backup type
COPY_ONLY_FALLBACK_DAYS = 30  # copy-only fulls when the policy has no daily tier


@dataclass(frozen=True)
class PointInfo:
    point_id: str
    type: str               # "full" | "diff" | "log" (copy-only: "full", copy_only=True)
    copy_only: bool
    end_time: datetime      # aware
    base_point: str | None  # for a diff: the full it is based on
    databases: frozenset[str] | None = None  # the databases it holds (None: every one)

    @classmethod
    def of(cls, row: dict[str, Any]) -> PointInfo:
        """From a point as the catalog or a listing has it (``type`` ``copy-only`` there,
        ``databases`` a list or its JSON)."""
        copy_only = bool(row["copy_only"]) or row["type"] == "copy-only"
        names = row.get("databases")
        if isinstance(names, str):
            names = json.loads(names)
        return cls(row["point_id"], "full" if copy_only else row["type"], copy_only,
                   datetime.fromisoformat(row["end_time"]), row.get("base_point"),
                   None if names is None or row["type"] == "log" else frozenset(names))

    def holds(self, database: str | None) -> bool:
        return database is None or self.databases is None or database in self.databases


@dataclass
class RetentionDecision:
    keep: dict[str, list[str]] = field(default_factory=dict)
    """point_id -> why it is kept ("daily", "weekly", "monthly", "yearly", "diff", "log",
    "copy-only", "newest full", "base of <id>", "base of the log chain")."""
    expire: list[str] = field(default_factory=list)
    """Point ids to delete, oldest first."""
    log_keep_from: datetime | None = None
    """Point-in-time restore must stay possible from this instant on (None: no log chain,
    or no base backup yet; nothing then bounds the WAL to keep)."""
    wal_base_point: str | None = None
    """The point whose start LSN bounds the WAL to keep (None as for log_keep_from)."""


def _months_before(t: datetime, months: int) -> datetime:
    """``t`` (local, aware) moved back ``months`` calendar months, the day clamped to the
    month's length (31 March - 1 month = 28/29 February)."""
    index = t.year * 12 + (t.month - 1) - months
    year, month = divmod(index, 12)
    day = min(t.day, calendar.monthrange(year, month + 1)[1])
    return t.replace(year=year, month=month + 1, day=day)


def _tiers(policy: Policy,
           now_local: datetime) -> list[tuple[str, Callable[[datetime], object], datetime]]:
    """(tier, period of a local datetime, cutoff) for each tier the policy uses."""
    tiers: list[tuple[str, Callable[[datetime], object], datetime]] = []
    if policy.keep_daily:
        tiers.append(("daily", lambda t: t.date(),
                      now_local - timedelta(days=policy.keep_daily)))
    if policy.keep_weekly:
        tiers.append(("weekly", lambda t: t.isocalendar()[:2],
                      now_local - timedelta(weeks=policy.keep_weekly)))
    if policy.keep_monthly:
        tiers.append(("monthly", lambda t: (t.year, t.month),
                      _months_before(now_local, policy.keep_monthly)))
    if policy.keep_yearly:
        tiers.append(("yearly", lambda t: t.year,
                      _months_before(now_local, 12 * policy.keep_yearly)))
    return tiers


def _check(points: list[PointInfo], now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    seen: set[str] = set()
    for p in points:
        if p.type not in TYPES:
            raise ValueError(f"point {p.point_id}: type {p.type!r} is not one of {TYPES}")
        if p.end_time.tzinfo is None:
            raise ValueError(f"point {p.point_id}: end_time must be timezone-aware")
        if p.point_id in seen:
            raise ValueError(f"point {p.point_id} is listed twice")
        seen.add(p.point_id)


def decide(points: list[PointInfo], policy: Policy, now: datetime,
           databases: Iterable[str] | None = None) -> RetentionDecision:
    """What ``policy`` keeps of ``points`` at ``now``, with the reasons; the rest expires.
    Tiers, the newest full and the log chain's base are decided for each of ``databases``
    from the points that hold it (None: for the instance, from every point)."""
    _check(points, now)
    tz = ZoneInfo(policy.timezone)
    ordered = sorted(points, key=lambda p: (p.end_time, p.point_id))
    by_id = {p.point_id: p for p in ordered}
    decision = RetentionDecision()

    def tag(point_id: str, reason: str) -> None:
        reasons = decision.keep.setdefault(point_id, [])
        if reason not in reasons:
            reasons.append(reason)

    def young(p: PointInfo, days: int) -> bool:
        return p.end_time > now - timedelta(days=days)

    fulls = [p for p in ordered if p.type == "full" and not p.copy_only]
    each = sorted(set(databases)) if databases else [None]
    for tier, period, cutoff in _tiers(policy, now.astimezone(tz)):
        for database in each:
            latest: dict[object, PointInfo] = {}
            for p in fulls:                      # in time order: the last one wins
                if p.holds(database):
                    latest[period(p.end_time.astimezone(tz))] = p
            for p in latest.values():
                if p.end_time > cutoff:
                    tag(p.point_id, tier)

    copy_only_days = policy.keep_daily or COPY_ONLY_FALLBACK_DAYS
    log_days = policy.keep_log or MIN_DAYS
    for p in ordered:
        if p.type == "full" and p.copy_only and young(p, copy_only_days):
            tag(p.point_id, "copy-only")
        elif p.type == "diff" and young(p, policy.keep_diff or MIN_DAYS):
            tag(p.point_id, "diff")
        elif p.type == "log" and young(p, log_days):
            tag(p.point_id, "log")
    for database in each:
        held = [p for p in fulls if p.holds(database)]
        if held:
            tag(held[-1].point_id, "newest full")

    if policy.log_every is not None or any(p.type == "log" for p in ordered):
        cutoff = now - timedelta(days=log_days)
        full_ids = {p.point_id for p in fulls}
        candidates = [p for p in ordered if p.type == "diff" or p.point_id in full_ids]
        chain_bases = []
        for database in each:
            bases = [p for p in candidates if p.holds(database)]
            before = [p for p in bases if p.end_time <= cutoff]
            base = before[-1] if before else (bases[0] if bases else None)
            if base is not None:
                tag(base.point_id, "base of the log chain")
                chain_bases.append(base)
        if chain_bases:
            oldest = min(chain_bases, key=lambda p: (p.end_time, p.point_id))
            decision.wal_base_point = oldest.point_id
            decision.log_keep_from = max(cutoff, max(p.end_time for p in chain_bases))

    for point_id in list(decision.keep):         # a kept differential keeps its full
        p = by_id[point_id]
        if p.type == "diff" and p.base_point in by_id:
            tag(p.base_point, f"base of {p.point_id}")

    decision.expire = [p.point_id for p in ordered if p.point_id not in decision.keep]
    return decision


# immutable vaults (services/inventory/immutability.py)
RETENTION_SETTINGS = ("keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_diff",
                      "keep_log")
# The tiers that can keep a point of each kind ("full" that is not copy-only: every tier).
_TIERS_OF = {"full": ("daily", "weekly", "monthly", "yearly"), "copy-only": ("copy-only",),
             "diff": ("diff",), "log": ("log",)}


def freeze(policy: Policy | None, no_policy_days: int) -> dict[str, Any]:
    """The retention a point is given when its backup commits, kept with it for good (the
    manifest's ``retention``, docs/repository-format.md): the retention settings and time
    zone of ``policy``, or, when no policy governs the instance, ``no_policy_days``."""
    if policy is None:
        return {"policy": None, "keep_days": no_policy_days}
    return {"policy": policy.name, "timezone": policy.timezone,
            **{k: getattr(policy, k) for k in RETENTION_SETTINGS}}


def thaw(doc: object) -> Policy | int:
    """What ``freeze`` wrote, back: a policy holding only the retention settings, or the
    days a point no policy governed is kept. ``ValueError`` for anything ``freeze`` does
    not write (the document comes from storage: it is checked, not trusted)."""
    if not isinstance(doc, dict):
        raise ValueError("retention is not an object")
    if set(doc) == {"policy", "keep_days"} and doc["policy"] is None:
        days = doc["keep_days"]
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
            raise ValueError(f"keep_days {days!r} is not a number of days")
        return days
    if set(doc) != {"policy", "timezone", *RETENTION_SETTINGS}:
        raise ValueError(f"unexpected retention settings {sorted(doc)}")
    if not isinstance(doc["policy"], str) or not known_timezone(doc["timezone"]):
        raise ValueError("retention needs a policy name and a known time zone")
    for setting in RETENTION_SETTINGS:
        value, (low, high, _unit) = doc[setting], RANGES[setting]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not low <= value <= high):
            raise ValueError(f"{setting} {value!r} is out of range")
    return Policy(name=doc["policy"], timezone=doc["timezone"],
                  **{k: doc[k] for k in RETENTION_SETTINGS})


def shortened(old: Policy, new: Policy) -> list[tuple[str, int, int | None]]:
    """(setting, old value, new value) for each retention setting ``new`` keeps points
    shorter by than ``old`` (lower, or unset where it was set)."""
    return [(k, getattr(old, k), getattr(new, k)) for k in RETENTION_SETTINGS
            if getattr(old, k) is not None
            and (getattr(new, k) is None or getattr(new, k) < getattr(old, k))]


def longest_until(point: PointInfo, policy: Policy) -> datetime | None:
    """The latest ``policy``'s retention of ``point`` could end: as if every tier its kind
    can have kept it (for a point whose neighbours are unknown, so tiering cannot be
    decided)."""
    kind = "copy-only" if point.copy_only else point.type
    return retained_until(point, list(_TIERS_OF[kind]), policy)


def retained_until(point: PointInfo, reasons: list[str], policy: Policy) -> datetime | None:
    """When ``policy``'s retention of ``point`` ends, given the ``reasons`` ``decide`` keeps it
    for: the latest end among its age-based tiers (daily, weekly, monthly, yearly, diff, log,
    copy-only). None when no tier keeps it: the chain-safety reasons ("newest full",
    "base of ...") hold a point for restorability, not for retention, and have no end date."""
    end = point.end_time.astimezone(ZoneInfo(policy.timezone))
    # a reason is one of the tiers the policy keeps: its setting is set (the `or 0`s type it)
    days = {"daily": policy.keep_daily or 0, "weekly": 7 * (policy.keep_weekly or 0),
            "diff": policy.keep_diff or MIN_DAYS, "log": policy.keep_log or MIN_DAYS,
            "copy-only": policy.keep_daily or COPY_ONLY_FALLBACK_DAYS}
    months = {"monthly": policy.keep_monthly or 0, "yearly": 12 * (policy.keep_yearly or 0)}
    ends = [end + timedelta(days=days[r]) for r in reasons if r in days] + \
           [_months_before(end, -months[r]) for r in reasons if r in months]
    return max(ends) if ends else None
