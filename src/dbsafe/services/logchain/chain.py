"""The log chain of an instance: which instants a point-in-time restore can reach.

Archived segments are grouped per timeline into *runs* of consecutive segments. A run is
restorable from the end of the first base backup (full, copy-only or differential) whose
stop LSN lies in it, or from its start when it continues the run of its parent timeline
(a promotion). It is restorable *until* its last commit or abort record: recovery to a
time stops at the first such record later than the target, so a target at or after the
last one can never be reached (PostgreSQL would end recovery short of it). Missing
segments between runs are gaps, reported with the times around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dbsafe.engines.postgres import wal
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.logchain.archive import reconcile_wal

BASE_TYPES = ("full", "copy-only", "diff")


@dataclass
class Run:
    timeline: int
    first: dict                      # catalog rows of its first and last segments
    last: dict
    segments: list[dict] = field(default_factory=list)
    start_time: str | None = None    # restorable from (None: no base, not restorable)
    base: str | None = None          # the point that makes it restorable, or 'timeline N'

    @property
    def start_lsn(self) -> int:
        return self.first["segno"] * self.first["segment_size"]

    @property
    def end_lsn(self) -> int:
        return wal.parse_lsn(self.last["end_lsn"])

    @property
    def end_time(self) -> str | None:
        times = [s["last_xact_time"] for s in self.segments if s["last_xact_time"]]
        return max(times) if times else None

    @property
    def first_time(self) -> str | None:
        times = [s["first_xact_time"] for s in self.segments if s["first_xact_time"]]
        return min(times) if times else None

    def holds(self, lsn: int) -> bool:
        return self.start_lsn <= lsn <= self.end_lsn


@dataclass
class Chain:
    runs: list[Run]
    gaps: list[dict]
    histories: dict[int, list[wal.TimelineSwitch]]

    def ranges(self) -> list[dict]:
        """Restorable ranges: a target time T works when start_time <= T < end_time."""
        out = []
        for r in self.runs:
            if r.start_time is None or r.end_time is None or r.end_time <= r.start_time:
                continue
            out.append({"timeline": r.timeline, "start_time": r.start_time,
                        "end_time": r.end_time, "start_lsn": wal.format_lsn(r.start_lsn),
                        "end_lsn": wal.format_lsn(r.end_lsn), "base": r.base,
                        "first_segment": r.first["name"], "last_segment": r.last["name"]})
        return out


def _runs(rows: list[dict]) -> list[Run]:
    runs: list[Run] = []
    for row in rows:
        prev = runs[-1] if runs else None
        if prev and prev.timeline == row["timeline"] and prev.last["segno"] + 1 == row["segno"]:
            prev.last = row
            prev.segments.append(row)
        else:
            runs.append(Run(row["timeline"], row, row, [row]))
    return runs


def histories(vault: Vault, system_id: str, names: set[str]) -> dict[int, list]:
    found = {}
    for name in names:
        m = wal.HISTORY.match(name)
        if m:
            record = vault.repo.load_wal_record(system_id, name)
            assert record is not None  # listed just now
            data = b"".join(vault.repo.read_block(bytes.fromhex(b)) for b in record["blocks"])
            found[int(m.group(1), 16)] = wal.parse_history(data.decode())
    return found


@dataclass(frozen=True)
class ArchivedWal:
    """What the vault holds of a cluster's WAL: its catalog rows and timeline histories —
    what ``log_chain`` reads, apart from the points it is given, so that one reading serves
    the chains of several sets of points (services/operations/restorable.py)."""

    rows: list[dict]
    histories: dict[int, list]


def archived_wal(vault: Vault, server: dict, reconcile: bool = True) -> ArchivedWal:
    """The cluster's archived WAL. ``reconcile`` first repairs the catalog from the
    repository's WAL records (a listing of the storage); /metrics, which reads the catalog
    only at every scrape, leaves that to the other readers."""
    sysid = server["system_identifier"]
    if reconcile:
        reconcile_wal(vault, sysid)
    rows = vault.catalog.list_wal_files(sysid)
    return ArchivedWal(rows, histories(vault, sysid, {r["name"] for r in rows}))


def log_chain(vault: Vault, server: dict, points: list[dict],
              wal_read: ArchivedWal | None = None) -> Chain:
    """The chain of the cluster's archived WAL (``wal_read``, else read now) continuing
    from ``points``."""
    wal_read = wal_read or archived_wal(vault, server)
    rows, hist = wal_read.rows, wal_read.histories
    segments = [r for r in rows if r["segno"] is not None]
    runs = _runs(segments)
    bases = sorted((p for p in points if p["type"] in BASE_TYPES), key=lambda p: p["end_time"])
    for run in runs:
        for p in bases:
            if p["timeline"] == run.timeline and run.holds(wal.parse_lsn(p["stop_lsn"])):
                run.start_time, run.base = p["end_time"], p["point_id"]
                break
        parent = parent_run(run, runs, hist)
        if parent is not None and parent.start_time is not None and run.start_time is None:
            run.start_time = parent.start_time
            run.base = parent.base
    gaps = timeline_gaps(runs, hist)
    for a, b in zip(runs, runs[1:], strict=False):
        if a.timeline == b.timeline:
            gaps.append({"timeline": a.timeline, "start_lsn": wal.format_lsn(a.end_lsn),
                         "end_lsn": wal.format_lsn(b.start_lsn),
                         "start_time": a.end_time, "end_time": b.first_time,
                         "missing_segments": b.first["segno"] - a.last["segno"] - 1,
                         "first_missing": wal.segment_file_name(
                             a.timeline, a.last["segno"] + 1, a.last["segment_size"])})
    return Chain(runs, gaps, hist)


def timeline_gaps(runs: list[Run], hist: dict[int, list]) -> list[dict]:
    """WAL missing around a timeline switch: the first run of a later timeline that does
    not continue its parent's run (a failover whose last WAL of the old timeline, or first
    of the new one, never reached the vault). The gap runs from the end of the latest
    earlier run below it to the start of that run."""
    gaps = []
    seen: set[int] = set()
    for run in runs:
        if run.timeline in seen:
            continue
        seen.add(run.timeline)
        if run.timeline == 1 or parent_run(run, runs, hist) is not None:
            continue
        switches = hist.get(run.timeline) or []
        ancestors = {s.parent for s in switches} or set(range(1, run.timeline))
        before = [r for r in runs if r.timeline in ancestors and r.end_lsn <= run.start_lsn]
        if not before:
            continue  # the chain starts here
        prev = max(before, key=lambda r: r.end_lsn)
        gaps.append({"timeline": run.timeline, "start_lsn": wal.format_lsn(prev.end_lsn),
                     "end_lsn": wal.format_lsn(run.start_lsn),
                     "start_time": prev.end_time, "end_time": run.first_time,
                     "missing_segments": max(run.first["segno"] - prev.last["segno"] - 1, 1),
                     "first_missing": wal.segment_file_name(
                         prev.timeline, prev.last["segno"] + 1, prev.last["segment_size"]),
                     "timeline_switch": True})
    return gaps


def parent_run(run: Run, runs: list[Run], hist: dict[int, list]) -> Run | None:
    """The run of the parent timeline that this run continues after a promotion."""
    switches = hist.get(run.timeline)
    if not switches:
        return None
    switch = switches[-1]
    seg_size = run.first["segment_size"]
    if run.first["segno"] != switch.switch_lsn // seg_size:
        return None
    for other in runs:
        if other.timeline == switch.parent and \
                other.first["segno"] <= switch.switch_lsn // seg_size - 1 <= other.last["segno"]:
            return other
    return None


def describe_ranges(chain: Chain) -> str:
    ranges = chain.ranges()
    if not ranges:
        return "none (no full backup with archived WAL after it yet)"
    return "; ".join(f"{r['start_time']} to {r['end_time']} (timeline {r['timeline']})"
                     for r in ranges)
