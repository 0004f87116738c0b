"""The README's "Every command takes `--json`": every command of the Typer app has the
option, and with it prints JSON on stdout — here its error, run against a folder that holds
no vault (a command that needs none prints its result)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest
import typer

from dbsafe.cli import app as cli
from dbsafe.cli import render

# Commands that take no --json, and why (none today; docs and README say every command).
WITHOUT_JSON: dict[str, str] = {}
# Options some commands need before they look for a vault (one of several, checked by the
# command itself: a usage error is another issue's JSON).
NEEDED = {"restore": ["--point", "x", "--as-files", "x"]}


def _commands(command, path=()):
    if hasattr(command, "commands"):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


ROOT = typer.main.get_command(cli.app)
COMMANDS = dict(_commands(ROOT))


def _placeholder(param) -> str:
    kind = type(param.type).__name__
    if kind == "Choice":
        return param.type.choices[0]
    return "1" if kind in ("IntParamType", "IntRange", "FloatParamType", "FloatRange") else "x"


def test_every_command_takes_json():
    # --json is the root's option (global), or a command's own
    lacking = sorted(name for name, command in COMMANDS.items()
                     if not any("--json" in getattr(p, "opts", ())
                                for p in (*ROOT.params, *command.params)))
    assert lacking == sorted(WITHOUT_JSON)
    assert len(COMMANDS) > 60  # the walk reached the subcommands


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - set(WITHOUT_JSON)))
def test_a_command_with_json_prints_json(name, tmp_path, monkeypatch):
    command = COMMANDS[name]
    args = []
    for param in command.params:
        if param.required:
            kind = type(param).__name__
            args += [_placeholder(param)] if kind.endswith("Argument") else \
                [param.opts[0], _placeholder(param)]
    argv = ["--vault", str(tmp_path / "none"), *name.split(), *args, *NEEDED.get(name, ()),
            "--json"]
    monkeypatch.setattr(sys, "argv", ["dbsafe", *argv])
    monkeypatch.setattr(render.state, "json", False)  # what an earlier command left
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main()  # an error exits; a command that succeeds (vault init) may return
    printed = json.loads(out.getvalue())
    assert isinstance(printed, (dict, list)), out.getvalue()
    if isinstance(printed, dict) and "error" in printed:
        assert printed["error"]["code"] and printed["error"]["message"]


def test_log_lines_of_serve_and_the_agent_are_json():
    """`serve --json` and `agent run --json`: one JSON object a line, whatever the message
    holds (a format string quoting it with %r wrote Python's repr, not JSON)."""
    import logging

    from dbsafe.core.sdk_logging import JsonLines

    record = logging.LogRecord("dbsafe.scheduler", logging.ERROR, __file__, 1,
                               'retention of "main" failed: it\'s %s', ("bad",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonLines().format(record))
    assert line["message"] == 'retention of "main" failed: it\'s bad'
    assert line["logger"] == "dbsafe.scheduler" and line["level"] == "ERROR"
    assert "ValueError: boom" in line["traceback"]


def test_a_run_loads_only_the_module_of_its_command():
    """``dbsafe backup …`` imports cli/commands/backup.py alone (cli/app.py, COMMANDS);
    ``dbsafe --help`` and a mistyped name get every command."""
    probe = ("import sys; from dbsafe.cli import app; "
             "made = app.for_argv(['--vault', '/v', 'backup', 'main', '--json']); "
             "import typer; print(sorted(typer.main.get_command(made).commands)); "
             "print(sorted(m for m in sys.modules if m.startswith('dbsafe.cli.commands.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["['backup']", "['dbsafe.cli.commands.backup']"], out
    assert set(typer.main.get_command(cli.for_argv(["--help"])).commands) == set(cli.COMMANDS)
    assert set(typer.main.get_command(cli.for_argv(["backp", "x"])).commands) == \
        set(cli.COMMANDS)
    assert set(ROOT.commands) == set(cli.COMMANDS)
