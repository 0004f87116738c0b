"""Instants people type or clients send: one rule for the CLI, the API and the portal.

An instant is ISO 8601 with its zone (``2026-12-05T17:05:00Z``,
``2026-12-05T18:05:00+01:00``). One without a zone is refused with ``time.zone_missing``,
whose message gives both readings it could have meant, ready to paste. Why refuse instead
of guessing: a point-in-time restore to the wrong hour is silent data loss, a refused input
costs one retype, and no single guess is right for a CLI on the host, an API client
elsewhere and a browser in a third zone (docs/log-chain.md, *Instants*).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from dbsafe.core.errors import DbsafeError

EXAMPLE = "2026-11-25T14:03:27+01:00"


def parse_instant(text: str) -> datetime:
    """``text`` as an aware datetime in UTC; ``restore.bad_target`` when it is no ISO 8601
    instant, ``time.zone_missing`` when it has no zone."""
    try:
        t = datetime.fromisoformat(text.strip())
    except (ValueError, TypeError, AttributeError):
        raise DbsafeError("restore.bad_target", target=text,
                          reason=f"not an ISO 8601 instant such as {EXAMPLE}") from None
    if t.tzinfo is None:
        # the two readings of the same wall time: on the host's clock, or on UTC's
        raise DbsafeError("time.zone_missing", text=text, local=t.astimezone().isoformat(),
                          zone=host_zone(), utc=utc_text(t.replace(tzinfo=UTC)))
    return t.astimezone(UTC)


def parse_bound(text: str) -> datetime:
    """An instant a listing is cut at (``dbsafe jobs --since``): the same rule as a restore
    target's, with an error that does not speak of a restore (``time.bad_instant``)."""
    try:
        return parse_instant(text)
    except DbsafeError as exc:
        if exc.code != "restore.bad_target":
            raise
        raise DbsafeError("time.bad_instant", text=text, example=EXAMPLE) from None


def utc_text(t: datetime) -> str:
    """An aware instant in UTC, the way dbsafe prints it back: ``...Z``."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def host_zone() -> str:
    """The name of this host's time zone: TZ, else the zone /etc/localtime links to, else
    its abbreviation (CET)."""
    tz = os.environ.get("TZ", "").removeprefix(":")
    if tz and not tz.startswith("/"):
        return tz
    try:
        target = Path(tz or "/etc/localtime").resolve(strict=True)
    except OSError:
        target = None
    if target is not None and "zoneinfo" in target.parts:
        return "/".join(target.parts[target.parts.index("zoneinfo") + 1:])
    return datetime.now().astimezone().tzname() or "local time"
