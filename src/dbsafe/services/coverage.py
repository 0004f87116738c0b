"""Which recovery points hold which databases.

A full, copy-only or differential backup holds the instance files plus the relation files of
the databases it ran for: the protected ones (every database when none is), or those
``--db`` named, and the templates. Its catalog row lists them (``databases``); a log point
lists none and holds every database (WAL belongs to the instance), as does a point from
before dbsafe recorded them. Every decision made for a database (its last backups, a
differential's base, the point-in-time base, retention's tiers, a drill) counts only the
points that hold it: a backup of X is never the full, the base or the point kept for Y.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from dbsafe.services.vault import Vault

NAMES_SHOWN = 10  # databases named in a message


def held(point: dict) -> set[str] | None:
    """The databases ``point`` (a listing's or a catalog row) holds; None: every one."""
    names = point.get("databases")
    if names is None or point.get("type") == "log":
        return None
    return set(json.loads(names) if isinstance(names, str) else names)


def missing(point: dict, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that ``point`` does not hold, sorted."""
    have = held(point)
    return [] if have is None else sorted(set(names) - have)


def holds(point: dict, names: Iterable[str]) -> bool:
    return not missing(point, names)


def newest(points: Iterable[dict], names: Iterable[str]) -> dict | None:
    """The newest of ``points`` (by end time) that holds every one of ``names``."""
    wanted = set(names)
    return max((p for p in points if holds(p, wanted)),
               key=lambda p: (p["end_time"], p["point_id"]), default=None)


def instance_databases(vault: Vault, server: dict) -> list[str]:
    """What a backup of the instance without ``--db`` holds now (services/selection.py):
    the protected databases, or every discovered one when none is protected."""
    protected = vault.catalog.list_protected(server["instance_id"])
    return protected or [d["name"] for d in vault.catalog.list_databases(server["instance_id"])]


def named(names: Iterable[str]) -> str:
    """Database names for a message: quoted, the first few, and how many more."""
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
