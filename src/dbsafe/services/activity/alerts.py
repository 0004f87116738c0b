"""Alerts: conditions a DBA must act on, kept in the catalog and delivered once.

An alert is keyed by (kind, server, item). While one is active, raising it again only
counts the repeat (count, last_seen, latest message and details): nothing is re-sent, so a
failing job every minute is one alert, not an alert storm. A new alert is sent to every
channel; when its condition clears (``resolve_alerts``, or a user's ``resolve_alert``) a
"resolved" event goes to every channel too. Success notices (``NOTICE_KINDS``) are events,
not conditions: they are logged and sent to the channels with ``on_success`` only, every
time, and are not kept (the job list is their history).

Every event is written to the Python logger "dbsafe.alerts". Delivery failures are logged
and recorded on the alert (``details.deliveries``) and never raised into the job or check
that raised the alert. Functions take the catalog only, because that is all a job holds.
"""

from __future__ import annotations

import json
import logging
import urllib.parse

from dbsafe.catalog.base import Catalog
from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow

# delivery (smtplib, ssl, urllib.request, email: ~15 ms) is imported where an alert is sent
# or a channel checked, not by every command that imports this module

log = logging.getLogger("dbsafe.alerts")
log.addHandler(logging.NullHandler())  # `dbsafe serve` configures where the log goes

# Kinds, with their usual severity.
BACKUP_FAILED = "backup_failed"
RESTORE_FAILED = "restore_failed"
VERIFY_FAILED = "verify_failed"
DRILL_FAILED = "drill_failed"
CHAIN_BROKEN = "chain_broken"
ARCHIVE_LAG = "archive_lag"
VAULT_SPACE_LOW = "vault_space_low"
VAULT_FULL = "vault_full"
AGENT_UNREACHABLE = "agent_unreachable"
SERVER_UNREACHABLE = "server_unreachable"
BACKUP_SUCCEEDED = "backup_succeeded"
RESTORE_SUCCEEDED = "restore_succeeded"
DRILL_SUCCEEDED = "drill_succeeded"
ROLE_CHANGED = "replica_role_changed"
MANIFEST_MISSING = "manifest_missing"
BACKUP_OVERDUE = "backup_overdue"
STEP_FAILED = "step_failed"
WAL_SPOOLED = "wal_spooled"
WAL_SPOOL_FILLING = "wal_spool_filling"

SEVERITIES = ("critical", "warning", "info")
KINDS: dict[str, str] = {
    BACKUP_FAILED: "critical", RESTORE_FAILED: "critical", VERIFY_FAILED: "critical",
    DRILL_FAILED: "critical", CHAIN_BROKEN: "critical", ARCHIVE_LAG: "warning",
    VAULT_SPACE_LOW: "warning", VAULT_FULL: "critical", AGENT_UNREACHABLE: "critical",
    SERVER_UNREACHABLE: "critical",
    BACKUP_SUCCEEDED: "info", RESTORE_SUCCEEDED: "info", DRILL_SUCCEEDED: "info",
    ROLE_CHANGED: "warning", MANIFEST_MISSING: "critical", BACKUP_OVERDUE: "critical",
    STEP_FAILED: "warning", WAL_SPOOLED: "warning", WAL_SPOOL_FILLING: "critical",
}
NOTICE_KINDS = frozenset({BACKUP_SUCCEEDED, RESTORE_SUCCEEDED, DRILL_SUCCEEDED, ROLE_CHANGED})

# Job type -> (alert when it fails, notice when it succeeds).
JOB_ALERTS: dict[str, tuple[str, str | None]] = {
    "backup": (BACKUP_FAILED, BACKUP_SUCCEEDED),
    "restore": (RESTORE_FAILED, RESTORE_SUCCEEDED),
    "verify": (VERIFY_FAILED, None),
    "drill": (DRILL_FAILED, DRILL_SUCCEEDED),
}
SUCCEEDED_STATES = ("completed", "completed_with_warnings")
_LOG_LEVEL = {"critical": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}
EMAIL_OPTIONS = {"host", "port", "sender", "user", "password_env", "starttls", "tls",
                 "ca_file"}


# --------------------------------------------------------------------------------------
# alerts
# --------------------------------------------------------------------------------------

