"""When a policy's backups are due: schedule slots as UTC instants.

Full, differential and drill slots sit at a local wall time on chosen weekdays in the
policy's time zone (a daily full: every day). Daylight saving time, as docs/policies.md
states it:

- a wall time that does not exist (spring forward, e.g. 02:30 in Europe/Berlin on
  2026-03-29) runs at the first instant after the gap, i.e. the moment the clocks jump
  (03:00 local, 01:00 UTC);
- a wall time that happens twice (fall back, e.g. 02:30 on 2026-10-25) runs once, at its
  first occurrence (fold=0: 02:30 CEST, 00:30 UTC).

Log slots are every ``log_every`` minutes on multiples of the interval since the Unix epoch,
in UTC, so DST never stretches or skips them (every interval divides a day, so they also
fall on round UTC times: :00, :15, ...).

All functions take and return timezone-aware datetimes; results are in UTC. A caller that
was down for three days asks ``latest_slot`` once and gets one slot to catch up, not the
missed run of every day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dbsafe.policy.model import WEEKDAYS, Policy

KINDS = ("full", "diff", "log", "drill")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {t!r}")
    return t.astimezone(UTC)


def _weekly(policy: Policy, kind: str) -> tuple[tuple[str, ...], str]:
    """(weekdays, HH:MM) of a wall-clock kind."""
    if kind == "full":
        return policy.full_weekdays(), policy.full_time
    if kind == "diff":
        return policy.diff_days, policy.full_time
    if kind == "drill":
        return policy.drill_days, policy.drill_time
    raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def wall_to_utc(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    """The UTC instant of local wall time ``hhmm`` on ``day`` (DST rules above)."""
    hour, minute = map(int, hhmm.split(":"))
    wall = datetime.combine(day, time(hour, minute), tzinfo=tz)   # fold=0: first occurrence
    utc = wall.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return utc
    # In a gap: fold=0 read the wall time with the offset before the jump (an instant after
    # the jump), fold=1 with the offset after it (an instant before). The jump lies between:
    # find the first instant that has the later offset (to the second).
    lo = int(wall.replace(fold=1).astimezone(UTC).timestamp())
    hi = int(utc.timestamp())
    after = utc.astimezone(tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _wall_slots(policy: Policy, kind: str, first: date, last: date) -> Iterator[datetime]:
    """Slots of a wall-clock kind on local dates first..last, in order."""
    days, hhmm = _weekly(policy, kind)
    if not days:
        return
    tz = ZoneInfo(policy.timezone)
    chosen = {WEEKDAYS.index(d) for d in days}
    day = first
    while day <= last:
        if day.weekday() in chosen:
            yield wall_to_utc(day, hhmm, tz)
        day += timedelta(days=1)


def _local_date(t: datetime, policy: Policy) -> date:
    return t.astimezone(ZoneInfo(policy.timezone)).date()


def _log_step(policy: Policy) -> timedelta | None:
    return timedelta(minutes=policy.log_every) if policy.log_every else None


def next_slot(policy: Policy, kind: str, after: datetime) -> datetime | None:
    """The first slot of ``kind`` strictly after ``after`` (None: the kind never runs)."""
    after = _aware(after, "after")
    if kind == "log":
        step = _log_step(policy)
        if step is None:
            return None
        return _EPOCH + ((after - _EPOCH) // step + 1) * step
    start = _local_date(after, policy) - timedelta(days=1)
    for slot in _wall_slots(policy, kind, start, start + timedelta(days=9)):
        if slot > after:
            return slot
    return None


def latest_slot(policy: Policy, kind: str, at: datetime) -> datetime | None:
    """The last slot of ``kind`` at or before ``at`` (None: the kind never runs)."""
    at = _aware(at, "at")
    if kind == "log":
        step = _log_step(policy)
        if step is None:
            return None
        return _EPOCH + ((at - _EPOCH) // step) * step
    end = _local_date(at, policy) + timedelta(days=1)
    found = None
    for slot in _wall_slots(policy, kind, end - timedelta(days=9), end):
        if slot <= at:
            found = slot
    return found


def slots_between(policy: Policy, kind: str, start: datetime,
                  end: datetime) -> list[datetime]:
    """Every slot of ``kind`` with start < slot <= end, in order."""
    start, end = _aware(start, "start"), _aware(end, "end")
    if end <= start:
        return []
    if kind == "log":
        step = _log_step(policy)
        if step is None:
            return []
        first = (start - _EPOCH) // step + 1
        last = (end - _EPOCH) // step
        return [_EPOCH + n * step for n in range(first, last + 1)]
    first_day = _local_date(start, policy) - timedelta(days=1)
    last_day = _local_date(end, policy) + timedelta(days=1)
    return [s for s in _wall_slots(policy, kind, first_day, last_day) if start < s <= end]
