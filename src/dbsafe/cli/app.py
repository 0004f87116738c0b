"""The ``dbsafe`` command: global options, command registration, and error handling."""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from dbsafe.cli import audit_trail, render
from dbsafe.cli.context import checked_path, options
from dbsafe.core.errors import DbsafeError, os_error

# Click's base of usage errors as the Typer in use has it (newer Typers vendor their Click)
CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__
                                    if c.__name__ == "ClickException")


def json_first(args: list[str]) -> list[str]:
    """``args`` with its ``--json`` (each one before a ``--``, which ends the options) moved to
    the front, once."""
    end = args.index("--") if "--" in args else len(args)
    if "--json" not in args[:end]:
        return args
    return ["--json", *(a for a in args[:end] if a != "--json"), *args[end:]]


class _Dbsafe(TyperGroup):
    """The ``dbsafe`` group. ``--json`` is its option, global to every command, yet it may
    come anywhere on the command line (``dbsafe backup main --json``, as scripts and the docs
    write it): Click takes a group's options only before the command's name, so the group
    moves ``--json`` to the front of the arguments before parsing them (``json_first``).
    A ``--json`` is the option wherever it stands before a ``--``, also where an option would
    have taken it as its value."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Typer's Click's Context
        return super().parse_args(ctx, json_first(args))


def _global(vault_dir: Path = typer.Option(
        None, "--vault", envvar="DBSAFE_HOME", callback=checked_path,
        help="Vault folder (default: DBSAFE_HOME, else the user's data folder)."),
        json_output: bool = typer.Option(
            False, "--json",
            help="Print JSON: a command's result, an error as {\"error\": {\"code\", "
                 "\"message\", ...}}, usage errors too; `serve` and `agent run` log JSON "
                 "lines. Global: it may come anywhere on the command line, e.g. "
                 "`dbsafe backup main --json`.")) -> None:
    options.vault = vault_dir
    render.state.json = json_output


# Every command by name, in the order `dbsafe --help` lists them: (module in
# cli/commands, its command function or Typer group). A run imports the one module its
# command needs and converts only that command for Click: importing all 19 and converting
# ~90 commands cost ~35 ms of every start (scripts, schedulers and agents run many).
# `dbsafe --help`, a name not listed here (Click says what is wrong) and the tests that walk
# every command get them all (``whole``).
COMMANDS: dict[str, tuple[str, str]] = {
    "vault": ("vault", "app"), "key": ("key", "app"), "server": ("server", "app"),
    "agent": ("agent", "app"), "policy": ("policy", "app"),
    "replicaset": ("replicaset", "app"),
    "protect": ("protect", "protect"), "unprotect": ("protect", "unprotect"),
    "items": ("protect", "items"), "discover": ("server", "discover"),
    "backup": ("backup", "backup"), "points": ("points", "points"),
    "restore": ("restore", "restore"), "verify": ("verify", "verify"),
    # instant access (docs/instant-access.md)
    "instant": ("instant", "app"), "mount": ("instant", "mount"),
    "umount": ("instant", "umount"),
    "jobs": ("jobs", "jobs"), "job": ("jobs", "app"), "serve": ("serve", "serve"),
    "alerts": ("alerts", "app"), "drill": ("drills", "app"), "drills": ("drills", "drills"),
    "report": ("reports", "report"),
    "plan": ("plan", "plan"), "delete-point": ("prune", "delete_point"),
    "gc": ("prune", "gc"),
    # soft delete and immutability (`vault soft-delete`, `vault immutability`: vault.py)
    "undelete": ("softdelete", "undelete"), "purge": ("softdelete", "purge"),
    # REST API and portal access
    "token": ("access", "tokens"), "user": ("access", "users"), "audit": ("access", "audit"),
}


def build(names: Iterable[str] | None = None) -> typer.Typer:
    """The ``dbsafe`` app with the commands ``names`` (default: every one)."""
    made = typer.Typer(help="dbsafe: a backup vault for PostgreSQL.", no_args_is_help=True,
                       pretty_exceptions_enable=False, add_completion=False, cls=_Dbsafe)
    made.callback()(_global)
    for name in COMMANDS if names is None else names:
        module, attribute = COMMANDS[name]
        target = getattr(importlib.import_module(f"dbsafe.cli.commands.{module}"), attribute)
        if isinstance(target, typer.Typer):
            made.add_typer(target, name=name)
        else:
            made.command(name)(target)
    return made


@functools.cache
def whole() -> typer.Typer:
    """The app with every command."""
    return build()


def for_argv(argv: list[str]) -> typer.Typer:
    """The app ``argv`` needs: only its command, when it names one; else every command."""
    words = audit_trail.command_of(argv)
    if words and words[0] in COMMANDS and "--help" not in argv[:1]:
        return build(words[:1])
    return whole()


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # the whole app, as `typer.main.get_command(app)` and tests take it
        return whole()
    raise AttributeError(name)


def _log_path() -> Path:
    import platformdirs  # here: only a path left to the defaults needs it (~9 ms)

    return Path(platformdirs.user_log_dir("dbsafe")) / "dbsafe.log"


def _wants_json(argv: list[str]) -> bool:
    """``--json`` among the options (before a ``--`` that ends them), wherever it stands."""
    return json_first(argv)[:1] == ["--json"]


def _usage_error(exc: Exception) -> DbsafeError:
    """A usage error of Click's (an unknown or missing option, a value out of range) as the
    registry's ``usage.invalid``."""
    ctx = getattr(exc, "ctx", None)
    message: str = exc.format_message()  # type: ignore[attr-defined]  # a ClickException's
    details: dict[str, object] = {"reason": message.rstrip("."),
                                  "command": ctx.command_path if ctx else "dbsafe"}
    param = getattr(exc, "param", None)
    if param is not None:  # an option by its first flag, an argument by its NAME
        details["option"] = param.opts[0] if param.param_type_name == "option" else \
            param.human_readable_name
    return DbsafeError("usage.invalid", **details)


def _run(argv: list[str]) -> None:
    """The app; with ``--json``, a usage error is a JSON error object too (``usage.invalid``,
    exit 2) instead of Typer's box of text, which is for people."""
    app = for_argv(argv)
    if not _wants_json(argv):
        app()
        return
    render.state.json = True  # a usage error comes before the callback would set it
    try:
        status = app(standalone_mode=False)
    except CLICK_ERROR as exc:
        raise _usage_error(exc) from None
    except typer.Abort:
        render.err.print("aborted")
        sys.exit(1)
    if isinstance(status, int) and status:
        sys.exit(status)


def main() -> None:
    """Run the app; Typer's usage errors exit 2 (JSON with ``--json``), ours print one line
    with their code, an operating system's error is reported as what it is (not as dbsafe's
    bug). A command that changes something is written to the audit log
    (cli/audit_trail.py)."""
    argv = sys.argv[1:]
    outcome = "ok"
    try:
        _run(argv)
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
    except Exception as exc:  # one line for the user, the traceback in the log
        log = _log_path()
        log.parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(filename=log, level=logging.ERROR)
        logging.error("".join(traceback.format_exception(exc)))
        error = os_error(exc) or \
            DbsafeError("internal", reason=f"{type(exc).__name__}: {exc} (log: {log})")
        outcome = error.code
        render.error(error)
        sys.exit(error.exit_status)
    finally:
        if audit_trail.is_change(argv):
            audit_trail.record(argv, outcome)
