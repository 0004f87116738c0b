"""The backup policy: what runs when, how long points are kept, and how they are compressed.

The rules follow the cloud service's policy (docs/policies.md lists them with their source):
a full daily or weekly on chosen weekdays at one time of day in a policy time zone;
differentials only with a weekly full, at most one a day and never on a full's day; log
backups every 15 minutes to a day (dbsafe adds shorter intervals, down to one minute);
retention ranges per tier. A policy that breaks a rule is refused with one sentence per
broken rule, so nothing invalid is ever stored or scheduled.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeGuard

from dbsafe.core.errors import DbsafeError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_FREQUENCIES = ("daily", "weekly")

# The service's log intervals, plus dbsafe's shorter ones: the divisors of 60 below 15, so
# every interval divides an hour or a day and slots stay on round UTC times.
SERVICE_LOG_MINUTES = (15, 30, 60, 120, 240, 480, 720, 1440)
EXTENDED_LOG_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12)
LOG_MINUTES = EXTENDED_LOG_MINUTES + SERVICE_LOG_MINUTES

# Retention ranges (inclusive), as the service allows them; unit per setting.
RANGES: dict[str, tuple[int, int, str]] = {
    "keep_daily": (7, 9999, "days"),
    "keep_weekly": (1, 5163, "weeks"),
    "keep_monthly": (1, 1188, "months"),
    "keep_yearly": (1, 99, "years"),
    "keep_diff": (7, 180, "days"),
    "keep_log": (7, 35, "days"),
}
# zstd's regular levels (1 fastest .. 22 smallest); 0 means "off" to the vault, and the
# negative "fast" levels store far more (bench/README.md), so neither is offered.
COMPRESSION_LEVELS = (1, 22)
# A synthetic full reads every file again at least this often (weeks; docs/policies.md).
READ_FULL_WEEKS = (1, 52)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


@dataclass(frozen=True)
class Policy:
    """One backup policy. Times are local wall times in ``timezone``; days are WEEKDAYS."""

    name: str
    full: str = "daily"                 # "daily" | "weekly"
    full_days: tuple[str, ...] = ()     # weekly: chosen weekdays (at least one); daily: ()
    full_time: str = "01:00"            # HH:MM local time in `timezone`
    timezone: str = "UTC"               # IANA name
    diff_days: tuple[str, ...] = ()     # only with a weekly full, never a full's day
    log_every: int | None = 60          # minutes; None: no log backups (SIMPLE model)
    keep_daily: int | None = 30         # days
    keep_weekly: int | None = None      # weeks
    keep_monthly: int | None = None     # months
    keep_yearly: int | None = None      # years
    keep_diff: int | None = None        # days (required when diff_days)
    keep_log: int | None = 14           # days (required when log_every)
    compression: bool = True
    compression_level: int = 1          # zstd level used when compression is on
    synthetic_full: bool = True         # scheduled fulls built from the last full + the WAL
    read_full_weeks: int = 4            # ... yet one reads every file at least this often
    drill_days: tuple[str, ...] = ()    # restore drills on these weekdays at drill_time
    drill_time: str = "04:00"

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON-ready: tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        """A policy from its stored or user-given form; settings it lacks take their
        defaults, unknown settings are refused (``policy.invalid``). Not validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DbsafeError("policy.invalid", policy=d.get("name"),
                              rule=f"unknown setting(s) {', '.join(unknown)}; the settings "
                                   f"are {', '.join(f.name for f in fields(cls))}")
        if "name" not in d:
            raise DbsafeError("policy.invalid", policy=None, rule="a policy needs a name")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in d.items()}
        return cls(**values)

    @property
    def recovery_model(self) -> str:
        """FULL when log backups run (point-in-time restore), else SIMPLE."""
        return "FULL" if self.log_every else "SIMPLE"

    @property
    def zstd_level(self) -> int:
        """The zstd level new blocks of the policy's items are stored with: 0 (raw) when
        compression is off."""
        return self.compression_level if self.compression else 0

    def full_weekdays(self) -> tuple[str, ...]:
        """The weekdays a full runs on (every day for a daily full)."""
        return WEEKDAYS if self.full == "daily" else self.full_days

    def implied(self, changes: dict[str, Any]) -> dict[str, Any]:
        """``changes`` plus what they imply when not given themselves, so a user need not
        unset by hand what a change makes invalid: a weekly full drops the daily tier
        (keep_daily), a daily full drops full_days, no log backups drop keep_log."""
        result = dict(changes)
        merged = {**self.to_dict(), **changes}
        if merged.get("full") == "weekly" and "keep_daily" not in changes:
            result["keep_daily"] = None
        if merged.get("full") == "daily" and "full_days" not in changes:
            result["full_days"] = ()
        if merged.get("log_every") is None and "keep_log" not in changes:
            result["keep_log"] = None
        return result

    def with_changes(self, **changes: object) -> Policy:
        """A copy with ``changes`` applied (unknown settings refused, not validated)."""
        return Policy.from_dict({**self.to_dict(), **changes})


