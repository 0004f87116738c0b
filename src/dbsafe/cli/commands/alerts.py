"""dbsafe alerts [--all] | resolve ID | check | channel add | list | remove ID | test ID"""

from __future__ import annotations

from typing import Any

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_records, open_vault
from dbsafe.core import bounds
from dbsafe.core.errors import DbsafeError

app = typer.Typer(help="Alerts (failed jobs, broken chain, archiving lag, space, agent) and "
                       "where they are sent.")
channel_app = typer.Typer(help="Webhooks and e-mail addresses that receive alerts.",
                          no_args_is_help=True)
app.add_typer(channel_app, name="channel")

ALERT_ID = typer.Argument(..., min=bounds.ROW_ID[0], max=bounds.ROW_ID[1], help="The alert's id.")
CHANNEL_ID = typer.Argument(..., min=bounds.ROW_ID[0], max=bounds.ROW_ID[1],
                            help="The channel's id.")
ALERT_COLUMNS = ["id", "severity", "kind", "server", "item", "count", "last_seen", "state",
                 "message"]


def _alerts_table(rows: list[dict]) -> None:
    if not rows:
        render.out.print("no alerts")
        return
    render.table(rows, ALERT_COLUMNS)


@app.callback(invoke_without_command=True)
def alerts(ctx: typer.Context,
           all_: bool = typer.Option(False, "--all", help="Resolved alerts too.")) -> None:
    """List active alerts (with --all, resolved ones too)."""
    from dbsafe.services import activity

    if ctx.invoked_subcommand is not None:
        return
    rows = activity.list_alerts(open_records(), None if all_ else "active")
    render.emit(rows, _alerts_table)


@app.command("resolve")
def resolve(alert_id: int = ALERT_ID) -> None:
    """Mark an alert resolved and tell the channels (a check may raise it again)."""
    from dbsafe.services import activity

    alert = activity.resolve_alert(open_records(), alert_id)
    render.emit(alert, lambda a: render.out.print(f"alert {a['id']} ({a['kind']}) resolved"))


@app.command("check")
def check(lag_threshold_mib: int = typer.Option(
              None, "--lag-threshold-mib", min=bounds.LAG_MIB[0], max=bounds.LAG_MIB[1],
              help="Archiving lag above which archive_lag is raised (default 1024)."),
          min_free_pct: float = typer.Option(None, "--min-free-pct", min=bounds.FREE_PCT[0],
                                             max=bounds.FREE_PCT[1],
                                             help="Vault free space below this % alerts "
                                                  "(default 10)."),
          min_free_mib: int = typer.Option(None, "--min-free-mib", min=bounds.FREE_MIB[0],
                                           max=bounds.FREE_MIB[1],
                                           help="Vault free space below this alerts "
                                                "(default 1024).")) -> None:
    """Run the health checks now and raise or resolve their alerts (serve does it often)."""
    from dbsafe.services import operations

    given: dict[str, Any] = {"lag_threshold_bytes": lag_threshold_mib and lag_threshold_mib << 20,
             "space_min_free_pct": min_free_pct,
             "space_min_free_bytes": min_free_mib and min_free_mib << 20}
    findings = operations.check_health(open_vault(),
                                       **{k: v for k, v in given.items() if v is not None})

    def human(rows: list[dict]) -> None:
        render.table([{**f, "status": "ok" if f["ok"] else "ALERT"} for f in rows],
                     ["check", "server", "status", "alert_id", "message"])

    render.emit(findings, human)


@channel_app.command("add")
def channel_add(
        webhook: str = typer.Option(None, "--webhook", help="POST alerts as JSON to this URL."),
        email: str = typer.Option(None, "--email", help="Mail alerts to this address."),
        smtp_host: str = typer.Option(None, "--smtp-host", help="SMTP server (e-mail)."),
        smtp_port: int = typer.Option(None, "--smtp-port", min=bounds.PORT[0],
                                      max=bounds.PORT[1],
                                      help="SMTP port (default 25, 465 with --smtp-tls)."),
        sender: str = typer.Option(None, "--sender",
                                   help="From address (default dbsafe@<this host>)."),
        smtp_user: str = typer.Option(None, "--smtp-user", help="SMTP login user."),
        smtp_password_env: str = typer.Option(
            None, "--smtp-password-env",
            help="Name of the environment variable holding the SMTP password, starting "
                 "with DBSAFE_SMTP_ (the password is never stored; needs --starttls or "
                 "--smtp-tls)."),
        starttls: bool = typer.Option(False, "--starttls", help="Use STARTTLS."),
        smtp_tls: bool = typer.Option(False, "--smtp-tls",
                                      help="Implicit TLS from the first byte (port 465)."),
        smtp_ca_file: str = typer.Option(
            None, "--smtp-ca-file",
            help="PEM certificates to trust for the SMTP server instead of the system's "
                 "(a private CA); the server's certificate is always checked."),
        on_success: bool = typer.Option(False, "--on-success",
                                        help="Also send success notices (backups, restores, "
                                             "drills; not log backups).")) -> None:
    """Add a webhook or e-mail channel; every new and resolved alert is sent to it."""
    from dbsafe.services import activity

    if bool(webhook) == bool(email):
        raise DbsafeError("alerts.channel_invalid",
                          reason="give exactly one of --webhook URL and --email ADDRESS")
    if webhook:
        smtp = [smtp_host, smtp_port, sender, smtp_user, smtp_password_env, smtp_ca_file]
        if any(smtp) or starttls or smtp_tls:
            raise DbsafeError("alerts.channel_invalid",
                              reason="the SMTP options go with --email, not --webhook")
        channel = activity.add_channel(open_records(), "webhook", webhook, None,
                                       on_success)
    else:
        options = {"host": smtp_host, "port": smtp_port, "sender": sender,
                   "user": smtp_user, "password_env": smtp_password_env,
                   "starttls": starttls, "tls": smtp_tls, "ca_file": smtp_ca_file}
        channel = activity.add_channel(open_records(), "email", email, options,
                                       on_success)
    render.emit(channel, lambda c: render.out.print(
        f"channel {c['id']}: {c['kind']} to {c['target']}"
        f"{' (with success notices)' if c['on_success'] else ''}"))


@channel_app.command("list")
def channel_list() -> None:
    """List the alert channels."""
    from dbsafe.services import activity

    rows = activity.list_channels(open_records())
    render.emit(rows, lambda r: render.table(
        [{**c, "options": ", ".join(f"{k}={v}" for k, v in c["options"].items())}
         for c in r], ["id", "kind", "target", "on_success", "options", "created"]))


@channel_app.command("remove")
def channel_remove(channel_id: int = CHANNEL_ID) -> None:
    """Remove an alert channel."""
    from dbsafe.services import activity

    channel = activity.remove_channel(open_records(), channel_id)
    render.emit(channel, lambda c: render.out.print(f"removed channel {c['id']}"))


@channel_app.command("test")
def channel_test(channel_id: int = CHANNEL_ID) -> None:
    """Send a test alert to a channel (alerts.delivery_failed if it does not arrive)."""
    from dbsafe.services import activity

    record = activity.test_channel(open_records(), channel_id)
    render.emit(record, lambda r: render.out.print(
        f"test alert delivered to channel {r['channel']} ({r['target']})"))
