"""One chain across a failover: a replica set's primary crashes under a write load,
its standby is promoted and takes over the load, and the set's log chain goes on from the
new primary on timeline 2. Point-in-time restores before, during and after the failover
hold exactly the surviving history's rows: the rows the old primary committed but never
streamed (lost by the asynchronous failover, made certain here by stopping its walsender
just before the crash) must not come back, even when they committed before the target,
and even when the old primary archived them (under preference "primary" it takes the
logs, and archives a segment of them before it crashes: a dead branch of timeline 1).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from conftest import PG_BIN, Pg, Vault, restored
from replicas import (
    make_standby,
    node_read,
    promote,
    protected_set,
    wait_replayed,
    wal_taker,
)

from dbsafe.agent.server import LOG_NODE_TTL

REGION = "West Europe"
DB = "app"
LEDGER = ("CREATE TABLE ledger (id int PRIMARY KEY, node text NOT NULL, "
          "committed_at timestamptz NOT NULL DEFAULT clock_timestamp())")
ROWS_SQL = ("SELECT id, node, committed_at, pg_xact_commit_timestamp(xmin) FROM ledger "
            "ORDER BY id")
PG_CTL = str(PG_BIN / "pg_ctl")


class Load(threading.Thread):
    """Inserts one ledger row per transaction every few ms into whichever node is the
    primary (``target``); a failed insert burns its id (it may or may not have committed)."""

    def __init__(self, target: Pg, node: str) -> None:
        super().__init__(name="ledger-load", daemon=True)
        self.target = (target, node)
        self.acked: dict[int, str] = {}   # id -> node that acknowledged the commit
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        conn, next_id = None, 0
        while not self._halt.is_set():
            pg, node = self.target
            try:
                if conn is None:
                    conn = pg.connect(DB)
                next_id += 1
                conn.execute("INSERT INTO ledger (id, node) VALUES (%s, %s)", (next_id, node))
                self.acked[next_id] = node
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
                continue
            time.sleep(0.004)
        if conn is not None:
            conn.close()

    def wait_rows(self, node: str, count: int, timeout: float = 60) -> None:
        """Wait until ``node`` acknowledged ``count`` more rows than now."""
        goal = sum(1 for n in list(self.acked.values()) if n == node) + count
        deadline = time.monotonic() + timeout
        while sum(1 for n in list(self.acked.values()) if n == node) < goal:
            assert self.is_alive(), "the load generator died"
            assert time.monotonic() < deadline, f"{node} acknowledged no {count} rows"
            time.sleep(0.02)

    def finish(self) -> None:
        self._halt.set()
        self.join(30)


def _pending_signals(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)


def crash_with_unstreamed_commits(p1: Pg, load: Load,
                                  archive_them: bool) -> tuple[datetime, str | None]:
    """Stop p1's walsender, let the load commit rows that s1 never receives, then crash p1
    (immediate shutdown): the walsender dies of its pending SIGQUIT when continued, so it
    sends nothing more. With ``archive_them``, p1 first ends its segment and archives it
    (the vault then holds a dead branch: timeline 1 past the coming promotion's switch
    point). Returns an instant amid the unstreamed commits, and the dead branch's segment."""
    (walsender,) = [r[0] for r in p1.execute("SELECT pid FROM pg_stat_replication")]
    os.kill(walsender, signal.SIGSTOP)
    dead = None
    try:
        load.wait_rows("p1", 15)
        amid = datetime.now(UTC)
        load.wait_rows("p1", 15)
        if archive_them:
            dead = p1.scalar("SELECT pg_walfile_name(pg_switch_wal())")
            deadline = time.monotonic() + 60
            while p1.scalar("SELECT last_archived_wal FROM pg_stat_archiver") != dead:
                assert time.monotonic() < deadline, f"p1 did not archive {dead}"
                time.sleep(0.05)
            load.wait_rows("p1", 5)
        stop = subprocess.Popen(["runuser", "-u", "postgres", "--", PG_CTL, "-D",
                                 str(p1.pgdata), "stop", "-m", "immediate", "-w"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not _pending_signals(walsender) & (1 << (signal.SIGQUIT - 1)):
            assert time.monotonic() < deadline, "the postmaster sent no SIGQUIT"
            time.sleep(0.01)
    finally:
        os.kill(walsender, signal.SIGCONT)
    assert stop.wait(60) == 0
    assert not p1.running
    return amid, dead


def _survivors(s1: Pg) -> list[tuple[int, str, datetime, datetime]]:
    rows = s1.execute(ROWS_SQL, DB)
    assert all(r[3] is not None for r in rows), "commit timestamps are not tracked"
    return rows


def _between(rows, first: int) -> datetime:
    """An instant after row ``first``'s commit and before the next row started (its
    committed_at), so that 'committed_at <= T' and 'commit time <= T' agree."""
    by_commit = sorted(rows, key=lambda r: r[3])
    i = next(n for n, r in enumerate(by_commit) if r[0] == first)
    commit, next_start = by_commit[i][3], by_commit[i + 1][2]
    assert next_start > commit, (by_commit[i], by_commit[i + 1])
    return commit + (next_start - commit) / 2


def _restore_ids(vault: Vault, area: Path, instant: datetime, tag: str) -> list[int]:
    target = area / f"restore-{tag}"
    out = vault.ok("restore", "rs", "--time", instant.isoformat(), "--to-pgdata", target)
    got = restored(target, out["port"])
    got.start()
    try:
        assert got.scalar("SELECT pg_is_in_recovery()") is False
        return [r[0] for r in got.execute("SELECT id FROM ledger ORDER BY id", DB)]
    finally:
        got.stop()


@pytest.fixture
def rs(pg_template, area, cli_env, request):
    ns = protected_set(pg_template, area, cli_env, preference=request.param,
                       settings={"track_commit_timestamp": "on"}, setup_sql=(LEDGER,))
    ns.preference = request.param
    return ns


def _log_backup(rs, node: str, timeline: int) -> dict:
    result = rs.vault.backup("rs", "--type", "log")
    assert result["node"] == node, (result["node_reason"], _server_logs(rs))
    assert result["timeline"] == timeline and not result["warnings"], result
    assert wal_taker(rs.vault, rs.sysid, result["last_segment"]) == node
    return result


def _server_logs(rs) -> dict[str, str]:
    """The end of each node's server log: why a node was not the one expected."""
    return {n: (rs.area / f"{n}.log").read_text()[-3000:] for n in ("p1", "s1")
            if (rs.area / f"{n}.log").exists()}


def _log_backup_from_rebuilt(rs, node: str, timeline: int) -> dict:
    """A log backup taken by ``node``, a standby just rebuilt. Which node stores a segment
    is decided when its archivers push it, from the nodes' health at that moment (the agent
    reuses a choice for LOG_NODE_TTL seconds): right after the rebuild the primary may
    still store one, by the set's own rule. So: wait until the set names ``node`` for logs
    and the agent's last choice has expired, and allow two more log backups, each one
    complete, before the rebuilt standby must have taken one."""
    deadline = time.monotonic() + 60
    while rs.vault.ok("replicaset", "show", "rs")["plan"]["log"]["server"] != node:
        assert time.monotonic() < deadline, f"{node} is never named for log backups"
        time.sleep(0.2)
    time.sleep(LOG_NODE_TTL + 0.5)
    reasons = []
    for _attempt in range(3):
        result = rs.vault.backup("rs", "--type", "log")
        assert result["timeline"] == timeline and not result["warnings"], result
        if result["node"] == node:
            assert wal_taker(rs.vault, rs.sysid, result["last_segment"]) == node
            return result
        reasons.append((result["node"], result["node_reason"]))
    raise AssertionError((reasons, _server_logs(rs)))


@pytest.mark.parametrize("rs", ["secondary", "primary"], indirect=True)
def test_one_chain_across_failover(rs):
    vault, p1, s1 = rs.vault, rs.p1, rs.s1
    log_node = "s1" if rs.preference == "secondary" else "p1"

    # 1. a full from the primary, log backups under a write load
    full = vault.backup("rs", "--type", "full")
    assert full["node"] == "p1" and node_read(vault, full["point_id"]) == "p1"
    load = Load(p1, "p1")
    load.start()
    try:
        load.wait_rows("p1", 60)
        _log_backup(rs, log_node, 1)
        load.wait_rows("p1", 60)
        before_id = max(load.acked)      # committed before the next log backup: timeline 1
        load.wait_rows("p1", 60)
        _log_backup(rs, log_node, 1)
        load.wait_rows("p1", 60)

        # 2. failover under the load: p1 crashes with commits s1 never received
        # under "primary" p1 takes the logs: it archives a segment of them first
        amid, dead = crash_with_unstreamed_commits(p1, load, rs.preference == "primary")
        p1_acked = {i for i, n in load.acked.items() if n == "p1"}
        promote(s1)
        load.target = (s1, "s1")
        shown = vault.ok("replicaset", "show", "rs")
        nodes = {n["server"]: n for n in shown["nodes"]}
        assert (nodes["s1"]["role"], nodes["s1"]["healthy"], nodes["s1"]["timeline"]) == \
            ("primary", True, 2), nodes
        assert nodes["p1"]["role"] == "unknown" and nodes["p1"]["healthy"] is False, nodes
        assert nodes["p1"]["reason"], nodes
        assert {k: v["server"] for k, v in shown["plan"].items()} == \
            {"full": "s1", "diff": "s1", "log": "s1", "copy-only": "s1"}, shown["plan"]

        # 3. log backups of the set go on from the new primary, on timeline 2
        load.wait_rows("s1", 60)
        _log_backup(rs, "s1", 2)
        load.wait_rows("s1", 60)
    finally:
        load.finish()
    assert not load.is_alive()
    _log_backup(rs, "s1", 2)
    assert vault.repository().load_wal_record(rs.sysid, "00000002.history") is not None
    chain = vault.chain("rs")
    assert chain["gaps"] == [], chain["gaps"]
    assert [r["timeline"] for r in chain["log_ranges"]] == [1, 2], chain["log_ranges"]
    assert chain["log_ranges"][0]["base"] == full["point_id"]
    if dead is not None:  # the vault holds timeline 1 past the switch point: a dead branch
        assert wal_taker(vault, rs.sysid, dead) == "p1"
        assert chain["log_ranges"][0]["last_segment"] == dead
        assert chain["log_ranges"][1]["first_segment"] == "00000002" + dead[8:]

    # the surviving history is s1's; p1's unstreamed commits are lost
    rows = _survivors(s1)
    ids = {r[0]: r for r in rows}
    tl1 = [r for r in rows if r[1] == "p1"]
    tl2 = [r for r in rows if r[1] == "s1"]
    assert tl1 and tl2 and max(r[0] for r in tl1) < min(r[0] for r in tl2)
    assert set(ids) >= {i for i, n in load.acked.items() if n == "s1"}
    lost = sorted(p1_acked - set(ids))
    assert len(lost) >= 30, (len(lost), max(r[0] for r in tl1))
    assert min(lost) > max(r[0] for r in tl1)

    # 4. point-in-time restores: before, during and after the failover
    last_tl1 = max(tl1, key=lambda r: r[3])
    first_tl2 = min(tl2, key=lambda r: r[2])
    assert last_tl1[3] < amid < first_tl2[2]
    instants = {
        "before": _between(rows, before_id),
        # amid p1's unstreamed commits (lost), before s1's first commit on timeline 2
        "during": amid,
        "after": _between(rows, tl2[len(tl2) // 2][0]),
    }
    for tag, instant in instants.items():
        expected = [r[0] for r in rows if r[2] <= instant]
        assert expected == [r[0] for r in rows if r[3] <= instant]
        assert _restore_ids(vault, rs.area, instant, tag) == expected, tag

    # 5. p1 comes back as a standby of s1: a secondary again
    p1 = make_standby(s1, rs.area, "p1", pgdata=p1.pgdata, port=p1.port)
    s1.execute("INSERT INTO ledger (id, node) VALUES (%s, 'after rebuild')",
               DB, (max(ids) + 1000,))
    wait_replayed(s1, p1)
    nodes = {n["server"]: n for n in vault.ok("replicaset", "show", "rs")["nodes"]}
    assert {k: (v["role"], v["healthy"], v["timeline"]) for k, v in nodes.items()} == {
        "p1": ("standby", True, 2), "s1": ("primary", True, 2)}, nodes
    copy_node = "p1" if rs.preference == "secondary" else "s1"
    copy = vault.backup("rs", "--type", "copy-only")
    assert copy["node"] == copy_node and node_read(vault, copy["point_id"]) == copy_node
    _log_backup_from_rebuilt(rs, copy_node, 2)
    assert vault.chain("rs")["gaps"] == []

