"""Alerts with the real catalog and real local receivers: an HTTP server for webhooks and an
aiosmtpd SMTP server for e-mail, each on a free loopback port."""

from __future__ import annotations

import json
import logging

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from alert_receivers import Mailbox, Webhook, smtp_tls
from conftest import free_port

from dbsafe.catalog import open_catalog
from dbsafe.core.errors import DbsafeError
from dbsafe.services.activity import alerts
from dbsafe.services.activity import delivery as alert_delivery
from dbsafe.services.handle.vault_handle import Vault
from dbsafe.services.operations import monitor


@pytest.fixture
def catalog(catalog_spec, tmp_path):
    cat = open_catalog(catalog_spec, tmp_path)
    yield cat
    cat.close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def _smtp(**kwargs) -> tuple[Controller, Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller, box


@pytest.fixture
def smtp():
    controller, box = _smtp()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture(autouse=True)
def quick_retry(monkeypatch):
    monkeypatch.setattr(alert_delivery, "RETRY_DELAY", 0.05)


def _email_channel(catalog, port: int, **options) -> dict:
    return alerts.add_channel(catalog, "email", "dba@example.org",
                              {"host": "127.0.0.1", "port": port,
                               "sender": "vault@example.org", **options})


def test_new_alert_delivered_once_repeats_counted_resolution_delivered(
        catalog, webhook, smtp, caplog):
    caplog.set_level(logging.INFO, logger="dbsafe.alerts")
    alerts.add_channel(catalog, "webhook", webhook.url + "/hook")
    _email_channel(catalog, smtp.port)

    first = alerts.raise_alert(catalog, alerts.BACKUP_FAILED, "critical",
                               "full backup of pg1 failed: disk on fire", server="pg1",
                               item="full", details={"error_code": "x.y"}, job_id="job-1")
    assert first["new"] and first["count"] == 1
    assert [d["ok"] for d in first["deliveries"]] == [True, True]
    (path, body), = webhook.posts
    assert body["format"] == 1 and body["source"] == "dbsafe" and body["event"] == "raised"
    sent = body["alert"]
    assert (sent["id"], sent["kind"], sent["severity"], sent["server"], sent["item"]) == \
        (first["id"], "backup_failed", "critical", "pg1", "full")
    assert sent["message"] == "full backup of pg1 failed: disk on fire"
    assert sent["details"] == {"error_code": "x.y"} and sent["job_id"] == "job-1"
    (rcpt, mail), = smtp.messages
    assert rcpt == ["dba@example.org"] and mail["From"] == "vault@example.org"
    assert mail["Subject"] == "[dbsafe] CRITICAL backup_failed: pg1 (full)"
    assert mail["X-Dbsafe-Event"] == "raised"
    text = mail.get_content().replace("\r\n", "\n")  # CRLF on the wire
    assert text.startswith("full backup of pg1 failed: disk on fire\n")
    assert "kind:      backup_failed" in text and '"error_code": "x.y"' in text

    for n in (2, 3):  # repeats: counted, not sent again
        again = alerts.raise_alert(catalog, alerts.BACKUP_FAILED, "critical",
                                   f"full backup of pg1 failed again ({n})", server="pg1",
                                   item="full")
        assert not again["new"] and again["id"] == first["id"] and again["count"] == n
    assert len(webhook.posts) == 1 and len(smtp.messages) == 1
    (active,) = alerts.list_alerts(catalog)
    assert active["count"] == 3 and active["message"].endswith("again (3)")
    assert len(active["deliveries"]) == 2  # the record of the first sending is kept

    # Another key (other item) is another alert.
    other = alerts.raise_alert(catalog, alerts.BACKUP_FAILED, "critical", "log failed",
                               server="pg1", item="log")
    assert other["new"] and other["id"] != first["id"]

    assert alerts.resolve_alerts(catalog, alerts.BACKUP_FAILED, server="pg1", item="full") == 1
    assert alerts.resolve_alerts(catalog, alerts.BACKUP_FAILED, server="pg1", item="full") == 0
    assert webhook.events() == ["raised", "raised", "resolved"]
    resolved = webhook.posts[-1][1]["alert"]
    assert resolved["id"] == first["id"] and resolved["state"] == "resolved"
    assert smtp.subjects()[-1] == "[dbsafe] RESOLVED backup_failed: pg1 (full)"
    assert [a["id"] for a in alerts.list_alerts(catalog)] == [other["id"]]
    (done,) = alerts.list_alerts(catalog, "resolved")
    assert done["resolved"] and [d["event"] for d in done["deliveries"]] == \
        ["raised", "raised", "resolved", "resolved"]
    assert len(alerts.list_alerts(catalog, None)) == 2

    # The condition again after resolution: a new alert, sent again.
    third = alerts.raise_alert(catalog, alerts.BACKUP_FAILED, "critical", "failed again",
                               server="pg1", item="full")
    assert third["new"] and third["id"] not in (first["id"], other["id"])
    logged = [r.getMessage() for r in caplog.records if r.name == "dbsafe.alerts"]
    assert any(f"alert {first['id']} raised backup_failed [pg1/full]" in m for m in logged)
    assert any(f"alert {first['id']} resolved backup_failed" in m for m in logged)
    assert any(r.levelno == logging.ERROR for r in caplog.records)  # critical -> ERROR


def test_dead_channels_never_raise(catalog, caplog):
    caplog.set_level(logging.WARNING, logger="dbsafe.alerts")
    hook = alerts.add_channel(catalog, "webhook", f"http://127.0.0.1:{free_port()}/x")
    mail = _email_channel(catalog, free_port())
    alert = alerts.raise_alert(catalog, alerts.AGENT_UNREACHABLE, "critical", "agent gone")
    assert [d["ok"] for d in alert["deliveries"]] == [False, False]
    stored = alerts.list_alerts(catalog)[0]["deliveries"]
    assert "Connection refused" in stored[0]["error"] and stored[0]["channel"] == hook["id"]
    assert stored[1]["error"].startswith("SMTP 127.0.0.1:")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("delivery to channel" in w for w in warnings) == 2
    assert alerts.resolve_alerts(catalog, alerts.AGENT_UNREACHABLE) == 1
    with pytest.raises(DbsafeError) as exc:
        alerts.test_channel(catalog, mail["id"])
    assert exc.value.code == "alerts.delivery_failed"


def test_webhook_retried_once_on_5xx_not_on_4xx(catalog, webhook):
    alerts.add_channel(catalog, "webhook", webhook.url + "/hook")
    webhook.statuses = [503]
    ok = alerts.raise_alert(catalog, alerts.ARCHIVE_LAG, "warning", "behind", server="a")
    assert webhook.events() == ["raised", "raised"] and ok["deliveries"][0]["ok"]
    webhook.statuses = [404]
    refused = alerts.raise_alert(catalog, alerts.ARCHIVE_LAG, "warning", "behind", server="b")
    assert len(webhook.posts) == 3
    assert refused["deliveries"][0]["error"].startswith("HTTP 404")


def test_job_hook_raises_resolves_and_notifies(catalog, webhook):
    alerts.add_channel(catalog, "webhook", webhook.url + "/hook")
    alerts.add_channel(catalog, "webhook", webhook.url + "/success", on_success=True)

    def job(n: int, state: str, backup_type: str | None = "full", type: str = "backup",
            **extra) -> dict:
        return {"id": f"job-{n}", "type": type, "server": "pg1", "state": state,
                "backup_type": backup_type, "error_code": "server.not_running" if
                state == "failed" else None, "error_message": "PostgreSQL is down"
                if state == "failed" else None, "result": None, **extra}

    alerts.job_finished(catalog, job(1, "failed"))
    alerts.job_finished(catalog, job(2, "failed"))  # a repeat: counted
    alerts.job_finished(catalog, job(3, "failed", "log"))
    alerts.job_finished(catalog, job(4, "failed", None, "restore"))
    alerts.job_finished(catalog, job(5, "cancelled"))
    active = {(a["kind"], a["item"]): a for a in alerts.list_alerts(catalog)}
    assert set(active) == {("backup_failed", "full"), ("backup_failed", "log"),
                           ("restore_failed", None)}
    full = active[("backup_failed", "full")]
    assert full["count"] == 2 and full["job_id"] == "job-2"
    assert full["message"] == ("full backup of pg1 failed: [server.not_running] "
                               "PostgreSQL is down")
    assert webhook.events("/hook") == ["raised"] * 3 and webhook.events("/success") == \
        ["raised"] * 3

    # The type comes from the result when the job row has none; the result may be JSON text.
    alerts.job_finished(catalog, job(6, "completed", None, result=json.dumps(
        {"type": "full", "point_id": "P1"})))
    assert ("backup_failed", "full") not in {(a["kind"], a["item"])
                                             for a in alerts.list_alerts(catalog)}
    assert webhook.events("/hook") == ["raised"] * 3 + ["resolved"]
    notice = webhook.posts[-1][1]
    assert webhook.posts[-1][0] == "/success" and notice["event"] == "notice"
    assert notice["alert"]["kind"] == "backup_succeeded" and notice["alert"]["id"] is None
    assert "point P1" in notice["alert"]["message"]

    # A log backup resolves its own failure, sends no notice, and reports a broken chain.
    warning = DbsafeError("chain.broken", name="pg1", gaps="1 segment(s) from X").as_dict()
    alerts.job_finished(catalog, job(7, "completed_with_warnings", "log",
                                     result={"type": "log", "warnings": [warning]}))
    kinds = {(a["kind"], a["item"]) for a in alerts.list_alerts(catalog)}
    assert kinds == {("restore_failed", None), ("chain_broken", None)}
    assert webhook.events("/success").count("notice") == 1
    alerts.job_finished(catalog, job(8, "completed", None, "restore"))
    assert [a["kind"] for a in alerts.list_alerts(catalog)] == ["chain_broken"]
    assert webhook.events("/success").count("notice") == 2

    alerts.job_finished(catalog, {"id": "broken"})  # never raises
    alerts.job_finished(catalog, {"id": "x", "type": "backup", "state": "failed",
                                  "result": "{not json"})


@pytest.fixture
def lite(tmp_path):
    """A SQLite catalog (the SMTP tests need no second backend)."""
    cat = open_catalog("sqlite", tmp_path)
    yield cat
    cat.close()


class Logins:
    """An aiosmtpd authenticator recording (login, password, over TLS) for each AUTH."""

    def __init__(self, password: bytes) -> None:
        self.password = password
        self.seen: list[tuple[bytes, bytes, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.seen.append((auth_data.login, auth_data.password, tls))
        return AuthResult(success=auth_data.password == self.password, handled=False)


def test_smtp_password_goes_only_over_verified_tls(lite, tmp_path, monkeypatch):
    """STARTTLS with a certificate the channel's CA file vouches for: the password goes,
    encrypted. Not trusted, not offered, or never asked for: it never leaves dbsafe."""
    ca_file, server_tls = smtp_tls(tmp_path)
    logins = Logins(b"s3cret")
    controller, box = _smtp(authenticator=logins, tls_context=server_tls)  # AUTH needs TLS
    try:
        trusting = _email_channel(lite, controller.port, user="alerts", starttls=True,
                                  password_env="DBSAFE_SMTP_TEST_PW", ca_file=str(ca_file))
        assert "password" not in trusting["options"]
        missing = alerts.raise_alert(lite, alerts.DRILL_FAILED, "critical", "drill",
                                     server="a")
        assert "DBSAFE_SMTP_TEST_PW" in missing["deliveries"][0]["error"] and not box.messages
        monkeypatch.setenv("DBSAFE_SMTP_TEST_PW", "s3cret")
        assert alerts.test_channel(lite, trusting["id"])["ok"]
        assert logins.seen == [(b"alerts", b"s3cret", True)]
        (_, mail), = box.messages
        assert mail["Subject"] == "[dbsafe] TEST test: vault"
        monkeypatch.setenv("DBSAFE_SMTP_TEST_PW", "wrong")
        with pytest.raises(DbsafeError, match="SMTPAuthenticationError"):
            alerts.test_channel(lite, trusting["id"])

        # The system's store does not know the certificate: the handshake fails, no login.
        untrusting = _email_channel(lite, controller.port, user="alerts", starttls=True,
                                    password_env="DBSAFE_SMTP_TEST_PW")
        logins.seen.clear()
        with pytest.raises(DbsafeError, match="SSLCertVerificationError"):
            alerts.test_channel(lite, untrusting["id"])
        assert logins.seen == [] and len(box.messages) == 1
    finally:
        controller.stop()

    # A server that offers no STARTTLS (and would take a password in clear) never gets it.
    plain, plain_box = _smtp(authenticator=logins, auth_require_tls=False)
    try:
        downgraded = _email_channel(lite, plain.port, user="alerts", starttls=True,
                                    password_env="DBSAFE_SMTP_TEST_PW", ca_file=str(ca_file))
        with pytest.raises(DbsafeError, match="SMTPNotSupportedError"):
            alerts.test_channel(lite, downgraded["id"])
        assert logins.seen == [] and plain_box.messages == []

        # Channels stored without the checks (an older dbsafe, a hand-edited catalog):
        # sending checks again, before connecting.
        monkeypatch.setenv("HOME", "not-for-smtp")
        for options in ({"user": "u", "password_env": "DBSAFE_SMTP_TEST_PW"},
                        {"user": "u", "password_env": "HOME", "starttls": True}):
            row = lite.add_alert_channel("email", "dba@example.org", json.dumps(
                {"host": "127.0.0.1", "port": plain.port, **options}), False, "now")
            with pytest.raises(DbsafeError) as exc:
                alerts.test_channel(lite, row)
            assert "not sent" in exc.value.message
        assert logins.seen == [] and plain_box.messages == []
    finally:
        plain.stop()


def test_smtp_implicit_tls(lite, tmp_path, monkeypatch):
    ca_file, server_tls = smtp_tls(tmp_path)
    logins = Logins(b"s3cret")
    # (aiosmtpd counts only STARTTLS as TLS for auth_require_tls: Logins checks the socket)
    controller, box = _smtp(authenticator=logins, ssl_context=server_tls,
                            auth_require_tls=False)
    try:
        monkeypatch.setenv("DBSAFE_SMTP_PW", "s3cret")
        channel = _email_channel(lite, controller.port, user="alerts", tls=True,
                                 password_env="DBSAFE_SMTP_PW", ca_file=str(ca_file))
        assert alerts.test_channel(lite, channel["id"])["ok"]
        assert logins.seen == [(b"alerts", b"s3cret", True)] and len(box.messages) == 1
        assert alerts.add_channel(lite, "email", "a@example.org",
                                  {"host": "h", "tls": True})["options"]["port"] == 465
    finally:
        controller.stop()


def test_smtp_passwords_only_from_dbsafe_smtp_variables_and_only_with_tls(lite, tmp_path):
    def refused(**options) -> str:
        with pytest.raises(DbsafeError) as exc:
            alerts.add_channel(lite, "email", "a@example.org", {"host": "h", **options})
        assert exc.value.code == "alerts.channel_invalid"
        return exc.value.message

    for var in ("HOME", "AWS_SECRET_ACCESS_KEY", "DBSAFE_PASSPHRASE", "dbsafe_smtp_x",
                "DBSAFE_SMTP_", "X_DBSAFE_SMTP_PW"):
        assert "DBSAFE_SMTP_" in refused(user="u", password_env=var, starttls=True), var
    assert "only sent over TLS" in refused(user="u", password_env="DBSAFE_SMTP_PW")
    assert "not both" in refused(user="u", password_env="DBSAFE_SMTP_PW", starttls=True,
                                 tls=True)
    assert "goes with --smtp-user" in refused(password_env="DBSAFE_SMTP_PW", starttls=True)
    assert "goes with --starttls" in refused(ca_file="/etc/ssl/certs/ca-certificates.crt")
    assert "absolute" in refused(starttls=True, ca_file="ca.pem")
    for special in ("/dev/zero", str(tmp_path)):  # would stall the sender, or is no file
        assert "regular file" in refused(starttls=True, ca_file=special)
    (tmp_path / "not-pem").write_text("hello")
    assert "PEM" in refused(starttls=True, ca_file=str(tmp_path / "not-pem"))
    assert alerts.list_channels(lite) == []


def test_channels_are_checked(catalog):
    def invalid(kind, target, options=None) -> str:
        with pytest.raises(DbsafeError) as exc:
            alerts.add_channel(catalog, kind, target, options)
        assert exc.value.code == "alerts.channel_invalid"
        return exc.value.message

    assert "http://" in invalid("webhook", "ftp://example.org/x")
    invalid("webhook", "https://example.org/x", {"host": "h"})
    invalid("pager", "123")
    invalid("email", "not-an-address", {"host": "h"})
    assert "--smtp-host" in invalid("email", "a@example.org", {})
    assert "never stored" in invalid("email", "a@example.org", {"host": "h", "password": "p"})
    assert "--smtp-password-env" in invalid("email", "a@example.org",
                                            {"host": "h", "user": "u"})
    invalid("email", "a@example.org", {"host": "h", "port": 70000})
    assert alerts.list_channels(catalog) == []
    ch = alerts.add_channel(catalog, "email", "a@example.org",
                            {"host": "h", "user": "u", "password_env": "DBSAFE_SMTP_PW",
                             "sender": None, "starttls": True}, on_success=True)
    assert ch["options"] == {"host": "h", "user": "u", "password_env": "DBSAFE_SMTP_PW",
                             "starttls": True, "port": 25} and ch["on_success"] is True
    assert alerts.remove_channel(catalog, ch["id"])["id"] == ch["id"]
    for call in (lambda: alerts.remove_channel(catalog, ch["id"]),
                 lambda: alerts.test_channel(catalog, 99)):
        with pytest.raises(DbsafeError) as exc:
            call()
        assert exc.value.code == "alerts.channel_unknown"


def test_user_resolution_is_idempotent(catalog, webhook):
    alerts.add_channel(catalog, "webhook", webhook.url + "/hook")
    alert = alerts.raise_alert(catalog, alerts.VAULT_SPACE_LOW, "warning", "low")
    assert alerts.resolve_alert(catalog, alert["id"])["state"] == "resolved"
    assert alerts.resolve_alert(catalog, alert["id"])["state"] == "resolved"
    assert webhook.events() == ["raised", "resolved"]
    with pytest.raises(DbsafeError) as exc:
        alerts.resolve_alert(catalog, 12345)
    assert exc.value.code == "alerts.unknown"


def test_vault_space_low_raised_then_resolved(tmp_path):
    vault = Vault.init(tmp_path / "vault")
    low = {f["check"]: f for f in monitor.check_health(vault, space_min_free_pct=100.0)}
    space = low["vault_space_low"]
    assert space["ok"] is False and space["alert_id"] is not None
    assert space["details"]["free_bytes"] > 0 and "below the minimum" in space["message"]
    assert low["agent_unreachable"]["ok"]  # no FULL server: no agent needed
    again = monitor.check_health(vault, space_min_free_pct=100.0)
    assert again[0]["alert_id"] == space["alert_id"]
    (active,) = alerts.list_alerts(vault.catalog)
    assert active["kind"] == "vault_space_low" and active["count"] == 2
    ok = monitor.check_health(vault, space_min_free_pct=0.0, space_min_free_bytes=0)
    assert ok[0]["ok"] and alerts.list_alerts(vault.catalog) == []
    assert alerts.list_alerts(vault.catalog, "resolved")[0]["id"] == space["alert_id"]


def test_unreachable_server_and_agent_and_a_broken_check(tmp_path, monkeypatch):
    """A FULL server whose data directory is gone and no agent: both alerts; a check that
    crashes is a finding ``check_not_run`` (what `dbsafe serve` alerts as step_failed), and
    the others still run."""
    monkeypatch.setenv("DBSAFE_RUN_DIR", str(tmp_path / "run"))
    vault = Vault.init(tmp_path / "vault")
    vault.catalog.add_server("ghost", "host", None, {
        "pgdata": str(tmp_path / "gone"), "port": free_port(), "pg_version": 15,
        "bin_dir": "/usr/lib/postgresql/15/bin",
        "system_identifier": "123", "recovery_model": "FULL", "wal_segment_size": 16 << 20})
    found = {(f["check"], f["server"]): f for f in monitor.check_health(
        vault, space_min_free_pct=0, space_min_free_bytes=0)}
    down = found[("server_unreachable", "ghost")]
    assert not down["ok"] and down["details"]["code"] == "server.pgdata_missing"
    assert not found[("agent_unreachable", None)]["ok"]
    assert "dbsafe agent start" in found[("agent_unreachable", None)]["message"]
    assert found[("chain_broken", "ghost")]["ok"] and ("archive_lag", "ghost") not in found
    assert {(a["kind"], a["server"]) for a in alerts.list_alerts(vault.catalog)} == \
        {("server_unreachable", "ghost"), ("agent_unreachable", None)}

    def crash(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(monitor, "chain_check", crash)
    found = monitor.check_health(vault, space_min_free_pct=0, space_min_free_bytes=0)
    assert [f["check"] for f in found] == ["vault_space_low", "agent_unreachable",
                                           "check_not_run"]
    assert found[-1]["server"] == "ghost" and "RuntimeError: boom" in found[-1]["message"]
    assert monitor.checks_not_run(found) == [found[-1]["message"]]
    assert len(alerts.list_alerts(vault.catalog)) == 2  # nothing resolved by the crash