def public(row: dict) -> dict:
    """An alert as the CLI, the API and the webhook show it (details parsed, deliveries
    apart)."""
    details = json.loads(row["details"]) if isinstance(row.get("details"), str) \
        else dict(row.get("details") or {})
    deliveries = details.pop("deliveries", [])
    return {"id": row.get("id"), "kind": row["kind"], "severity": row["severity"],
            "server": row.get("server"), "item": row.get("item"), "message": row["message"],
            "details": details, "job_id": row.get("job_id"), "raised": row.get("raised"),
            "last_seen": row.get("last_seen"), "count": row.get("count", 1),
            "state": row.get("state"), "resolved": row.get("resolved"),
            "deliveries": deliveries}


def raise_alert(catalog: Catalog, kind: str, severity: str, message: str, *,
                server: str | None = None, item: str | None = None,
                details: dict | None = None, job_id: str | None = None,
                now: str | None = None) -> dict:
    """Raise (or repeat) the alert of (kind, server, item); returns it in public form with
    ``new`` telling whether it was delivered now."""
    if kind not in KINDS or severity not in SEVERITIES:
        raise ValueError(f"unknown alert kind {kind!r} or severity {severity!r}")
    now = now or utcnow()
    if kind in NOTICE_KINDS:
        alert = public({"kind": kind, "severity": severity, "server": server, "item": item,
                        "message": message, "details": details, "job_id": job_id,
                        "raised": now, "last_seen": now, "state": "notice"})
        _log(alert, "notice")
        alert["deliveries"] = _deliver(
            [c for c in list_channels(catalog) if c["on_success"]], alert, "notice", now)
        return {**alert, "new": True}
    row, new = catalog.upsert_alert(
        {"kind": kind, "severity": severity, "server": server, "item": item,
         "message": message, "details": json.dumps(details or {}, default=str),
         "job_id": job_id}, now)
    alert = public(row)
    if new:
        _log(alert, "raised")
        _deliver_and_record(catalog, alert, "raised", now)
    else:
        log.debug("alert %s repeated (%d times): %s", alert["id"], alert["count"], message)
    return {**alert, "new": new}


def resolve_alerts(catalog: Catalog, kind: str, *, server: str | None = None,
                   item: str | None = None, now: str | None = None) -> int:
    """The condition of (kind, server, item) cleared: resolve its active alert (exact key,
    None matching None) and send the "resolved" event. Returns how many were resolved."""
    now = now or utcnow()
    rows = catalog.resolve_alert_rows(now, key=(kind, server, item))
    for row in rows:
        alert = public(row)
        _log(alert, "resolved")
        _deliver_and_record(catalog, alert, "resolved", now)
    return len(rows)


def resolve_alert(catalog: Catalog, alert_id: int) -> dict:
    """A user resolves an alert by id; resolving a resolved alert changes nothing."""
    row = catalog.get_alert(alert_id)
    if row is None:
        raise DbsafeError("alerts.unknown", alert_id=alert_id)
    now = utcnow()
    for resolved in catalog.resolve_alert_rows(now, alert_id=alert_id):
        alert = public(resolved)
        _log(alert, "resolved")
        _deliver_and_record(catalog, alert, "resolved", now)
    return public(catalog.get_alert(alert_id) or row)


def active_keys(catalog: Catalog) -> set[tuple[str, str | None, str | None]]:
    """The (kind, server, item) of every active alert: one read, for callers that would
    otherwise try to resolve each of many conditions that are mostly fine."""
    return {(a["kind"], a["server"], a["item"]) for a in catalog.list_alerts("active")}


def list_alerts(catalog: Catalog, state: str | None = "active", limit: int | None = None,
                offset: int = 0) -> list[dict]:
    """Alerts in public form, most recently seen first; ``state`` None lists all;
    ``limit`` rows from ``offset`` (None: every one)."""
    return [public(r) for r in catalog.list_alerts(state, limit, offset)]


def _log(alert: dict, event: str) -> None:
    level = logging.INFO if event == "resolved" else _LOG_LEVEL[alert["severity"]]
    where = alert["server"] or "vault"
    if alert["item"]:
        where += f"/{alert['item']}"
    log.log(level, "alert %s %s %s [%s]: %s", alert["id"] or "-", event, alert["kind"], where,
            alert["message"])


