"""Time stamps: as jobs and alerts record them (ISO 8601 in UTC with milliseconds, so rows
made in one second still sort in the order they happened), and as people see them, the same
in the CLI's text and the portal: to the second, in UTC, saying so (``shown``), with how long
ago where it helps (``ago``)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def utcnow() -> str:
    return recorded(datetime.now(UTC))


def recorded(t: datetime) -> str:
    """An aware instant as the catalog records times (ISO 8601 in UTC, to the millisecond):
    recorded times compare as text."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds")


def parse(text: str) -> datetime:
    """A recorded time: ISO 8601, or SQLite's 'YYYY-MM-DD HH:MM:SS'; without a zone, UTC
    (as the catalog writes them)."""
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def shown(text: str, zone: tzinfo | None = None) -> str:
    """An instant as people see it: ``2026-12-06 22:19:47 UTC``; in ``zone`` (a portal
    viewer's choice), with that zone's abbreviation: ``2026-12-06 23:19:47 CET``."""
    if zone is None:
        return parse(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return parse(text).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def ago(seconds: int) -> str:
    """How long ago, read at a glance: "12 s ago", "5 min ago", "3 h ago", "2 d ago"."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def age(text: str, now: datetime | None = None) -> str:
    """How long ago the recorded time ``text`` was ("in 5 min" when it is ahead)."""
    seconds = int(((now or datetime.now(UTC)) - parse(text)).total_seconds())
    return ago(seconds) if seconds >= 0 else "in " + ago(-seconds).removesuffix(" ago")
