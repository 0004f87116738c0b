"""The resource planner: how long a policy's backups take on a server, how many run at once,
how fast the vault grows, and how many databases the server can protect within a window.

The model (docs/policies.md, *Resource planner*):

- dbsafe backs up an instance (a PostgreSQL cluster) physically: one full, differential or
  log job covers all its databases. The K databases of size S are spread evenly over
  ``instances`` instances (default 1).
- A job costs a fixed ``fixed_seconds`` plus its bytes at the measured rates below, times
  ``cores`` (every job's copy threads use all cores; jobs running together share them). The
  bytes sent to the vault (new compressed blocks, compressed WAL) must also pass the
  network, and the bytes read come off the data disks: a day's work takes max(CPU-bound
  time, bytes sent / bandwidth, bytes read / disk rate), so doubling the cores doubles the
  CPU-bound rate until the bandwidth (or the disks) bind. The rates were measured with the
  data in the page cache; without ``disk_mb_s`` the disks are assumed never to bind.
- ``change_rate_pct`` is the share of the data's 1 MiB blocks that changes a day, changes
  on different days falling on independent random blocks: after d days a share
  1 - (1 - c)^d has changed (hot spots that change again and again make it smaller).
- A full after the first stores only the blocks changed since the previous full (the vault
  deduplicates the rest) but still reads every block; a differential reads every page
  (scan rate) and stores the blocks changed since its full; log backups archive the WAL.
- Vault size: the policy's schedule is played over 12 months and retention.decide() picks
  the points kept at each month's end; kept fulls share their unchanged blocks (the first
  stores everything, each later one the blocks changed since the one before it), kept
  differentials store their own, and the WAL is kept from the log chain's base point on.

Throughput constants (``Rates``) come from bench/README.md; each names its source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from dbsafe.core.errors import DbsafeError
from dbsafe.policy import schedule
from dbsafe.policy.model import WEEKDAYS, Policy
from dbsafe.policy.retention import PointInfo, decide

MAX_DATABASES_PER_SERVER = 2000   # the support matrix's limit per server (and per vault)


@dataclass(frozen=True)
class Rates:
    """Measured throughput, per core unless said otherwise (MB = 10^6 bytes)."""

    full_mb_s_per_core: float = 246.0
    """Full backup of new data: 2 635 MB in 5.35 s (dbsafe's own seconds, without process
    start-up) on 2 cores, zstd level 1. bench/README.md, "2026-11-25, dbsafe 1c2005b"."""
    unchanged_mb_s_per_core: float = 1062.0
    """A full over blocks the vault already holds (read, hash, skip): the 2nd unchanged
    full, 2 635 MB in 1.24 s on 2 cores. bench/README.md, same run."""
    stored_ratio: float = 0.206
    """Bytes stored / database bytes for new data: 541.9 MB for 2 635 MB (pgbench tables
    plus md5 text, zstd level 1). bench/README.md, same run."""
    diff_scan_mb_s_per_core: float = 1100.0
    """Differential page scan: 1 585 MB read and compared by page LSN in 0.72 s of dbsafe's
    own time on 2 cores. bench/README.md, "Differentials", run 20261125T125133Z."""
    wal_mb_s_per_core: float = 122.0
    """WAL archiving: a 1 GiB backlog drained at 244 MB/s (median of 6) by the agent's 2
    threads on 2 cores. bench/README.md, "WAL archiving", drain."""
    wal_stored_ratio: float = 0.264
    """Bytes stored / WAL bytes, zstd level 1 on 1 MiB blocks, for the WAL of a load on the
    dataset's mix (pgbench and md5 text): 0.262 and 0.266 in two runs. bench/README.md,
    "Planner constants" (bench/planner.py)."""
    fixed_seconds: float = 0.8
    """Fixed cost of one backup command (start-up, vault and catalog, instance check).
    bench/README.md, "Where the time goes": ~0.8 s."""


@dataclass(frozen=True)
class PlanInput:
    cores: int
    bandwidth_mbps: float          # megabits per second to the vault
    db_count: int
    db_size_gb: float              # GB = 10^9 bytes, per database
    change_rate_pct: float         # % of blocks changed a day
    policy: Policy
    window_hours: float = 8.0
    instances: int = 1
    wal_gb_per_day: float | None = None   # per database; None: changed bytes a day
    disk_mb_s: float | None = None        # the data disks' read rate; None: page cache
    rates: Rates = field(default_factory=Rates)


def _check(p: PlanInput) -> None:
    rules = [
        (p.cores >= 1, f"--cores must be at least 1, not {p.cores}"),
        (p.bandwidth_mbps > 0, f"--bandwidth-mbps must be above 0, not {p.bandwidth_mbps}"),
        (p.db_count >= 1, f"--db-count must be at least 1, not {p.db_count}"),
        (p.db_size_gb > 0, f"--db-size-gb must be above 0, not {p.db_size_gb}"),
        (0 <= p.change_rate_pct <= 100,
         f"--change-rate-pct must be 0 to 100, not {p.change_rate_pct}"),
        (0 < p.window_hours <= 24, f"--window-hours must be above 0 and at most 24, "
                                   f"not {p.window_hours}"),
        (1 <= p.instances <= p.db_count,
         f"--instances must be 1 to --db-count ({p.db_count}), not {p.instances}"),
        (p.wal_gb_per_day is None or p.wal_gb_per_day >= 0,
         f"--wal-gb-per-day must be 0 or more, not {p.wal_gb_per_day}"),
        (p.disk_mb_s is None or p.disk_mb_s > 0,
         f"--disk-mb-s must be above 0, not {p.disk_mb_s}"),
    ]
    for ok, rule in rules:
        if not ok:
            raise DbsafeError("plan.invalid", rule=rule)


def changed_share(change_rate_pct: float, days: float) -> float:
    """The share of blocks changed after ``days`` days at ``change_rate_pct`` a day."""
    share: float = 1 - (1 - change_rate_pct / 100) ** days
    return share


@dataclass
class _Work:
    """Work for the whole server: wall seconds if CPU-bound, MB read and sent, jobs."""

    cpu_seconds: float = 0.0
    read_mb: float = 0.0
    sent_mb: float = 0.0
    jobs: int = 0

    def add(self, other: _Work) -> None:
        self.cpu_seconds += other.cpu_seconds
        self.read_mb += other.read_mb
        self.sent_mb += other.sent_mb
        self.jobs += other.jobs

    def bounds(self, p: PlanInput) -> dict[str, float]:
        """Seconds if bound by the CPU, the network, the disks (when given)."""
        found = {"cpu": self.cpu_seconds, "bandwidth": self.sent_mb / (p.bandwidth_mbps / 8)}
        if p.disk_mb_s:
            found["disk"] = self.read_mb / p.disk_mb_s
        return found

    def seconds(self, p: PlanInput) -> float:
        return max(self.bounds(p).values())


class _Model:
    def __init__(self, p: PlanInput) -> None:
        self.p, self.r = p, p.rates
        self.total_mb = p.db_count * p.db_size_gb * 1000
        wal_gb = p.wal_gb_per_day
        if wal_gb is None:
            wal_gb = p.db_size_gb * p.change_rate_pct / 100
        self.wal_mb_day = p.db_count * wal_gb * 1000

    def first_full(self) -> _Work:
        r = self.r
        return _Work(self.p.instances * r.fixed_seconds
                     + self.total_mb / (r.full_mb_s_per_core * self.p.cores),
                     self.total_mb, self.total_mb * r.stored_ratio, self.p.instances)

    def full(self, days_since_full: float) -> _Work:
        r, share = self.r, changed_share(self.p.change_rate_pct, days_since_full)
        cpu = (self.total_mb * (1 - share) / r.unchanged_mb_s_per_core
               + self.total_mb * share / r.full_mb_s_per_core) / self.p.cores
        return _Work(self.p.instances * r.fixed_seconds + cpu, self.total_mb,
                     self.total_mb * share * r.stored_ratio, self.p.instances)

    def diff(self, days_since_full: float) -> _Work:
        r, share = self.r, changed_share(self.p.change_rate_pct, days_since_full)
        cpu = (self.total_mb / r.diff_scan_mb_s_per_core
               + self.total_mb * share / r.full_mb_s_per_core) / self.p.cores
        return _Work(self.p.instances * r.fixed_seconds + cpu, self.total_mb,
                     self.total_mb * share * r.stored_ratio, self.p.instances)

    def logs(self) -> _Work:
        policy, r = self.p.policy, self.r
        assert policy.log_every is not None  # asked only of a policy with log backups
        jobs = self.p.instances * (1440 // policy.log_every)
        return _Work(jobs * r.fixed_seconds
                     + self.wal_mb_day / (r.wal_mb_s_per_core * self.p.cores),
                     self.wal_mb_day, self.wal_mb_day * r.wal_stored_ratio, jobs)


def _days_since_full(policy: Policy) -> dict[int, int]:
    """weekday index -> days since the previous full (on a full's day: since the one
    before it)."""
    full_days = [WEEKDAYS.index(d) for d in policy.full_weekdays()]
    result = {}
    for day in range(7):
        result[day] = min((day - f) % 7 or 7 for f in full_days)
    return result


def _week(model: _Model, policy: Policy) -> dict[str, dict[str, _Work]]:
    """weekday -> {"full"|"diff"|"log": work}."""
    since = _days_since_full(policy)
    full_days = set(policy.full_weekdays())
    week = {}
    for index, day in enumerate(WEEKDAYS):
        work = {"log": model.logs()} if policy.log_every else {}
        if day in full_days:
            work["full"] = model.full(since[index])
        elif day in policy.diff_days:
            work["diff"] = model.diff(since[index])
        week[day] = work
    return week


def _day_total(day: dict[str, _Work]) -> _Work:
    total = _Work()
    for work in day.values():
        total.add(work)
    return total


def _busiest(p: PlanInput) -> tuple[str, dict[str, _Work], float]:
    week = _week(_Model(p), p.policy)
    day = max(WEEKDAYS, key=lambda d: _day_total(week[d]).seconds(p))
    return day, week[day], _day_total(week[day]).seconds(p)


def _peak_concurrency(p: PlanInput, busiest: dict[str, _Work]) -> int:
    """Backups running at once at the busiest moment: every instance's full or
    differential, plus its log backup when a log slot falls while that job runs."""
    main = busiest.get("full") or busiest.get("diff")
    if main is None:
        return p.instances if p.policy.log_every else 0
    if not p.policy.log_every:
        return p.instances
    job_seconds = main.seconds(p)   # the instances' jobs share the cores
    start = schedule.next_slot(p.policy, "full", datetime(2029, 1, 1, tzinfo=UTC))
    assert start is not None  # the policy has backups (``main``), so a full slot
    log_slot = schedule.latest_slot(p.policy, "log", start)
    gap: float = 0
    if log_slot != start:
        next_log = schedule.next_slot(p.policy, "log", start)
        assert next_log is not None  # the policy takes log backups (log_every)
        gap = (next_log - start).total_seconds()
    return p.instances * (2 if job_seconds >= gap else 1)


def _vault_by_month(p: PlanInput, months: int = 12) -> list[float]:
    """The vault's size (GB) at the end of each of the first ``months`` months."""
    model, policy, r = _Model(p), p.policy, p.rates
    start = datetime(2029, 1, 1, tzinfo=UTC)       # a Monday; any date would do
    end = start + timedelta(days=round(months * 365.25 / 12))
    slots = [(t, "full") for t in schedule.slots_between(policy, "full", start, end)]
    slots += [(t, "diff") for t in schedule.slots_between(policy, "diff", start, end)]
    slots.sort()
    points, size_mb, last_full = [], {}, None
    for n, (t, kind) in enumerate(slots):
        pid = f"{kind}{n}"
        base_id = None
        if kind == "diff":
            if last_full is None:
                continue                            # no full yet: nothing to differ from
            base_id = last_full[0]
            days = (t - last_full[1]).total_seconds() / 86400
            size_mb[pid] = model.total_mb * changed_share(p.change_rate_pct, days) \
                * r.stored_ratio
        points.append(PointInfo(pid, kind, False, t, base_id))
        if kind == "full":
            last_full = (pid, t)
    sizes = []
    for m in range(1, months + 1):
        now = start + timedelta(days=round(m * 365.25 / 12))
        seen = [pt for pt in points if pt.end_time <= now]
        d = decide(seen, policy, now)
        kept = [pt for pt in seen if pt.point_id in d.keep]
        mb, previous = 0.0, None
        for pt in kept:
            if pt.type == "full":
                share = 1.0 if previous is None else changed_share(
                    p.change_rate_pct, (pt.end_time - previous).total_seconds() / 86400)
                mb += model.total_mb * share * r.stored_ratio
                previous = pt.end_time
            else:
                mb += size_mb[pt.point_id]
        if d.log_keep_from is not None and policy.log_every:
            base = next(pt for pt in seen if pt.point_id == d.wal_base_point)
            wal_days = (now - base.end_time).total_seconds() / 86400
            mb += model.wal_mb_day * wal_days * r.wal_stored_ratio
        sizes.append(mb / 1000)
    return sizes


