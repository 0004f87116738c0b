"""Row counts taken with every full, copy-only and differential backup, for restore drills
(engines/postgres/stats.py says how; docs/drills.md says why)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from dbsafe.engines.postgres import stats
from dbsafe.engines.postgres.client import connect


def mark(port: int, host: str | None) -> str | None:
    """Taken just before the backup's stop."""
    return stats.xact_mark(partial(connect, port, host))


def take(port: int, host: str | None, databases: Sequence[Mapping[str, Any]],
         since: str | None) -> str:
    """Taken just after the stop: the JSON stored with the point. ``databases`` are the
    backup's (name, included); the included ones but template1 are counted."""
    names = [d["name"] for d in databases if d["included"] and d["name"] != "template1"]
    return json.dumps(stats.table_counts(partial(connect, port, host), names, since))
