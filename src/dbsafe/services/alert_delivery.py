"""Sending one alert event to one channel: a webhook (HTTP POST of a JSON document) or an
e-mail (SMTP). The formats are written down in docs/alerts.md.

Standard library only (urllib, smtplib): an alert must go out even when little else works,
and neither needs more than one request. A send either returns or raises ``DeliveryError``
with a one-line reason; the caller records it and never lets it reach the job that raised
the alert. Each send gets ``TIMEOUT`` seconds and one retry after ``RETRY_DELAY`` seconds
(a webhook answering 4xx is not retried: the same request would be refused again).
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

TIMEOUT = 5.0
RETRY_DELAY = 1.0
FORMAT = 1  # the webhook document's version

EVENTS = ("raised", "resolved", "notice", "test")


class DeliveryError(Exception):
    """A channel did not take the alert; the message says why in one line."""


def document(alert: dict, event: str) -> dict:
    """The webhook body: the event, the alert, and where it comes from."""
    return {"format": FORMAT, "source": "dbsafe", "host": socket.gethostname(),
            "event": event, "alert": alert}


def _with_retry(send, retryable) -> None:
    try:
        send()
    except Exception as exc:
        if not retryable(exc):
            raise
        time.sleep(RETRY_DELAY)
        send()


def send_webhook(url: str, body: dict) -> None:
    data = json.dumps(body, default=str).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "dbsafe-alerts"})

    def send() -> None:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read()

    def retryable(exc: Exception) -> bool:
        return not (isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500)

    try:
        _with_retry(send, retryable)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason} from {url}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"POST {url} failed: {reason}") from None


def subject(alert: dict, event: str) -> str:
    label = {"resolved": "RESOLVED", "test": "TEST"}.get(event, alert["severity"].upper())
    where = alert.get("server") or "vault"
    if alert.get("item"):
        where += f" ({alert['item']})"
    return f"[dbsafe] {label} {alert['kind']}: {where}"


def email_body(alert: dict, event: str) -> str:
    fields = [("event", event), ("kind", alert["kind"]), ("severity", alert["severity"]),
              ("server", alert.get("server")), ("item", alert.get("item")),
              ("alert id", alert.get("id")), ("raised", alert.get("raised")),
              ("last seen", alert.get("last_seen")), ("count", alert.get("count")),
              ("resolved", alert.get("resolved")), ("job", alert.get("job_id")),
              ("host", socket.gethostname())]
    lines = [alert["message"], ""]
    lines += [f"{name + ':':<11}{value}" for name, value in fields if value is not None]
    if alert.get("details"):
        lines += ["", "details:", json.dumps(alert["details"], indent=2, default=str)]
    return "\n".join(lines) + "\n"


def email_message(alert: dict, event: str, sender: str, to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(alert, event)
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["X-Dbsafe-Event"] = event
    if alert.get("id") is not None:
        msg["X-Dbsafe-Alert-Id"] = str(alert["id"])
    msg.set_content(email_body(alert, event))
    return msg


def default_sender() -> str:
    return f"dbsafe@{socket.getfqdn()}"


def send_email(to: str, options: dict, alert: dict, event: str) -> None:
    """``options``: host, port (25), sender, starttls, user and password_env: the name of the
    environment variable holding the password (the password itself is never stored)."""
    password = None
    if options.get("user"):
        var = options.get("password_env") or ""
        password = os.environ.get(var)
        if password is None:
            raise DeliveryError(f"the SMTP password variable {var!r} is not set in the "
                                "environment of this process")
    msg = email_message(alert, event, options.get("sender") or default_sender(), to)

    def send() -> None:
        with smtplib.SMTP(options["host"], int(options.get("port") or 25),
                          timeout=TIMEOUT) as smtp:
            if options.get("starttls"):
                smtp.starttls(context=ssl.create_default_context())
            if password is not None:
                smtp.login(options["user"], password)
            smtp.send_message(msg)

    def retryable(exc: Exception) -> bool:
        permanent = (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused,
                     smtplib.SMTPSenderRefused, ssl.SSLCertVerificationError)
        return not isinstance(exc, permanent)

    try:
        _with_retry(send, retryable)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {options['host']}:{options.get('port') or 25}: "
                            f"{type(exc).__name__}: {exc}") from None


def send(channel: dict, alert: dict, event: str) -> None:
    """Send one event of ``alert`` (its public form) to ``channel`` (kind, target, options)."""
    if channel["kind"] == "webhook":
        send_webhook(channel["target"], document(alert, event))
    else:
        send_email(channel["target"], channel.get("options") or {}, alert, event)
