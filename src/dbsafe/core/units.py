"""Sizes as people read them in messages and alerts: one way everywhere dbsafe says how
much (a health check's lag, a restore's missing room)."""

from __future__ import annotations

MiB = 1 << 20
GiB = 1 << 30


def size_text(n: float) -> str:
    """``1.5 GiB`` from one GiB on, else whole MiB (``340 MiB``)."""
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"
