"""Which recovery points hold which databases.

A full, copy-only or differential backup holds the instance files plus the relation files of
the databases it ran for: the protected ones (every database when none is), or those
``--db`` named, and the templates. Its catalog row lists them (``databases``) and the
databases of the instance it left out (``left_out``); a database it lists neither way did
not exist when it was taken. A log point lists none and holds every database (WAL belongs
to the instance), as does a point from before dbsafe recorded them.

Two questions, asked by different decisions:

- does a point *hold* a database (its data is in the point): its last backups, a restore of
  that database alone, retention's tiers;
- does it *cover* a set of databases (it leaves none of them out: a database created after
  it counts as covered, WAL replay or a differential's whole copy brings it): the base of a
  differential, self-healing, the base of an instance's point-in-time restore, a drill.

A backup of X is thus never the full, the base or the point kept for Y.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dbsafe.services.handle.vault_handle import Vault

NAMES_SHOWN = 10  # databases named in a message


def columns(listed: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The catalog columns ``databases`` and ``left_out`` of a point from its manifest's
    ``databases`` entries."""
    return {"databases": json.dumps([d["name"] for d in listed if d["included"]]),
            "left_out": json.dumps([d["name"] for d in listed if not d["included"]])}


def _names(value: object) -> set[str] | None:
    if value is None:
        return None
    return set(json.loads(value) if isinstance(value, str) else value)  # type: ignore[arg-type]  # a JSON list, or the list itself


def held(point: dict) -> set[str] | None:
    """The databases ``point`` (a listing's or a catalog row) holds; None: every one."""
    return None if point.get("type") == "log" else _names(point.get("databases"))


def holds(point: dict, names: Iterable[str]) -> bool:
    """Whether the data of every one of ``names`` is in ``point``."""
    have = held(point)
    return have is None or set(names) <= have


def missing(point: dict, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that ``point`` left out, sorted (for a point from before the
    left-out databases were recorded: every one it does not hold)."""
    have = held(point)
    if have is None:
        return []
    lacking = set(names) - have
    left_out = _names(point.get("left_out"))
    return sorted(lacking if left_out is None else lacking & left_out)


def covers(point: dict, names: Iterable[str]) -> bool:
    return not missing(point, names)


def newest(points: Iterable[dict], names: Iterable[str]) -> dict | None:
    """The newest of ``points`` (by end time) that covers ``names``."""
    wanted = set(names)
    return max((p for p in points if covers(p, wanted)),
               key=lambda p: (p["end_time"], p["point_id"]), default=None)


def instance_databases(vault: Vault, server: dict) -> list[str]:
    """What a backup of the instance without ``--db`` holds now (services/backup/selection.py):
    the protected databases, or every discovered one when none is protected."""
    protected = vault.catalog.list_protected(server["instance_id"])
    return protected or [d["name"] for d in vault.catalog.list_databases(server["instance_id"])]


def named(names: Iterable[str]) -> str:
    """Database names for a message: quoted, the first few, and how many more."""
    names = sorted(names)
    shown = ", ".join(repr(n) for n in names[:NAMES_SHOWN])
    more = len(names) - NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