def _deliver(channels: list[dict], alert: dict, event: str, now: str) -> list[dict]:
    """Send to each channel; one record per channel, failures logged, never raised."""
    if not channels:
        return []
    from dbsafe.services.activity import delivery as alert_delivery

    records = []
    for channel in channels:
        record = {"channel": channel["id"], "target": channel["target"], "event": event,
                  "at": now, "ok": True, "error": None}
        try:
            alert_delivery.send(channel, alert, event)
        except alert_delivery.DeliveryError as exc:
            record.update(ok=False, error=str(exc))
        except Exception as exc:  # a bug in a sender must not fail the job either
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        if not record["ok"]:
            log.warning("alert %s: %s delivery to channel %s (%s) failed: %s",
                        alert["id"] or "-", event, channel["id"], channel["target"],
                        record["error"])
        records.append(record)
    return records


def deliver_row(catalog: Catalog, row: dict, event: str, now: str) -> None:
    """Log and deliver an alert row an agent raised or resolved (docs/fleet.md): agents
    deliver nothing themselves, the control plane does it for them."""
    alert = public(row)
    _log(alert, event)
    _deliver_and_record(catalog, alert, event, now)


def _deliver_and_record(catalog: Catalog, alert: dict, event: str, now: str) -> None:
    records = _deliver(list_channels(catalog), alert, event, now)
    if records:
        row = catalog.get_alert(alert["id"])
        details = json.loads(row["details"]) if row and row["details"] else {}
        details["deliveries"] = [*details.get("deliveries", []), *records]
        catalog.update_alert(alert["id"], details=json.dumps(details, default=str))
        alert["deliveries"] = details["deliveries"]


# --------------------------------------------------------------------------------------
# the jobs' hook
# --------------------------------------------------------------------------------------

def job_finished(catalog: Catalog, job: dict) -> None:
    """Called at the end of every job (a catalog row of ``jobs``). A failed backup, restore,
    verify or drill raises its alert; a later success of the same type on the same server
    (for backups: the same backup type) resolves it, and sends a success notice to the
    channels that want one (not for log backups: they run every few minutes). Never raises.
    """
    try:
        _job_finished(catalog, job)
    except Exception:
        log.exception("alerts for job %s could not be raised", job.get("id"))


def vault_full(catalog: Catalog, message: str, *, source: str,
               job_id: str | None = None) -> dict:
    """The vault's storage refused a write for space (``vault.full``): one alert for the
    vault, whichever backup or WAL file met it first (``source``); the next write that
    succeeds resolves it (``vault_writable``)."""
    return raise_alert(catalog, VAULT_FULL, KINDS[VAULT_FULL], message,
                       details={"source": source}, job_id=job_id)


def vault_writable(catalog: Catalog) -> None:
    """A backup or WAL file was stored: the vault is no longer full."""
    resolve_alerts(catalog, VAULT_FULL)


def _job_finished(catalog: Catalog, job: dict) -> None:
    if job.get("state") == "failed" and job.get("error_code") == "vault.full":
        vault_full(catalog, job.get("error_message") or "the vault is full",
                   source=f"{job.get('type')} job {job.get('id')}", job_id=job.get("id"))
    elif job.get("type") == "backup" and job.get("state") in SUCCEEDED_STATES:
        vault_writable(catalog)
    if job.get("type") not in JOB_ALERTS:
        return
    failed_kind, success_kind = JOB_ALERTS[job["type"]]
    result = job.get("result")
    if isinstance(result, str):
        result = json.loads(result)
    result = result or {}
    backup_type = job.get("backup_type") or result.get("type")
    item = backup_type if job["type"] == "backup" else None
    server, state = job.get("server"), job.get("state")
    what = f"{backup_type} backup" if item else job["type"]
    details = {k: job[k] for k in ("trigger", "items", "reason", "error_code")
               if job.get(k) is not None}
    details.update(job_id=job.get("id"), job_type=job["type"], state=state)
    if state == "failed":
        raise_alert(catalog, failed_kind, KINDS[failed_kind],
                    f"{what} of {server} failed: [{job.get('error_code')}] "
                    f"{job.get('error_message')}", server=server, item=item,
                    details={**details, "error_message": job.get("error_message")},
                    job_id=job.get("id"))
    elif state in SUCCEEDED_STATES:
        resolve_alerts(catalog, failed_kind, server=server, item=item)
        for warning in result.get("warnings") or []:
            if isinstance(warning, dict) and warning.get("code") == "chain.broken":
                raise_alert(catalog, CHAIN_BROKEN, KINDS[CHAIN_BROKEN], warning["message"],
                            server=server, details={"gaps": warning.get("details", {})
                                                    .get("gaps")}, job_id=job.get("id"))
        if success_kind and backup_type != "log":
            point = f", point {result['point_id']}" if result.get("point_id") else ""
            raise_alert(catalog, success_kind, KINDS[success_kind],
                        f"{what} of {server} {state.replace('_', ' ')} "
                        f"(job {job.get('id')}{point})", server=server, item=item,
                        details=details, job_id=job.get("id"))


