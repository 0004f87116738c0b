"""The ``dbsafe`` command: global options, command registration, and error handling."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import platformdirs
import typer

from dbsafe.cli import audit_trail, render
from dbsafe.cli.commands import (
    access,
    agent,
    alerts,
    backup,
    drills,
    jobs,
    key,
    plan,
    points,
    policy,
    protect,
    prune,
    replicaset,
    restore,
    serve,
    server,
    softdelete,
    vault,
    verify,
)
from dbsafe.cli.context import options
from dbsafe.core.errors import DbsafeError

app = typer.Typer(help="dbsafe: a backup vault for PostgreSQL.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _global(vault_dir: Path = typer.Option(
        None, "--vault", envvar="DBSAFE_HOME",
        help="Vault folder (default: DBSAFE_HOME, else the user's data folder).")) -> None:
    options.vault = vault_dir


app.add_typer(vault.app, name="vault")
app.add_typer(key.app, name="key")
app.add_typer(server.app, name="server")
app.add_typer(agent.app, name="agent")
app.add_typer(policy.app, name="policy")
app.add_typer(replicaset.app, name="replicaset")
app.command("protect")(protect.protect)
app.command("unprotect")(protect.unprotect)
app.command("items")(protect.items)
app.command("discover")(server.discover)
app.command("backup")(backup.backup)
app.command("points")(points.points)
app.command("restore")(restore.restore)
app.command("verify")(verify.verify)
app.command("jobs")(jobs.jobs)
app.add_typer(jobs.app, name="job")
app.command("serve")(serve.serve)
app.add_typer(alerts.app, name="alerts")
app.add_typer(drills.app, name="drill")
app.command("drills")(drills.drills)
app.command("plan")(plan.plan)
app.command("delete-point")(prune.delete_point)
app.command("gc")(prune.gc)
# soft delete and immutability (issue 7) ------------------------------------------------------
app.command("undelete")(softdelete.undelete)
app.command("purge")(softdelete.purge)
vault.app.command("soft-delete")(softdelete.soft_delete)
vault.app.command("immutability")(softdelete.immutable)
# REST API and portal access (issue 8) ---------------------------------------------------------
app.add_typer(access.tokens, name="token")
app.add_typer(access.users, name="user")
app.command("audit")(access.audit)


def _log_path() -> Path:
    return Path(platformdirs.user_log_dir("dbsafe")) / "dbsafe.log"


def main() -> None:
    """Run the app; usage errors are Typer's (exit 2), ours print one line with their code.
    A command that changes something is written to the audit log (cli/audit_trail.py)."""
    argv = sys.argv[1:]
    outcome = "ok"
    try:
        app()
    except SystemExit as exc:
        if exc.code not in (0, None):
            outcome = f"exit.{exc.code}"
        raise
    except DbsafeError as exc:
        outcome = exc.code
        render.error(exc)
        sys.exit(exc.exit_status)
    except KeyboardInterrupt:
        render.err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: one line for the user, the traceback in the log
        log = _log_path()
        log.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(filename=log, level=logging.ERROR)
        logging.error("".join(traceback.format_exception(exc)))
        outcome = "internal"
        render.error(DbsafeError("internal", reason=f"{type(exc).__name__}: {exc} (log: {log})"))
        sys.exit(70)
    finally:
        if audit_trail.is_change(argv):
            audit_trail.record(argv, outcome)
