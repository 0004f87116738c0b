"""dbsafe agent run | start | stop | status"""

from __future__ import annotations

import typer

from dbsafe.cli import render
from dbsafe.cli.context import lazy, open_vault

daemon = lazy("dbsafe.agent.daemon")

app = typer.Typer(help="The resident agent that archives WAL into the vault.",
                  no_args_is_help=True)


@app.command("run")
def run(json: bool = typer.Option(False, "--json",
                                  help="Log lines as JSON (and an error as JSON).")) -> None:
    """Serve in the foreground (what `start` runs in the background)."""
    from dbsafe.agent.server import run as serve

    render.state.json = json
    serve(open_vault(), json_lines=json)


@app.command("start")
def start(json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Start the vault's agent in the background, unless it runs already."""
    render.state.json = json
    vault = open_vault()
    status = daemon.ensure_running(vault.path, vault.repo.config["vault_id"])
    render.emit(status, lambda s: render.out.print(f"agent running (pid {s['pid']})"))


@app.command("stop")
def stop(json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Stop the vault's agent (PostgreSQL keeps its WAL and retries until it is back)."""
    render.state.json = json
    stopped = daemon.stop(open_vault().repo.config["vault_id"])
    render.emit({"stopped": stopped},
                lambda s: render.out.print("agent stopped" if s["stopped"] else
                                           "no agent was running"))


@app.command("status")
def status(json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Whether the agent runs, and what it archived since it started."""
    render.state.json = json
    paths = daemon.agent_paths(open_vault().repo.config["vault_id"])
    answer = daemon.ping(paths) or {"ok": False}
    result = {"running": bool(answer.get("ok")), "socket": str(paths.socket),
              "log": str(paths.log), **{k: v for k, v in answer.items() if k != "ok"}}
    render.emit(result, render.fields)
