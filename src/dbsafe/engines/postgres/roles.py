"""A node's role in streaming replication, as PostgreSQL itself reports it.

A primary is a cluster not in recovery; a standby is in recovery and healthy while its WAL
receiver streams (pg_stat_wal_receiver). The timeline is the one WAL is written on (primary)
or received on (standby): after a promotion the new primary's timeline is higher, which is
how two primaries (a split after a failover) are told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbsafe.engines.postgres.status import current_wal, is_in_recovery
from dbsafe.engines.postgres.wal import parse_lsn


@dataclass(frozen=True)
class RoleFacts:
    role: str                 # primary | standby
    timeline: int
    healthy: bool
    reason: str | None        # why not healthy
    replay_lsn: int           # standby: last replayed; primary: current write position
    standbys: int             # primary: connected walsenders streaming


def role_facts(conn) -> RoleFacts:
    in_recovery = is_in_recovery(conn)
    if not in_recovery:
        lsn, walfile = current_wal(conn)
        streaming = conn.execute(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0]
        return RoleFacts("primary", int(walfile[:8], 16), True, None, parse_lsn(lsn),
                         int(streaming))
    replay = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
    row = conn.execute("SELECT status, received_tli FROM pg_stat_wal_receiver").fetchone()
    timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    if row is not None and row[1]:
        timeline = max(timeline, int(row[1]))
    if row is None or row[0] != "streaming":
        state = row[0] if row else "not running"
        return RoleFacts("standby", timeline, False,
                         f"not streaming from a primary (WAL receiver: {state})",
                         parse_lsn(replay) if replay else 0, 0)
    return RoleFacts("standby", timeline, True, None, parse_lsn(replay) if replay else 0, 0)
