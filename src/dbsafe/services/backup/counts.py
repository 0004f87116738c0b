"""Row counts taken with every full, copy-only and differential backup, for restore drills
(engines/postgres/stats.py says how; docs/drills.md says why).

Counting reads every table under the cap (1 GiB) whole, on every backup: on a large estate
that is most of a WAL-tracked differential's reading. So a differential with a change map
keeps its base's count of a table nothing changed since (``UnchangedTables``): no block of
it named by the WAL from the base's start to the count's own position, the same filenode,
and no transaction that was running at the base's count committed since (its rows, written
before the base started, would now be visible without any WAL naming the table again).
The restore drill then checks those counts like any other. And a differential or synthetic
full does not even connect to a database in which no transaction can have committed since
the newest earlier point's count of it (``stats.still_true``): that count still holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from dbsafe.engines.postgres import stats
from dbsafe.engines.postgres.client import connect
from dbsafe.engines.postgres.wal import parse_lsn

if TYPE_CHECKING:
    from dbsafe.engines.postgres.changemap import ChangeMap


def mark(port: int, host: str | None) -> str | None:
    """Taken just before the backup's stop."""
    return stats.xact_mark(partial(connect, port, host))


def take(port: int, host: str | None, databases: Sequence[Mapping[str, Any]],
         since: str | None, unchanged: UnchangedTables | None = None,
         earlier: str | None = None) -> str:
    """Taken just after the stop: the JSON stored with the point. ``databases`` are the
    backup's (name, included); the included ones but template1 are counted, except those
    whose ``earlier`` counts (``newest_since``'s, on the timeline the server runs on) still
    hold because nothing committed since (``stats.still_true``: on a quiet instance of
    2,000 databases, 2,000 connections saved)."""
    names = [d["name"] for d in databases if d["included"] and d["name"] != "template1"]
    conns = partial(connect, port, host)
    held = stats.still_true(conns, json.loads(earlier) if earlier else None, names)
    counted = stats.table_counts(
        conns, [n for n in names if n not in held], since,
        known_for=unchanged.known_for if unchanged is not None else None)
    counted["databases"] = {n: held.get(n) or counted["databases"][n] for n in names}
    return json.dumps(counted)


def newest_since(points: Iterable[Mapping[str, Any]], base: Mapping[str, Any]
                 ) -> Mapping[str, Any] | None:
    """The newest live point (catalog rows) with counts among ``base`` (a differential's
    or synthetic full's: checked to be an ancestor of the server's data) and those taken
    after it: their counts may still hold (``take``'s ``earlier``, when the server is on
    that point's timeline)."""
    since = parse_lsn(base["stop_lsn"])
    later = [p for p in points if p.get("table_counts") and p.get("deleted_at") is None
             and p.get("stop_lsn") and parse_lsn(p["stop_lsn"]) >= since]
    return max(later, key=lambda p: parse_lsn(p["stop_lsn"]), default=None)


class UnchangedTables:
    """The base's counts that still hold (see the module note). ``since_base``: the change
    map of ``[base start, this backup's start)``; ``later(lsn)``: the map from there to
    ``lsn``, or None when it cannot be read (then every table is counted)."""

    def __init__(self, base_counts: str | None, since_base: ChangeMap,
                 later: Callable[[int], ChangeMap | None]) -> None:
        self.base = json.loads(base_counts)["databases"] if base_counts else {}
        self.since_base = since_base
        self.later = later

    def known_for(self, db: str) -> stats.KnownCounts | None:
        taken = self.base.get(db)
        if not taken or "error" in taken or not taken.get("snapshot"):
            return None
        return partial(self._known, taken)

    def _known(self, taken: dict, conn: Any, position: str, snap: str,
               tables: dict) -> dict[str, int]:
        if stats.running_then_committed(conn, taken["snapshot"]):
            return {}
        later = self.later(parse_lsn(position))
        if later is None:
            return {}
        return {key: taken["tables"][key] for key, table in tables.items()
                if key in taken["tables"]
                and taken["filenodes"].get(key) == table["filenode"]
                and not self.since_base.touches(table["path"])
                and not later.touches(table["path"])}
