"""dbsafe agent run | start | stop | status · register · token create · list | show | revoke

On one machine the agent archives WAL into the vault (`serve` starts it). In a fleet
(docs/fleet.md) `dbsafe agent register` makes it the agent of this host for a control
plane, and `dbsafe agent run` then also runs the jobs the control plane queues for this
host's servers. `token create`, `list`, `show` and `revoke` are the control plane's."""

from __future__ import annotations

from pathlib import Path

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_path, open_vault, vault_path

app = typer.Typer(help="The agent: WAL archiving here, and a fleet's agents (docs/fleet.md).",
                  no_args_is_help=True)
tokens = typer.Typer(help="One-time registration tokens for agents of other hosts.",
                     no_args_is_help=True)
app.add_typer(tokens, name="token")


@app.command("run")
def run(jobs: int = typer.Option(2, "--jobs", min=1, max=16,
                                 help="Jobs run at once (a registered agent)."),
        spool_max_mib: int = typer.Option(
            4096, "--spool-max-mib", min=0, max=1 << 30,
            help="Bound of the WAL spool that keeps WAL while the repository cannot be "
                 "reached (docs/wal-spool.md); 0: no spool, PostgreSQL keeps it in pg_wal."),
        spool_after: float = typer.Option(
            60.0, "--spool-after", min=0.1, max=3600,
            help="Seconds a WAL file waits for the repository before the spool takes it.")
        ) -> None:
    """Serve in the foreground (what `start` runs in the background); with --json, log
    lines (and an error) are JSON. A registered agent (`dbsafe agent register`) runs the
    jobs its control plane queues for this host."""
    from dbsafe.agent import enrolment

    if enrolment.registered():
        from dbsafe.agent.fleet_run import run_registered

        run_registered(enrolment.load(), jobs, json_lines=render.state.json,
                       spool_max_mib=spool_max_mib, spool_after=spool_after)
        return
    from dbsafe.agent.server import run as serve

    serve(open_vault(), json_lines=render.state.json, spool_max_mib=spool_max_mib,
          spool_after=spool_after)


@app.command("register")
def register(url: str = typer.Argument(..., help="The control plane's agents' address "
                                                 "(https://HOST:8271)."),
             token: str = typer.Option(..., "--token", envvar="DBSAFE_AGENT_TOKEN",
                                       help="The one-time registration token."),
             fingerprint: str = typer.Option(None, "--fingerprint",
                                             help="The control plane's certificate "
                                                  "fingerprint (sha256:…), printed with the "
                                                  "token."),
             ca_file: Path = typer.Option(None, "--ca-file", callback=checked_path,
                                          help="A CA that signed the control plane's "
                                               "certificate (instead of --fingerprint)."),
             host: str = typer.Option(None, "--host",
                                      help="This host's name (default: its host name)."),
             force: bool = typer.Option(False, "--force",
                                        help="Replace this host's registration.")) -> None:
    """Make this host's agent the agent of a control plane (run as root on the VM)."""
    from dbsafe.agent import enrolment

    result = enrolment.register(url, token, fingerprint_given=fingerprint, ca_file=ca_file,
                                host=host, force=force)
    render.emit(result, lambda r: render.out.print(
        f"registered: agent {r['agent_id']} of host {r['host']} with {r['url']} (vault "
        f"{r['vault_id']}); start it: `dbsafe agent run` (under systemd)"))


@tokens.command("create")
def token_create(host: str = typer.Option(None, "--host",
                                          help="Only the agent of this host may use it."),
                 minutes: int = typer.Option(60, "--expires", min=1, max=24 * 60,
                                             help="Minutes it may be used in."),
                 url: str = typer.Option(None, "--url",
                                         help="The control plane's agents' address, as the "
                                              "command shows it (default: the one `serve "
                                              "--agents-host` recorded).")) -> None:
    """A one-time registration token, and the command to run on the VM with it."""
    from dbsafe.services import fleet, operations

    row = fleet.registration_token(open_vault(), operations.cli_principal().name, host,
                                   minutes, url)

    def human(r: dict) -> None:
        render.out.print(f"registration token {r['id']} (expires {r['expires']}"
                         + (f", for host {r['host']}" if r["host"] else "") + "); on the VM, "
                         "as root:\n" + render.escape(r["command"]))
        if r["note"]:
            render.out.print(f"[yellow]note[/yellow]: {render.escape(r['note'])}")
    render.emit(row, human)


@app.command("list")
def list_() -> None:
    """The agents of this control plane, with their state and servers."""
    from dbsafe.services import fleet

    rows = fleet.list_agents(open_vault())
    render.emit(rows, lambda r: render.table(
        [{**a, "servers": ", ".join(a["servers"])} for a in r],
        ["id", "host", "state", "version", "last_contact", "servers"]))


@app.command("show")
def show(agent_id: str = typer.Argument(..., help="The agent's id (`agent list`).")) -> None:
    """One agent."""
    from dbsafe.services import fleet

    render.emit(fleet.show_agent(open_vault(), agent_id), render.fields)


@app.command("revoke")
def revoke(agent_id: str = typer.Argument(..., help="The agent's id (`agent list`).")) -> None:
    """Cut an agent off: its calls are refused from now on, its queued jobs fail."""
    from dbsafe.services import fleet

    row = fleet.revoke(open_vault(), agent_id)
    render.emit(row, lambda r: render.out.print(
        f"agent {r['id']} (host {r['host']}) revoked at {r['revoked']}"))


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

    stopped = daemon.stop(_vault_id())
    render.emit({"stopped": stopped},
                lambda s: render.out.print("agent stopped" if s["stopped"] else
                                           "no agent was running"))


@app.command("status")
def status() -> None:
    """Whether the agent runs, and what it archived since it started."""
    from dbsafe.agent import daemon

    paths = daemon.agent_paths(_vault_id())
    answer = daemon.ping(paths) or {"ok": False}
    result = {"running": bool(answer.get("ok")), "socket": str(paths.socket),
              "log": str(paths.log), **{k: v for k, v in answer.items() if k != "ok"}}
    render.emit(result, render.fields)


def _vault_id() -> str:
    """The vault's id, from what this client pinned when it can (no need to reach the
    repository, which may be what is away)."""
    from dbsafe.services.handle import Vault

    return Vault.pinned_id(vault_path()) or open_vault().repo.config["vault_id"]