DEFAULT_POLICY = Policy(name="default")


# ---- validation --------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def known_timezone(name: object) -> bool:
    return isinstance(name, str) and (name in _zone_names() or name == "UTC")


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _days_problems(setting: str, days: object) -> list[str]:
    if not isinstance(days, tuple) or not all(isinstance(d, str) for d in days):
        return [f"{setting} must be a list of weekdays ({', '.join(WEEKDAYS)})"]
    problems = []
    bad = [d for d in days if d not in WEEKDAYS]
    if bad:
        problems.append(f"{setting} has unknown weekday(s) {', '.join(map(repr, bad))}; "
                        f"weekdays are {', '.join(WEEKDAYS)}")
    twice = sorted({d for d in days if days.count(d) > 1})
    if twice:
        problems.append(f"{setting} lists {', '.join(twice)} more than once "
                        "(at most one run a day)")
    return problems


def _time_problems(setting: str, value: object) -> list[str]:
    if isinstance(value, str) and _HHMM.fullmatch(value):
        return []
    return [f"{setting} must be a 24-hour time HH:MM (00:00 to 23:59), not {value!r}"]


def _range_problem(setting: str, value: object) -> str | None:
    low, high, unit = RANGES[setting]
    if value is None:
        return None
    if not _is_int(value) or not low <= value <= high:
        return f"{setting} must be {low} to {high} {unit}, not {value!r}"
    return None