# --------------------------------------------------------------------------------------
# channels
# --------------------------------------------------------------------------------------

def _channel(row: dict) -> dict:
    return {"id": row["id"], "kind": row["kind"], "target": row["target"],
            "options": json.loads(row["options"]) if row["options"] else {},
            "on_success": bool(row["on_success"]), "created": row["created"]}


def _check_channel(kind: str, target: str, options: dict) -> dict:
    import ssl
    from email.utils import parseaddr

    from dbsafe.services.activity import delivery as alert_delivery

    def invalid(reason: str) -> DbsafeError:
        return DbsafeError("alerts.channel_invalid", reason=reason)

    if kind == "webhook":
        url = urllib.parse.urlsplit(target)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise invalid(f"{target!r} is not an http:// or https:// URL")
        if options:
            raise invalid(f"a webhook takes no options (got {sorted(options)})")
        return {}
    if kind != "email":
        raise invalid(f"kind {kind!r} is neither webhook nor email")
    if "@" not in parseaddr(target)[1]:
        raise invalid(f"{target!r} is not an e-mail address")
    unknown = set(options) - EMAIL_OPTIONS
    if "password" in unknown:
        raise invalid("a password is never stored: put it in an environment variable of the "
                      "dbsafe process and give its name (--smtp-password-env)")
    if unknown:
        raise invalid(f"unknown e-mail options {sorted(unknown)}")
    if not options.get("host"):
        raise invalid("an e-mail channel needs the SMTP server (--smtp-host)")
    port = alert_delivery.smtp_port(options)
    if not 0 < port < 65536:
        raise invalid(f"SMTP port {port} is out of range")
    problem = alert_delivery.email_security_problem(options)
    if problem:
        raise invalid(problem)
    if options.get("ca_file"):
        try:
            ssl.create_default_context(cafile=options["ca_file"])
        except (OSError, ssl.SSLError):
            raise invalid(f"{options['ca_file']} is not a readable file of PEM "
                          "certificates") from None
    if options.get("sender") and "@" not in parseaddr(options["sender"])[1]:
        raise invalid(f"sender {options['sender']!r} is not an e-mail address")
    return {**{k: v for k, v in options.items() if v not in (None, "", False)}, "port": port}


def add_channel(catalog: Catalog, kind: str, target: str, options: dict | None = None,
                on_success: bool = False) -> dict:
    """Add a webhook (target: URL) or email (target: address; options: host, port, sender,
    user, password_env, starttls, tls, ca_file) channel. Passwords are refused: only the
    name of a ``DBSAFE_SMTP_*`` environment variable holding one is stored, and only with
    STARTTLS or implicit TLS."""
    checked = _check_channel(kind, target, dict(options or {}))
    channel_id = catalog.add_alert_channel(kind, target,
                                           json.dumps(checked) if checked else None,
                                           on_success, utcnow())
    return get_channel(catalog, channel_id)


def get_channel(catalog: Catalog, channel_id: int) -> dict:
    row = catalog.get_alert_channel(channel_id)
    if row is None:
        raise DbsafeError("alerts.channel_unknown", channel_id=channel_id)
    return _channel(row)


def list_channels(catalog: Catalog) -> list[dict]:
    return [_channel(r) for r in catalog.list_alert_channels()]


def remove_channel(catalog: Catalog, channel_id: int) -> dict:
    channel = get_channel(catalog, channel_id)
    catalog.remove_alert_channel(channel_id)
    return channel


def test_channel(catalog: Catalog, channel_id: int) -> dict:
    """Send a test event (not stored) to one channel; ``alerts.delivery_failed`` if it did
    not arrive. Returns the delivery record."""
    channel = get_channel(catalog, channel_id)
    now = utcnow()
    alert = public({"kind": "test", "severity": "info", "message":
                    f"test alert from dbsafe to channel {channel_id} ({channel['target']})",
                    "raised": now, "last_seen": now, "state": "test"})
    (record,) = _deliver([channel], alert, "test", now)
    if not record["ok"]:
        raise DbsafeError("alerts.delivery_failed", channel_id=channel_id,
                          target=channel["target"], reason=record["error"])
    return record


test_channel.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
