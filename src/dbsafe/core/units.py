"""Sizes and durations as people read them in messages, alerts and the portal: one way
everywhere dbsafe says how much or how long (a health check's lag, a restore's missing
room, a job's figures)."""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


def size_text(n: float) -> str:
    """``1.5 GiB`` from one GiB on, else whole MiB (``340 MiB``); below a MiB, whole KiB,
    below a KiB, bytes."""
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    if n >= MiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n / KiB:.0f} KiB" if n >= KiB else f"{n:.0f} B"


def duration_text(seconds: float) -> str:
    """``0.4 s`` below ten seconds, ``12 s`` below a minute, ``3 min 05 s`` below an hour,
    else ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds of ``30s``, ``90m``, ``4h``, ``2d`` (a plain number is minutes); ValueError
    for anything else, or a duration that is not positive."""
    t = text.strip().lower()
    digits = t.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = t[len(digits):].strip() or "m"
    if unit not in _SECONDS or not digits.isdigit() or int(digits) <= 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 90m, 4h or 2d")
    return int(digits) * _SECONDS[unit]
