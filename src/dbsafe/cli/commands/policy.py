"""dbsafe policy create | list | show | edit | delete"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_name, open_vault
from dbsafe.core.errors import DbsafeError
from dbsafe.policy.model import Policy, parse_days

app = typer.Typer(help="Backup policies: schedules, retention, compression.",
                  no_args_is_help=True)

# The options create and edit share; None means "not given" (edit keeps the setting).
FULL = typer.Option(None, "--full", help="daily or weekly.")
FULL_DAYS = typer.Option(None, "--full-days", help="Weekly full: weekdays, e.g. sun,wed.")
FULL_TIME = typer.Option(None, "--full-time", help="HH:MM, local time in --timezone "
                                                   "(default 01:00).")
TIMEZONE = typer.Option(None, "--timezone", help="IANA time zone (default UTC).")
DIFF_DAYS = typer.Option(None, "--diff-days", help="Differentials (weekly full only): "
                                                   "weekdays, or none.")
LOG_EVERY = typer.Option(None, "--log-every", help="Log backups every MINUTES (1, 2, 3, 4, "
                                                   "5, 6, 10, 12, 15, 30, 60, 120, 240, 480, "
                                                   "720, 1440), or none (SIMPLE).")
KEEP_DAILY = typer.Option(None, "--keep-daily", help="Daily fulls: 7-9999 days (daily full).")
KEEP_WEEKLY = typer.Option(None, "--keep-weekly", help="Weekly tier: 1-5163 weeks, or none.")
KEEP_MONTHLY = typer.Option(None, "--keep-monthly", help="Monthly tier: 1-1188 months, or none.")
KEEP_YEARLY = typer.Option(None, "--keep-yearly", help="Yearly tier: 1-99 years, or none.")
KEEP_DIFF = typer.Option(None, "--keep-diff", help="Differentials: 7-180 days.")
KEEP_LOG = typer.Option(None, "--keep-log", help="Log backups: 7-35 days.")
COMPRESSION = typer.Option(None, "--compression", help="on or off (default on).")
COMPRESSION_LEVEL = typer.Option(None, "--compression-level", help="zstd level 1-22 "
                                                                   "(default 1).")
SYNTHETIC_FULL = typer.Option(None, "--synthetic-full", help="on or off (default on): "
                              "scheduled fulls built from the last full plus the WAL.")
READ_FULL_WEEKS = typer.Option(None, "--read-full-weeks", help="A scheduled full reads every "
                               "file at least every N weeks, 1-52 (default 4).")
DRILL_DAYS = typer.Option(None, "--drill-days", help="Restore drills on these weekdays, "
                                                     "or none.")
DRILL_TIME = typer.Option(None, "--drill-time", help="HH:MM of the drills (default 04:00).")


def _changes(name: str, full, full_days, full_time, timezone, diff_days, log_every,
             keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_diff, keep_log,
             compression, compression_level, drill_days, drill_time, synthetic_full=None,
             read_full_weeks=None) -> dict:
    """The settings given on the command line, parsed (validation comes later)."""
    from dbsafe.services import inventory

    changes: dict[str, object] = {}
    for key, value in (("full", full), ("full_time", full_time), ("timezone", timezone),
                       ("drill_time", drill_time)):
        if value is not None:
            changes[key] = value.strip().lower() if key == "full" else value.strip()
    for key, value in (("full_days", full_days), ("diff_days", diff_days),
                       ("drill_days", drill_days)):
        if value is not None:
            changes[key] = parse_days(value)
    for key, value in (("log_every", log_every), ("keep_daily", keep_daily),
                       ("keep_weekly", keep_weekly), ("keep_monthly", keep_monthly),
                       ("keep_yearly", keep_yearly), ("keep_diff", keep_diff),
                       ("keep_log", keep_log), ("compression_level", compression_level),
                       ("read_full_weeks", read_full_weeks)):
        if value is not None:
            changes[key] = inventory.whole_number("--" + key.replace("_", "-"), value, name)
    for key, value in (("compression", compression), ("synthetic_full", synthetic_full)):
        if value is not None:
            flag = value.strip().lower()
            if flag not in ("on", "off"):
                raise DbsafeError("policy.invalid", policy=name, rule=f"--"
                                  f"{key.replace('_', '-')} must be on or off, not {value!r}")
            changes[key] = flag == "on"
    return changes


def _show(d: dict) -> None:
    days = lambda v: ",".join(v) or "-"  # noqa: E731
    full = "daily" if d["full"] == "daily" else f"weekly on {days(d['full_days'])}"
    render.out.print(f"[bold]{d['name']}[/bold]: full {full} at {d['full_time']} "
                     f"{d['timezone']}, recovery model {d['recovery_model']}")
    logs = f"every {d['log_every']} min" if d["log_every"] else "none"
    render.out.print(f"  differentials: {days(d['diff_days'])}   logs: {logs}")
    tiers = [f"{k.removeprefix('keep_')} {d[k]}" for k in
             ("keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_diff",
              "keep_log") if d[k] is not None]
    render.out.print(f"  retention: {', '.join(tiers)}")
    level = f"zstd level {d['compression_level']}" if d["compression"] else "off"
    drills = f"{days(d['drill_days'])} at {d['drill_time']} {d['timezone']}" \
        if d["drill_days"] else "none"
    render.out.print(f"  compression: {level}   drills: {drills}")
    if d.get("synthetic_full"):
        render.out.print(f"  fulls: synthetic, read every {d['read_full_weeks']} week(s)")
    if "next_runs" in d:
        for kind, when in d["next_runs"].items():
            if when:
                render.out.print(f"  next {kind}: {when}")
    if "items_using" in d:
        render.out.print(f"  used by: {', '.join(d['items_using']) or 'nothing'}")


@app.command("create")
def create(name: str = typer.Argument(..., callback=checked_name, help="The policy's name."),
           full: str = FULL, full_days: str = FULL_DAYS, full_time: str = FULL_TIME,
           timezone: str = TIMEZONE, diff_days: str = DIFF_DAYS, log_every: str = LOG_EVERY,
           keep_daily: str = KEEP_DAILY, keep_weekly: str = KEEP_WEEKLY,
           keep_monthly: str = KEEP_MONTHLY, keep_yearly: str = KEEP_YEARLY,
           keep_diff: str = KEEP_DIFF, keep_log: str = KEEP_LOG, compression: str = COMPRESSION,
           compression_level: str = COMPRESSION_LEVEL, drill_days: str = DRILL_DAYS,
           drill_time: str = DRILL_TIME, synthetic_full: str = SYNTHETIC_FULL,
           read_full_weeks: str = READ_FULL_WEEKS) -> None:
    """Create a policy. Unset settings take the default policy's values; a weekly full has
    no daily tier, and --log-every none also unsets --keep-log."""
    from dbsafe.services import inventory

    changes = _changes(name, full, full_days, full_time, timezone, diff_days, log_every,
                       keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_diff,
                       keep_log, compression, compression_level, drill_days, drill_time,
                       synthetic_full, read_full_weeks)
    base = Policy(name)
    result = inventory.create_policy(open_vault(),
                                     base.with_changes(**base.implied(changes)))
    render.emit(result, _show)


@app.command("edit")
def edit(name: str = typer.Argument(..., help="The policy to change."),
         full: str = FULL, full_days: str = FULL_DAYS, full_time: str = FULL_TIME,
         timezone: str = TIMEZONE, diff_days: str = DIFF_DAYS, log_every: str = LOG_EVERY,
         keep_daily: str = KEEP_DAILY, keep_weekly: str = KEEP_WEEKLY,
         keep_monthly: str = KEEP_MONTHLY, keep_yearly: str = KEEP_YEARLY,
         keep_diff: str = KEEP_DIFF, keep_log: str = KEEP_LOG, compression: str = COMPRESSION,
         compression_level: str = COMPRESSION_LEVEL, drill_days: str = DRILL_DAYS,
         drill_time: str = DRILL_TIME, synthetic_full: str = SYNTHETIC_FULL,
         read_full_weeks: str = READ_FULL_WEEKS) -> None:
    """Change the given settings of a policy (it applies to existing points too)."""
    from dbsafe.services import inventory, protection

    changes = _changes(name, full, full_days, full_time, timezone, diff_days, log_every,
                       keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_diff,
                       keep_log, compression, compression_level, drill_days, drill_time,
                       synthetic_full, read_full_weeks)
    vault = open_vault()
    current = inventory.get_policy(vault, name)
    result = protection.change_policy(vault, name, **current.implied(changes))

    def human(r: dict) -> None:
        _show(r)
        for entry in r["reconfigured"]:
            if entry["state"] != "protected":
                render.out.print(f"[yellow]{entry['server']}: inconsistent policy[/yellow] "
                                 f"({entry['reason']}); fix: `{entry['fix']}`")

    render.emit(result, human)


@app.command("show")
def show(name: str = typer.Argument(..., help="A policy.")) -> None:
    """Show a policy, the next run of each kind, and what uses it."""
    from dbsafe.services import inventory

    render.emit(inventory.show_policy(open_vault(), name), _show)


@app.command("list")
def list_() -> None:
    """List policies with the items that use them."""
    from dbsafe.services import inventory

    rows = inventory.list_policies(open_vault())

    def human(rs: list) -> None:
        short = {"keep_daily": "d", "keep_weekly": "w", "keep_monthly": "m", "keep_yearly": "y",
                 "keep_diff": "diff", "keep_log": "log"}
        shown = [{**r, "full": r["full"] if r["full"] == "daily"
                  else f"weekly {','.join(r['full_days'])}",
                  "diffs": ",".join(r["diff_days"]), "logs": r["log_every"] or "none",
                  "retention": " ".join(f"{v}{r[k]}" for k, v in short.items()
                                        if r[k] is not None),
                  "items": len(r["items_using"])} for r in rs]
        render.table(shown, ["name", "full", "full_time", "timezone", "diffs", "logs",
                             "retention", "recovery_model", "items"])

    render.emit(rows, human)


@app.command("delete")
def delete(name: str = typer.Argument(..., help="An unused policy.")) -> None:
    """Delete a policy no item uses (the default policy stays)."""
    from dbsafe.services import inventory

    inventory.delete_policy(open_vault(), name)
    render.emit({"deleted": name}, lambda d: render.out.print(f"deleted policy {name}"))
