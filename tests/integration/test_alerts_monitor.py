"""Health monitor and alerts on real clusters with real WAL archiving through the agent, and
the `dbsafe alerts` command line against a local webhook receiver."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta

from alert_receivers import Webhook
from conftest import Pg, new_cluster

from dbsafe.services.activity import alerts
from dbsafe.services.handle.vault_handle import Vault as ServiceVault
from dbsafe.services.operations import monitor

SEGMENT = 16 << 20
ROOMY = {"space_min_free_pct": 0.0, "space_min_free_bytes": 0}  # space is tested apart


def _protected(pg_template, area, vault, name) -> Pg:
    pg = new_cluster(pg_template, area, name)
    vault.add_server(name, pg)
    out = vault.ok("protect", name, "--all", "--restart")
    assert out["archiving_active"], out
    pg.execute("CREATE TABLE ledger (id serial PRIMARY KEY, note text)")
    return pg


def _switch_segments(pg: Pg, count: int) -> None:
    for _ in range(count):
        pg.execute("INSERT INTO ledger (note) VALUES ('x')")
        pg.execute("SELECT pg_switch_wal()")


def _check(vault: ServiceVault, **kwargs) -> dict:
    found = monitor.check_health(vault, **{**ROOMY, **kwargs})
    return {(f["check"], f["server"]): f for f in found}


def _active(vault: ServiceVault) -> set[tuple[str, str | None]]:
    return {(a["kind"], a["server"]) for a in alerts.list_alerts(vault.catalog)}


def test_archiving_lag_agent_and_server_unreachable(pg_template, area, wal_vault,
                                                    monkeypatch):
    """The agent stops and WAL piles up in pg_wal: archive_lag and agent_unreachable are
    raised; when the agent is back and has caught up, both resolve. A stopped cluster is
    server_unreachable until it runs again."""
    monkeypatch.setenv("DBSAFE_RUN_DIR", wal_vault.env["DBSAFE_RUN_DIR"])
    pg = _protected(pg_template, area, wal_vault, "lag")
    vault = ServiceVault.open(wal_vault.path)
    threshold = 2 * SEGMENT
    _switch_segments(pg, 1)
    wal_vault.backup("lag", "--type", "log")  # the switched segment is in the vault
    healthy = _check(vault, lag_threshold_bytes=threshold)
    assert all(f["ok"] for f in healthy.values()), healthy
    assert healthy[("archive_lag", "lag")]["details"]["lag_bytes"] < SEGMENT

    wal_vault.ok("agent", "stop")
    _switch_segments(pg, 4)
    found = _check(vault, lag_threshold_bytes=threshold)
    lag, agent = found[("archive_lag", "lag")], found[("agent_unreachable", None)]
    assert not lag["ok"] and not agent["ok"]
    assert lag["details"]["lag_bytes"] >= 4 * SEGMENT > threshold
    assert lag["details"]["ready_files"] >= 3
    assert "behind" in lag["message"] and "lag" in agent["details"]["servers"]
    assert found[("server_unreachable", "lag")]["ok"]
    assert found[("chain_broken", "lag")]["ok"]
    listed = {(a["kind"], a["server"]): a for a in wal_vault.ok("alerts")}
    assert set(listed) == {("archive_lag", "lag"), ("agent_unreachable", None)}
    assert listed[("archive_lag", "lag")]["id"] == lag["alert_id"]

    _check(vault, lag_threshold_bytes=threshold)  # a repeat: the same alerts, counted
    assert {a["count"] for a in alerts.list_alerts(vault.catalog)} == {2}

    wal_vault.ok("agent", "start")
    _switch_segments(pg, 1)  # wakes PostgreSQL's archiver, which retries the backlog
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = _check(vault, lag_threshold_bytes=threshold)
        if found[("archive_lag", "lag")]["ok"]:
            break
        time.sleep(1)
    assert found[("archive_lag", "lag")]["ok"], found[("archive_lag", "lag")]
    assert found[("agent_unreachable", None)]["ok"] and _active(vault) == set()
    resolved = {a["kind"] for a in alerts.list_alerts(vault.catalog, "resolved")}
    assert resolved == {"archive_lag", "agent_unreachable"}

    pg.stop()
    found = _check(vault, lag_threshold_bytes=threshold)
    down = found[("server_unreachable", "lag")]
    assert not down["ok"] and down["details"]["code"] == "server.not_running"
    assert ("archive_lag", "lag") not in found  # not measurable while it is down
    pg.start()
    assert _check(vault, lag_threshold_bytes=threshold)[("server_unreachable", "lag")]["ok"]
    assert _active(vault) == set()


def test_broken_chain_raised_until_a_full_follows_the_gap(pg_template, area, wal_vault,
                                                          monkeypatch):
    monkeypatch.setenv("DBSAFE_RUN_DIR", wal_vault.env["DBSAFE_RUN_DIR"])
    pg = _protected(pg_template, area, wal_vault, "gap")
    wal_vault.backup("gap")
    _switch_segments(pg, 4)
    wal_vault.backup("gap", "--type", "log")
    vault = ServiceVault.open(wal_vault.path)
    assert _check(vault)[("chain_broken", "gap")]["ok"]

    segs = sorted((wal_vault.path / "wal").rglob("0000000100000000000000*"))
    lost = segs[-3]  # a segment in the middle of the chain goes missing
    lost.unlink()
    with sqlite3.connect(wal_vault.path / "catalog.sqlite") as db:
        db.execute("DELETE FROM wal_files WHERE name = ?", (lost.name,))
    broken = _check(vault)[("chain_broken", "gap")]
    assert not broken["ok"]
    (gap,) = broken["details"]["gaps"]
    assert gap["first_missing"] == lost.name and gap["missing_segments"] == 1
    assert gap["start_time"] and gap["end_time"]  # the time range affected
    assert lost.name in broken["message"] and gap["start_time"] in broken["message"]
    (alert,) = alerts.list_alerts(vault.catalog)
    assert alert["kind"] == "chain_broken" and alert["server"] == "gap"

    wal_vault.backup("gap", "--type", "log")  # a log backup does not heal it
    assert not _check(vault)[("chain_broken", "gap")]["ok"]
    wal_vault.backup("gap", "--type", "full")
    healed = _check(vault)[("chain_broken", "gap")]
    assert healed["ok"] and "followed by a base backup" in healed["message"]
    assert _active(vault) == set()
    assert wal_vault.chain("gap")["gaps"]  # the gap itself stays in the history

    # FULL model: the newest restorable instant is the end of the log chain (its last
    # commit: the log backup's), even with the base full long ago; hourly log backups (the
    # default policy) allow it one to two hours and 15 minutes
    wal_vault.backup("gap", "--type", "log")
    end = wal_vault.chain("gap")["log_ranges"][-1]["end_time"]
    with sqlite3.connect(wal_vault.path / "catalog.sqlite") as db:
        db.execute("UPDATE recovery_points SET end_time = '2026-01-01T00:00:00+00:00' "
                   "WHERE type != 'log'")
    assert _check(vault)[("backup_overdue", "gap")]["ok"]
    later = datetime.fromisoformat(end) + timedelta(hours=3)
    overdue = _check(vault, now=later)[("backup_overdue", "gap")]
    assert not overdue["ok"] and overdue["details"]["newest_restorable"] == end
    assert "a log backup every 60 minutes" in overdue["message"]
    assert _check(vault)[("backup_overdue", "gap")]["ok"] and _active(vault) == set()


def test_alerts_command_line(vault):
    hook = Webhook()
    try:
        added = vault.ok("alerts", "channel", "add", "--webhook", hook.url + "/cli",
                         "--on-success")
        assert added["kind"] == "webhook" and added["on_success"] is True
        mail = vault.ok("alerts", "channel", "add", "--email", "dba@example.org",
                        "--smtp-host", "127.0.0.1", "--smtp-port", "2525", "--smtp-user", "u",
                        "--smtp-password-env", "DBSAFE_SMTP_PW", "--starttls")
        assert mail["options"] == {"host": "127.0.0.1", "port": 2525, "user": "u",
                                   "password_env": "DBSAFE_SMTP_PW", "starttls": True}
        smtp = ["alerts", "channel", "add", "--email", "dba@example.org", "--smtp-host",
                "127.0.0.1", "--smtp-user", "u"]
        for var in ("HOME", "AWS_SECRET_ACCESS_KEY"):  # any variable but DBSAFE_SMTP_*
            out = vault.fail("alerts.channel_invalid", *smtp, "--smtp-password-env", var,
                             "--starttls")
            assert "DBSAFE_SMTP_" in out["error"]["message"]
        out = vault.fail("alerts.channel_invalid", *smtp, "--smtp-password-env",
                         "DBSAFE_SMTP_PW")
        assert "only sent over TLS" in out["error"]["message"]
        implicit = vault.ok(*smtp, "--smtp-password-env", "DBSAFE_SMTP_PW", "--smtp-tls")
        assert implicit["options"]["port"] == 465 and implicit["options"]["tls"] is True
        vault.ok("alerts", "channel", "remove", str(implicit["id"]))
        vault.fail("alerts.channel_invalid", "alerts", "channel", "add")
        vault.fail("alerts.channel_invalid", "alerts", "channel", "add", "--webhook",
                   hook.url, "--smtp-host", "h")
        assert [c["id"] for c in vault.ok("alerts", "channel", "list")] == \
            [added["id"], mail["id"]]
        sent = vault.ok("alerts", "channel", "test", str(added["id"]))
        assert sent["ok"] and hook.events("/cli") == ["test"]
        assert vault.ok("alerts", "channel", "remove", str(mail["id"]))["id"] == mail["id"]
        vault.fail("alerts.channel_unknown", "alerts", "channel", "test", str(mail["id"]))

        assert vault.ok("alerts") == []
        found = vault.ok("alerts", "check", "--min-free-pct", "100")
        (space,) = [f for f in found if f["check"] == "vault_space_low"]
        assert not space["ok"]
        (alert,) = vault.ok("alerts")
        assert alert["id"] == space["alert_id"] and alert["deliveries"][0]["ok"]
        text = vault.run("alerts")
        assert text.returncode == 0 and "vault_space_low" in text.stdout
        assert vault.ok("alerts", "resolve", str(alert["id"]))["state"] == "resolved"
        assert hook.events("/cli") == ["test", "raised", "resolved"]
        assert vault.ok("alerts") == [] and len(vault.ok("alerts", "--all")) == 1
        vault.fail("alerts.unknown", "alerts", "resolve", "999")
    finally:
        hook.close()


def test_a_change_made_while_the_repository_is_away_is_audited(vault):
    """`dbsafe alerts` and its channels need the catalog alone; so does the audit line a
    change writes: with the repository away (its config moved aside), a channel added is
    audited (the line used to be dropped after the command opened the whole vault again,
    which against an object store that fails meant minutes of retries), and listing the
    alerts, a read, writes no line."""
    config = vault.path / "config"
    config.rename(vault.path / "config.away")
    try:
        assert vault.ok("alerts") == []
        vault.ok("alerts", "channel", "add", "--webhook", "http://127.0.0.1:9/away")
    finally:
        (vault.path / "config.away").rename(config)
    actions = [e["action"] for e in vault.ok("audit", "--limit", "10")]
    assert actions[0] == "alerts channel add", actions
    assert "alerts" not in actions, actions
