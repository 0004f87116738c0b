"""dbsafe agent run | start | stop | status"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault

app = typer.Typer(help="The resident agent that archives WAL into the vault.",
                  no_args_is_help=True)


@app.command("run")
def run() -> None:
    """Serve in the foreground (what `start` runs in the background); with --json, log
    lines (and an error) are JSON."""
    from dbsafe.agent.server import run as serve

    serve(open_vault(), json_lines=render.state.json)


@app.command("start")
def start() -> None:
    """Start the vault's agent in the background, unless it runs already."""
    from dbsafe.agent import daemon

    vault = open_vault()
    status = daemon.ensure_running(vault.path, vault.repo.config["vault_id"])
    render.emit(status, lambda s: render.out.print(f"agent running (pid {s['pid']})"))


@app.command("stop")
def stop() -> None:
    """Stop the vault's agent (PostgreSQL keeps its WAL and retries until it is back)."""
    from dbsafe.agent import daemon

    stopped = daemon.stop(open_vault().repo.config["vault_id"])
    render.emit({"stopped": stopped},
                lambda s: render.out.print("agent stopped" if s["stopped"] else
                                           "no agent was running"))


@app.command("status")
def status() -> None:
    """Whether the agent runs, and what it archived since it started."""
    from dbsafe.agent import daemon

    paths = daemon.agent_paths(open_vault().repo.config["vault_id"])
    answer = daemon.ping(paths) or {"ok": False}
    result = {"running": bool(answer.get("ok")), "socket": str(paths.socket),
              "log": str(paths.log), **{k: v for k, v in answer.items() if k != "ok"}}
    render.emit(result, render.fields)
