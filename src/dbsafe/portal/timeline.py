"""The geometry of a database's restore timeline: points and log ranges in a time window →
shapes with an x, a width and a title, which the database page draws as inline SVG.

Pure (no I/O, no clock): the page passes the window. One mark per full, copy-only or
differential backup; the log chain is drawn as its restorable ranges (a continuous band,
one rectangle per range), never as one mark per log backup — 90 days of 15-minute log
backups are ~8,700 points, and the band already says where a point-in-time restore can
go. Gaps in the chain are red rectangles. Everything is clipped to the window; a shape
narrower than a pixel is widened to stay visible and clickable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo

from dbsafe.core.stamps import parse, shown

WIDTH = 1000  # the SVG's user units across the window (it scales to the page's width)
MIN_WIDTH = 2.0
WINDOWS = {"5m": timedelta(minutes=5), "15m": timedelta(minutes=15),
           "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
           "14d": timedelta(days=14), "30d": timedelta(days=30), "90d": timedelta(days=90)}
DEFAULT_WINDOW = "14d"
ZOOMED = "15m"  # the window "zoom in here" opens around a picked instant
MARK_KINDS = ("full", "copy-only", "diff")
# tick steps, smallest first; the first giving at most MAX_TICKS ticks is used
STEPS = [timedelta(seconds=s) for s in (30,)] + \
        [timedelta(minutes=m) for m in (1, 5, 10, 15, 30)] + \
        [timedelta(hours=h) for h in (1, 3, 6, 12)] + \
        [timedelta(days=d) for d in (1, 2, 7)]
MAX_TICKS = 16
LANE_GAP = 14.0  # marks of one row closer than this (user units) go to the next lane
LANES = 3        # lanes a row's marks spread over before they may overlap again


@dataclass(frozen=True)
class Shape:
    """``kind``: band (a restorable log range), gap, full, copy-only, diff, or tick."""
    kind: str
    x: float
    width: float = 0.0
    title: str = ""
    start: str | None = None     # ISO instants a band or gap covers (for the page's JS)
    end: str | None = None
    point_id: str | None = None  # a mark's point
    lane: int = 0                # a mark's lane in its row: crowded marks step aside


@dataclass
class Timeline:
    start: datetime
    end: datetime
    width: int
    bands: list[Shape] = field(default_factory=list)
    gaps: list[Shape] = field(default_factory=list)
    marks: list[Shape] = field(default_factory=list)
    ticks: list[Shape] = field(default_factory=list)
    hidden: int = 0  # marks of points outside the window


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def window(name: str | None, now: datetime, around: datetime | None = None
           ) -> tuple[str, datetime, datetime]:
    """(name, start, end) of a named window ending ``now``, or centred on ``around`` (but
    never past ``now``); unknown names: the default."""
    name = name if name in WINDOWS else DEFAULT_WINDOW
    span = WINDOWS[name]
    if around is None:
        return name, now - span, now
    end = min(around + span / 2, now)
    return name, end - span, end


def _x(t: datetime, start: datetime, end: datetime, width: int) -> float:
    return (t - start) / (end - start) * width


def _span(kind: str, a: datetime, b: datetime, start: datetime, end: datetime, width: int,
          title: str) -> Shape | None:
    """A rectangle from ``a`` to ``b`` clipped to the window (None when outside it)."""
    a, b = max(a, start), min(b, end)
    if b < a or (b == a and not start <= a <= end):
        return None
    x0, x1 = _x(a, start, end, width), _x(b, start, end, width)
    w = max(x1 - x0, MIN_WIDTH)
    x0 = min(x0, width - w)
    return Shape(kind, round(x0, 2), round(w, 2), title, iso(a), iso(b))


def ticks(start: datetime, end: datetime, width: int, zone: tzinfo = UTC) -> list[Shape]:
    """Axis ticks on instants round in ``zone`` (the viewer's; UTC by default): minutes or
    hours for short windows, midnights for days, Mondays for weeks; titles are the
    labels, in that zone's wall time."""
    span = end - start
    step = next((s for s in STEPS if span / s <= MAX_TICKS), STEPS[-1])
    start, end = start.astimezone(zone), end.astimezone(zone)
    if step >= timedelta(days=7):
        first = start.replace(hour=0, minute=0, second=0, microsecond=0)
        first += timedelta(days=(7 - first.weekday()) % 7)
        label = "%d %b"
    elif step >= timedelta(days=1):
        first = start.replace(hour=0, minute=0, second=0, microsecond=0)
        label = "%a %d %b"
    else:
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        first = midnight + ((start - midnight) // step) * step
        label = "%H:%M:%S" if step < timedelta(minutes=1) else "%H:%M"
    out = []
    t = first
    while t <= end:
        if t >= start:
            text = t.strftime(label)
            if label == "%H:%M" and t.hour == 0 and t.minute == 0:
                text = t.strftime("%d %b")
            at = t.astimezone(UTC)  # wall-clock steps; the instant for the position
            out.append(Shape("tick", round(_x(at, start, end, width), 2), title=text,
                             start=iso(at)))
        t += step
    return out


def _range_title(r: dict, zone: tzinfo) -> str:
    return (f"log chain, timeline {r['timeline']}: restorable from "
            f"{shown(r['start_time'], zone)} to {shown(r['end_time'], zone)}")


def _gap_title(g: dict) -> str:
    return (f"gap in the log chain: {g['missing_segments']} WAL segment(s) missing from "
            f"{g['first_missing']} ({g['start_lsn']} to {g['end_lsn']})")


def build(points: list[dict], log_ranges: list[dict], gaps: list[dict], start: datetime,
          end: datetime, width: int = WIDTH, zone: tzinfo = UTC) -> Timeline:
    """The shapes of ``points`` (as services/lifecycle/points lists them), the chain's
    ``log_ranges`` and ``gaps`` inside [start, end]; the axis in ``zone``."""
    tl = Timeline(start, end, width, ticks=ticks(start, end, width, zone))
    for r in log_ranges:
        shape = _span("band", parse(r["start_time"]), parse(r["end_time"]), start, end, width,
                      _range_title(r, zone))
        if shape:
            tl.bands.append(shape)
    for g in gaps:
        # a gap's times are those of the commits around it; one side may be unknown
        a = parse(g["start_time"]) if g.get("start_time") else None
        b = parse(g["end_time"]) if g.get("end_time") else None
        if a is None and b is None:
            continue
        first, last = a or b, b or a
        assert first is not None and last is not None  # one side at least (above)
        shape = _span("gap", first, last, start, end, width, _gap_title(g))
        if shape:
            tl.gaps.append(shape)
    for p in points:
        kind = "copy-only" if p["type"] == "full" and p.get("copy_only") else p["type"]
        if kind not in MARK_KINDS:
            continue
        t = parse(p["end_time"])
        if not start <= t <= end:
            tl.hidden += 1
            continue
        tl.marks.append(Shape(kind, round(_x(t, start, end, width), 2),
                              title=f"{kind} {p['point_id']}, ended "
                                    f"{shown(p['end_time'], zone)}",
                              start=iso(t), point_id=p["point_id"]))
    tl.marks = _in_lanes(tl.marks)
    return tl


def _in_lanes(marks: list[Shape]) -> list[Shape]:
    """Marks of one row (differentials, or the others) closer than ``LANE_GAP`` step into
    the next of ``LANES`` lanes, so that each can still be pointed at and clicked; the
    points table below the timeline lists every one of them too."""
    placed: list[Shape] = []
    last: dict[tuple[bool, int], float] = {}
    for m in sorted(marks, key=lambda m: m.x):
        row = m.kind == "diff"
        lane = next((n for n in range(LANES)
                     if m.x - last.get((row, n), -LANE_GAP) >= LANE_GAP), 0)
        last[(row, lane)] = m.x
        placed.append(replace(m, lane=lane))
    return placed
