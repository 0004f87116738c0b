"""The time stamps jobs and alerts record: ISO 8601 in UTC with milliseconds, so rows made in
one second still sort in the order they happened."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
