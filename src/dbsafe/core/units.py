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
