"""The WAL spool (agent/spool.py, docs/wal-spool.md): while the repository (a real S3
server behind a fault-injecting proxy on loopback) fails every request, the agent keeps
PostgreSQL's WAL in its bounded spool and acknowledges it, so pg_wal does not grow; it
alerts before the spool is full and refuses past the bound (PostgreSQL keeps the file);
when the repository answers again every spooled file reaches it, the alerts resolve, and
a point-in-time restore reaches the last commit."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from backends import new_vault
from conftest import Pg, free_port, new_cluster, restored, wait_for

SPOOL_MIB = 2


def _status(vault) -> dict:
    return vault.ok("agent", "status")


def _archiver(pg: Pg) -> tuple[int, int]:
    row = pg.execute("SELECT archived_count, failed_count FROM pg_stat_archiver")[0]
    return row[0], row[1]


def _active(vault, kind: str) -> list[dict]:
    """Active alerts of ``kind`` as `dbsafe alerts` lists them: it reads the catalog alone,
    so it answers while the repository is away (it used to open the repository first)."""
    return [a for a in vault.ok("alerts") if a["kind"] == kind]


def _wal_burst(pg: Pg, rows: int) -> None:
    """WAL that zstd cannot shrink much (random text), then a segment switch."""
    pg.execute(f"INSERT INTO ledger (note) SELECT md5(random()::text) || md5(random()::text) "
               f"FROM generate_series(1, {rows})")
    pg.execute("SELECT pg_switch_wal()")


def test_spool_keeps_wal_while_the_repository_is_away(request: pytest.FixtureRequest,
                                                      area: Path, cli_env: dict[str, str],
                                                      pg_template: Path, s3_server):
    from servers.faults import FaultProxy

    proxy = FaultProxy(s3_server.port, flavor="s3").start()
    agent = None
    pg = None
    try:
        location = s3_server.location(f"spool-{secrets.token_hex(4)}", "vault",
                                      f"http://127.0.0.1:{proxy.port}")
        vault = new_vault("s3", request, area, cli_env, location=location)
        # the agent, started here with a short wait before spooling and a small bound;
        # `protect` finds it running and uses it
        agent = vault.popen("agent", "run", "--spool-after", "2", "--spool-max-mib",
                            str(SPOOL_MIB))
        wait_for(lambda: _status(vault)["running"], "the agent")
        pg = new_cluster(pg_template, area, "spooled",
                         settings={"track_commit_timestamp": "on"})
        vault.add_server("spooled", pg)
        assert vault.ok("protect", "spooled", "--all", "--restart")["archiving_active"]
        pg.execute("CREATE TABLE ledger (id serial PRIMARY KEY, note text)")
        vault.backup("spooled", "--type", "full")
        before = _archiver(pg)

        # the repository fails every request: files go to the spool and are acknowledged
        proxy.fail_for(3600, status=500)
        for _ in range(3):
            _wal_burst(pg, 2000)
        spool = wait_for(lambda: (s := _status(vault)["spool"])["files"] >= 3 and s,
                         "three files spooled", timeout=180)
        assert spool["max_bytes"] == SPOOL_MIB << 20 and 0 < spool["bytes"] <= SPOOL_MIB << 20
        archived, _failed = _archiver(pg)
        assert archived >= before[0] + 3, "PostgreSQL was not told the files were archived"
        assert vault.ok("jobs", "--limit", "5")  # what dbsafe did, while the store fails
        (spooled_alert,) = _active(vault, "wal_spooled")
        assert spooled_alert["server"] == "spooled" and spooled_alert["severity"] == "warning"
        assert proxy.faults_served > 0

        # past three quarters of the bound: a critical alert; past the bound: refused, and
        # PostgreSQL keeps the file (its failed count grows; nothing is lost)
        def full() -> bool:
            _wal_burst(pg, 6000)
            return _archiver(pg)[1] > before[1] and bool(_active(vault, "wal_spool_filling"))
        wait_for(full, "the spool to fill", timeout=240, every=2)
        assert _status(vault)["spool"]["bytes"] <= SPOOL_MIB << 20
        (filling,) = _active(vault, "wal_spool_filling")
        assert filling["severity"] == "critical"
        pg.execute("INSERT INTO ledger (note) VALUES ('the last commit')")
        expected = pg.scalar("SELECT count(*) FROM ledger")

        # the repository answers again: the spool drains, PostgreSQL's backlog follows
        proxy.fail_for(0)
        wait_for(lambda: _status(vault)["spool"]["files"] == 0, "the spool to drain",
                 timeout=300, every=1)
        wait_for(lambda: not _active(vault, "wal_spooled")
                 and not _active(vault, "wal_spool_filling"), "the alerts to resolve")
        log = vault.backup("spooled", "--type", "log")
        assert log["type"] == "log", log
        chain = vault.chain("spooled")
        assert chain["gaps"] == [], chain["gaps"]
        target = area / "spool-restored"
        out = vault.ok("restore", "spooled", "--point", log["point_id"], "--to-pgdata",
                       target, "--port", free_port(), "--start")
        got = restored(target, out["port"])
        try:
            assert got.scalar("SELECT count(*) FROM ledger") == expected
            assert got.scalar("SELECT count(*) FROM ledger WHERE note = 'the last commit'") == 1
        finally:
            got.stop()
    finally:
        proxy.fail_for(0)
        if agent is not None:
            agent.terminate()
            try:
                agent.communicate(timeout=30)
            except Exception:  # noqa: BLE001 - killed below
                agent.kill()
        if pg is not None:
            pg.stop()
        proxy.stop()


def test_spool_files_are_the_agents_alone(tmp_path: Path):
    """The spool's folder is root's alone, a spooled file comes back whole with its mtime,
    and anything else planted in the folder is neither listed nor read."""
    from dbsafe.agent.spool import WalSpool

    spool = WalSpool(tmp_path / "spool", 1 << 20)
    name = "000000010000000000000003"
    assert spool.put(7, name, b"wal" * 1000, 1_700_000_000.0)
    assert (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
    (tmp_path / "spool" / "7" / "not-a-wal-file.zst").write_bytes(b"x")
    (tmp_path / "spool" / "etc").mkdir()
    (tmp_path / "spool" / "8").symlink_to("/etc")
    (item,) = spool.pending()
    assert (item.instance_id, item.name) == (7, name)
    assert spool.read(item) == (b"wal" * 1000, 1_700_000_000.0)
    assert not spool.put(7, "000000010000000000000004", secrets.token_bytes(1 << 20), 0.0)
    assert json.dumps(spool.status())  # what `dbsafe agent status` shows
    spool.remove(item)
    assert spool.pending() == [] and spool.used() == 0
    assert not WalSpool(tmp_path / "off", 0).put(7, name, b"wal", 0.0)
