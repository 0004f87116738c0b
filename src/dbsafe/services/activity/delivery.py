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
import re
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

# The only environment variables a channel may name as its SMTP password: anything else
# (DBSAFE_PASSPHRASE, AWS_SECRET_ACCESS_KEY, ...) would be handed to whatever server the
# channel names.
SMTP_PASSWORD_ENV = re.compile(r"DBSAFE_SMTP_[A-Za-z0-9_]+")
SMTP_PORT, SMTPS_PORT = 25, 465


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


def email_security_problem(options: dict) -> str | None:
    """Why an e-mail channel's options may not be used (None: they may): a password only
    from a ``DBSAFE_SMTP_*`` variable, and only over TLS (STARTTLS, or implicit TLS).
    Checked when a channel is added and again before each sending (a stored channel may
    come from an older dbsafe, or from whoever can write the catalog)."""
    if options.get("starttls") and options.get("tls"):
        return "choose STARTTLS (--starttls) or implicit TLS (--smtp-tls), not both"
    tls = options.get("starttls") or options.get("tls")
    if options.get("ca_file"):
        if not tls:
            return "a CA file (--smtp-ca-file) goes with --starttls or --smtp-tls"
        path = options["ca_file"]
        if not isinstance(path, str) or not os.path.isabs(path) or not os.path.isfile(path):
            # a regular file only: a FIFO or /dev/zero would stall the sender
            return f"the CA file {path!r} must be the absolute path of a regular file"
    if not options.get("user"):
        return ("--smtp-password-env goes with --smtp-user" if options.get("password_env")
                else None)
    var = options.get("password_env")
    if not isinstance(var, str) or not SMTP_PASSWORD_ENV.fullmatch(var):
        return ("an SMTP user needs the name of the environment variable holding the "
                "password, and it must start with DBSAFE_SMTP_ (--smtp-password-env "
                f"DBSAFE_SMTP_PASSWORD), not {var!r}: any other variable of the dbsafe "
                "process may hold another secret")
    if not tls:
        return ("a password is only sent over TLS: add --starttls, or --smtp-tls for "
                f"implicit TLS (port {SMTPS_PORT})")
    return None


def smtp_port(options: dict) -> int:
    return int(options.get("port") or (SMTPS_PORT if options.get("tls") else SMTP_PORT))


def _tls_context(options: dict) -> ssl.SSLContext:
    """Certificates checked against the channel's CA file, else the system's store; the
    host name is always checked. Never unverified."""
    return ssl.create_default_context(cafile=options.get("ca_file"))


def send_email(to: str, options: dict, alert: dict, event: str) -> None:
    """``options``: host, port (25, or 465 with ``tls``), sender, ``starttls`` or ``tls``
    (implicit TLS), ``ca_file`` (PEM certificates to trust instead of the system's), user
    and password_env: the name of the ``DBSAFE_SMTP_*`` environment variable holding the
    password (the password itself is never stored). The password is sent only over a
    verified TLS connection: a server that does not offer STARTTLS never sees it."""
    where = f"SMTP {options['host']}:{smtp_port(options)}"
    problem = email_security_problem(options)
    if problem:
        raise DeliveryError(f"{where}: not sent: {problem}")
    password = None
    if options.get("user"):
        var = options["password_env"]
        password = os.environ.get(var)
        if password is None:
            raise DeliveryError(f"the SMTP password variable {var!r} is not set in the "
                                "environment of this process")
    msg = email_message(alert, event, options.get("sender") or default_sender(), to)

    def connect() -> smtplib.SMTP:
        if options.get("tls"):
            return smtplib.SMTP_SSL(options["host"], smtp_port(options), timeout=TIMEOUT,
                                    context=_tls_context(options))
        smtp = smtplib.SMTP(options["host"], smtp_port(options), timeout=TIMEOUT)
        if options.get("starttls"):
            try:  # SMTPNotSupportedError when the server does not offer it
                smtp.starttls(context=_tls_context(options))
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send() -> None:
        with connect() as smtp:
            if password is not None:
                if not isinstance(smtp.sock, ssl.SSLSocket):  # never in clear
                    raise smtplib.SMTPNotSupportedError("the connection is not encrypted")
                smtp.login(options["user"], password)
            smtp.send_message(msg)

    def retryable(exc: Exception) -> bool:
        permanent = (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused,
                     smtplib.SMTPSenderRefused, smtplib.SMTPNotSupportedError,
                     ssl.SSLCertVerificationError)
        return not isinstance(exc, permanent)

    try:
        _with_retry(send, retryable)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None


def send(channel: dict, alert: dict, event: str) -> None:
    """Send one event of ``alert`` (its public form) to ``channel`` (kind, target, options)."""
    if channel["kind"] == "webhook":
        send_webhook(channel["target"], document(alert, event))
    else:
        send_email(channel["target"], channel.get("options") or {}, alert, event)