def violations(policy: Policy) -> list[str]:
    """Every rule ``policy`` breaks, one sentence each (empty: the policy is valid)."""
    p = policy
    problems: list[str] = []
    if not isinstance(p.name, str) or not _NAME.fullmatch(p.name):
        problems.append("the name must be 1 to 63 letters, digits, '.', '_' or '-', starting "
                        f"with a letter or digit, not {p.name!r}")
    # full
    if p.full not in FULL_FREQUENCIES:
        problems.append(f"full must be daily or weekly, not {p.full!r}")
    problems += _days_problems("full_days", p.full_days)
    if p.full == "weekly" and not p.full_days:
        problems.append("a weekly full needs at least one weekday in full_days")
    if p.full == "daily" and p.full_days:
        problems.append("a daily full runs every day: leave full_days empty, or make the "
                        "full weekly")
    problems += _time_problems("full_time", p.full_time)
    if not known_timezone(p.timezone):
        problems.append(f"timezone {p.timezone!r} is not an IANA time zone name (e.g. UTC, "
                        "Europe/Berlin, America/New_York)")
    # differentials
    problems += _days_problems("diff_days", p.diff_days)
    if p.diff_days and p.full != "weekly":
        problems.append("differentials need a weekly full (with a daily full every day "
                        "already has a full): make the full weekly, or leave diff_days empty")
    same = [d for d in p.diff_days if p.full == "weekly" and d in p.full_days]
    if same:
        problems.append(f"a differential never runs on a full's day: {', '.join(same)} "
                        "is in both full_days and diff_days")
    if p.diff_days and p.keep_diff is None:
        problems.append("differentials need keep_diff (7 to 180 days)")
    # logs
    if p.log_every is not None and (not _is_int(p.log_every) or p.log_every not in LOG_MINUTES):
        problems.append(f"log_every must be one of {', '.join(map(str, LOG_MINUTES))} minutes "
                        f"(or none for no log backups), not {p.log_every!r}")
    if p.log_every is not None and p.keep_log is None:
        problems.append("log backups need keep_log (7 to 35 days)")
    # retention tiers: the service offers the daily tier with a daily full only, and a
    # weekly full is kept through the weekly tier
    for setting in RANGES:
        problem = _range_problem(setting, getattr(p, setting))
        if problem:
            problems.append(problem)
    if p.full == "daily" and p.keep_daily is None:
        problems.append("a daily full needs keep_daily (7 to 9999 days)")
    if p.full == "weekly" and p.keep_daily is not None:
        problems.append("a weekly full has no daily retention tier: leave keep_daily unset "
                        "and keep fulls with keep_weekly (1 to 5163 weeks)")
    if p.full == "weekly" and p.keep_weekly is None:
        problems.append("a weekly full needs keep_weekly (1 to 5163 weeks)")
    # compression
    if not isinstance(p.compression, bool):
        problems.append(f"compression must be on or off, not {p.compression!r}")
    low, high = COMPRESSION_LEVELS
    if not _is_int(p.compression_level) or not low <= p.compression_level <= high:
        problems.append(f"compression_level must be a zstd level from {low} (fastest) to "
                        f"{high} (smallest), not {p.compression_level!r}")
    # synthetic fulls
    if not isinstance(p.synthetic_full, bool):
        problems.append(f"synthetic_full must be on or off, not {p.synthetic_full!r}")
    low, high = READ_FULL_WEEKS
    if not _is_int(p.read_full_weeks) or not low <= p.read_full_weeks <= high:
        problems.append(f"read_full_weeks must be {low} to {high} weeks, not "
                        f"{p.read_full_weeks!r}")
    # drills
    problems += _days_problems("drill_days", p.drill_days)
    problems += _time_problems("drill_time", p.drill_time)
    return problems


def validate(policy: Policy) -> None:
    """Raise ``policy.invalid`` naming every rule ``policy`` breaks."""
    problems = violations(policy)
    if problems:
        name = policy.name if isinstance(policy.name, str) else repr(policy.name)
        raise DbsafeError("policy.invalid", policy=name, rule="; ".join(problems))


# ---- parsing user input (CLI, API) -------------------------------------------------------

_DAY_NAMES = {**{d: d for d in WEEKDAYS},
              **{full: full[:3] for full in ("monday", "tuesday", "wednesday", "thursday",
                                             "friday", "saturday", "sunday")}}


def parse_days(text: str) -> tuple[str, ...]:
    """``"sun,Wed"`` -> ``("wed", "sun")`` (week order; full names work too); ``""`` or
    ``"none"`` -> ``()``. Unknown names are kept as given, for validate() to name them."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if [t.lower() for t in items] == ["none"]:
        return ()
    days = [_DAY_NAMES.get(t.lower(), t) for t in items]
    known = sorted((d for d in days if d in WEEKDAYS), key=WEEKDAYS.index)
    return tuple(known + [d for d in days if d not in WEEKDAYS])


def normalised(policy: Policy) -> Policy:
    """The same policy with weekdays in week order (what is stored and shown)."""
    def order(days: tuple[str, ...]) -> tuple[str, ...]:
        if all(d in WEEKDAYS for d in days):
            return tuple(sorted(days, key=WEEKDAYS.index))
        return days
    return replace(policy, full_days=order(policy.full_days),
                   diff_days=order(policy.diff_days), drill_days=order(policy.drill_days))
