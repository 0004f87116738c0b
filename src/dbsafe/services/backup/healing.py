"""Self-healing chain: when a scheduled differential or log backup must be a full instead.

As the cloud service does, the next differential or log backup is turned into a full when no
full holds every database the instance's backups hold (a full taken with ``--db`` holds only
the databases it names: it is no base for the others), when the log chain is broken after
that full, when it is older than 15 days, after an overwrite restore into the instance, or
after its recovery model changed (the last two are remembered in ``instances.needs_full``,
which only such a full clears). The job records why.
On-demand backups are not converted: they fail with their stable code (``backup.no_full``,
...), so a script gets what it asked for or a reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from dbsafe.engines.postgres import wal
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.lifecycle import coverage
from dbsafe.services.lifecycle.points import lineage_points, list_points
from dbsafe.services.logchain.chain import log_chain

MAX_FULL_AGE = timedelta(days=15)


def effective_type(vault: Vault, server: dict, requested: str,
                   now: datetime) -> tuple[str, str | None]:
    """(type to run, why it differs from ``requested``) for a scheduled backup."""
    if requested not in ("diff", "log"):
        return requested, None
    fulls = [p for p in list_points(vault, server["name"])
             if p["type"] == "full" and not p["copy_only"]]
    if not fulls:
        return "full", f"no full backup of {server['name']} exists yet"
    databases = coverage.instance_databases(vault, server)
    latest = coverage.newest(fulls, databases)
    if latest is None:
        newest_full = coverage.newest(fulls, ())
        assert newest_full is not None  # fulls is not empty
        lacking = coverage.missing(newest_full, databases)
        return "full", (f"no full backup holds {coverage.named(lacking)} (a backup taken "
                        "with --db holds only the databases it names)")
    if server.get("needs_full"):
        return "full", server["needs_full"]
    age = now - datetime.fromisoformat(latest["end_time"])
    if age > MAX_FULL_AGE:
        return "full", (f"the latest full ({latest['point_id']}) is {age.days} days old, "
                        f"more than {MAX_FULL_AGE.days}")
    if (server.get("recovery_model") or "SIMPLE") == "FULL":
        chain = log_chain(vault, server, lineage_points(vault, server))
        since = wal.parse_lsn(latest["start_lsn"])
        broken = [g for g in chain.gaps if wal.parse_lsn(g["end_lsn"]) > since]
        if broken:
            g = broken[-1]
            return "full", (f"the log chain is broken: {g['missing_segments']} segment(s) "
                            f"missing from {g['first_missing']} ({g['start_time']} to "
                            f"{g['end_time']})")
    return requested, None