def _fits(p: PlanInput) -> bool:
    return _busiest(p)[2] <= p.window_hours * 3600


def _max_databases(p: PlanInput) -> tuple[int, str]:
    """The most databases (of this size, same instances) whose busiest day fits."""
    def at(k: int) -> PlanInput:
        return replace(p, db_count=k, instances=min(p.instances, k))

    if not _fits(at(1)):
        return 0, "window"
    if _fits(at(MAX_DATABASES_PER_SERVER)):
        return MAX_DATABASES_PER_SERVER, "support matrix (2000 databases per server)"
    lo, hi = 1, MAX_DATABASES_PER_SERVER            # fits at lo, not at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _fits(at(mid)) else (lo, mid)
    return lo, "window"


def plan(p: PlanInput) -> dict[str, Any]:
    """The plan for ``p``: hours of work on the busiest day (by kind), whether it fits the
    window, the first (seeding) full, peak concurrency, vault size by month and monthly
    growth, and the recommended maximum number of databases."""
    _check(p)
    day, work, seconds = _busiest(p)
    total = _day_total(work)
    bounds = total.bounds(p)
    by_month = _vault_by_month(p)
    first = _Model(p).first_full()
    max_dbs, limited_by = _max_databases(p)
    return {
        "policy": p.policy.name,
        "inputs": {f.name: getattr(p, f.name) for f in fields(p)
                   if f.name not in ("policy", "rates")},
        "busiest_day": day,
        "work_hours": {k: round(w.seconds(p) / 3600, 3) for k, w in work.items()},
        "window_hours_needed": round(seconds / 3600, 3),
        "fits_window": seconds <= p.window_hours * 3600,
        "bound_by": max(bounds, key=lambda k: bounds[k]),
        "jobs_on_busiest_day": total.jobs,
        "first_full_hours": round(first.seconds(p) / 3600, 3),
        "peak_concurrency": _peak_concurrency(p, work),
        "vault_gb_by_month": [round(x, 1) for x in by_month],
        "growth_gb_per_month": round(by_month[-1] - by_month[-2], 1),
        "max_databases": max_dbs,
        "max_databases_limited_by": limited_by,
        "rates": asdict(p.rates),
    }
