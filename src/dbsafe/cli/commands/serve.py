"""dbsafe serve: the scheduler, the REST API and the portal in one process."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
from datetime import timedelta
from pathlib import Path

import typer

from dbsafe.cli import render
from dbsafe.cli.context import checked_path, open_vault
from dbsafe.core import bounds
from dbsafe.core.errors import DbsafeError
from dbsafe.core.sdk_logging import resident_logging

DEFAULT_PORT = 8270
AGENTS_PORT = 8271


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(per_server: int = typer.Option(3, "--max-per-server", min=bounds.RUNS_AT_A_TIME[0],
                                         max=bounds.RUNS_AT_A_TIME[1],
                                         help="Backups at a time per server (queued beyond); "
                                              "`dbsafe server set NAME --max-concurrent N` "
                                              "overrides it per server."),
          total: int = typer.Option(4, "--max-total", min=bounds.RUNS_AT_A_TIME[0],
                                    max=bounds.RUNS_AT_A_TIME[1],
                                    help="Runs at a time on this host."),
          per_host: int = typer.Option(4, "--max-per-host", min=bounds.RUNS_AT_A_TIME[0],
                                       max=bounds.RUNS_AT_A_TIME[1],
                                       help="Scheduled runs at a time on each agent's host "
                                            "(its agent runs them; this host only follows "
                                            "them, and they do not count in --max-total)."),
          discover_hours: float = typer.Option(8.0, "--discover-every", min=0, max=8760,
                                               help="Hours between discoveries."),
          tick: float = typer.Option(5.0, "--tick", min=0.01, max=3600,
                                     help="Seconds between scheduler passes.", hidden=True),
          once: bool = typer.Option(False, "--once",
                                    help="One scheduler pass, wait for its runs, exit "
                                         "(no API or portal)."),
          host: str = typer.Option("127.0.0.1", "--host", help="Address of the API and portal."),
          port: int = typer.Option(DEFAULT_PORT, "--port", min=bounds.PORT[0], max=bounds.PORT[1]),
          tls_cert: Path = typer.Option(None, "--tls-cert", callback=checked_path,
                                        help="PEM certificate (HTTPS)."),
          tls_key: Path = typer.Option(None, "--tls-key", callback=checked_path,
                                       help="PEM private key (HTTPS)."),
          insecure: bool = typer.Option(False, "--insecure",
                                        help="Serve plain HTTP off loopback, with no TLS "
                                             "anywhere."),
          behind_tls_proxy: bool = typer.Option(
              False, "--behind-tls-proxy",
              help="A proxy in front does TLS: serve plain HTTP to it, give the portal's "
                   "cookies the Secure flag."),
          forwarded_allow_ips: str = typer.Option(
              "", "--forwarded-allow-ips",
              help="Addresses of your proxies (comma-separated IPs or networks): their "
                   "X-Forwarded-For and X-Forwarded-Proto are believed, nobody else's."),
          allowed_host: list[str] = typer.Option(
              [], "--allowed-host",
              help="A host name the portal is opened by (repeat for more); besides "
                   "localhost, 127.0.0.1, ::1 and --host, any other Host is refused "
                   "(DNS rebinding)."),
          scheduler_on: bool = typer.Option(True, "--scheduler/--no-scheduler",
                                            help="Run the scheduler too (off: API and portal "
                                                 "only, e.g. a second host)."),
          agents_host: str = typer.Option(
              None, "--agents-host",
              help="Listen for agents of other hosts on this address (HTTPS; e.g. 0.0.0.0): "
                   "a fleet (docs/fleet.md). Off by default: one machine needs none."),
          agents_port: int = typer.Option(AGENTS_PORT, "--agents-port", min=bounds.PORT[0],
                                          max=bounds.PORT[1],
                                          help="Port of the agents' HTTPS listener."),
          agent_lost_after: float = typer.Option(60.0, "--agent-lost-after", min=1,
                                                 max=3600, hidden=True,
                                                 help="Seconds without a report before an "
                                                      "agent's job is failed as lost."),
          agents_url: str = typer.Option(
              None, "--agents-url",
              help="The address agents reach this control plane by, as the registration "
                   "command shows it (default: https://<this host's name>:<agents port>).")
          ) -> None:
    """Run the scheduler (scheduled backups, retention, discovery, health alerts, drills), the
    REST API (/api/v1, /openapi.json) and the portal (/) in one process; with --json, log
    lines are JSON."""
    from dbsafe.scheduler.service import Scheduler

    if (tls_cert is None) != (tls_key is None):
        raise DbsafeError("serve.tls_files")
    if not once and tls_cert is None and not (insecure or behind_tls_proxy) \
            and not _loopback(host):
        raise DbsafeError("serve.tls_needed", host=host)
    proxies = _proxies(forwarded_allow_ips)
    vault = open_vault()
    vault.check_usable()  # a rewritten config refused at open, an index moved aside here
    resident_logging(json_lines=render.state.json)
    scheduler = Scheduler(vault.path, per_server=per_server, total=total, per_host=per_host,
                          tick_seconds=tick,
                          discover_every=timedelta(hours=discover_hours),
                          agent_lost_after=timedelta(seconds=agent_lost_after))
    if once:
        scheduler.acquire()
        try:
            started = scheduler.tick()
            scheduler.runner.join()
        finally:
            scheduler.release()
        render.emit([{"server": w.server, "kind": w.kind, "slot": w.slot.isoformat()}
                     for w in started], lambda r: render.out.print(f"{len(r)} run(s)"))
        return
    stop = threading.Event()
    log = logging.getLogger("dbsafe.scheduler")
    log.info("dbsafe serve: vault %s, pid %d", vault.path, os.getpid())
    loop = threading.Thread(target=scheduler.run, args=(stop,), name="scheduler")
    if scheduler_on:
        scheduler.acquire()  # refused at once when another scheduler runs; held to the end
        loop.start()
    gateway = None
    if agents_host is not None:
        gateway = _serve_agents(vault, agents_host, agents_port, agents_url, tls_cert, tls_key,
                                agent_lost_after)
    try:
        _serve_http(vault.path, host, port, tls_cert, tls_key,
                    secure_cookies=tls_cert is not None or behind_tls_proxy, proxies=proxies,
                    allowed_hosts=allowed_host)
    finally:
        stop.set()
        if gateway is not None:
            gateway.should_exit = True
        if loop.is_alive():
            loop.join()
        scheduler.release()


def gateway_config(app, host: str, port: int, tls_cert: Path, tls_key: Path):  # noqa: ANN001
    """uvicorn's settings for the agents' listener: idle connections kept longer than an
    agent reuses one (api/fleet_gateway.py ``IDLE_KEEP_SECONDS``)."""
    import uvicorn

    from dbsafe.api.fleet_gateway import IDLE_KEEP_SECONDS

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          timeout_keep_alive=IDLE_KEEP_SECONDS, ssl_certfile=str(tls_cert),
                          ssl_keyfile=str(tls_key), timeout_graceful_shutdown=5)


def _serve_agents(vault, host: str, port: int, url: str | None, tls_cert: Path | None,
                  tls_key: Path | None, lost_after: float):
    """The agents' HTTPS listener, in a thread of its own (docs/fleet.md). Its address and
    certificate fingerprint are recorded for `dbsafe agent token create` to show."""
    import uvicorn

    from dbsafe.api.fleet_gateway import create_gateway
    from dbsafe.web.tls import fingerprint, self_signed

    if tls_cert is None or tls_key is None:
        tls_cert, tls_key = self_signed(vault.path / "tls", [host])
    vault.settings["agents"] = {"url": url or f"https://{socket.getfqdn()}:{port}",
                                "fingerprint": fingerprint(tls_cert.read_bytes())}
    vault.save_settings()
    server = uvicorn.Server(gateway_config(create_gateway(vault, lost_after), host, port,
                                           tls_cert, tls_key))
    threading.Thread(target=server.run, name="agents-api", daemon=True).start()
    logging.getLogger("dbsafe.fleet").info("agents' API on https://%s:%d/ (%s)", host, port,
                                           vault.settings["agents"]["fingerprint"])
    return server


def _proxies(text: str) -> list[str]:
    """The proxies whose forwarding headers are believed (none unless given: uvicorn's own
    default would believe any local process)."""
    found = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise DbsafeError("serve.forwarded_ips", value=part) from None
    return found


def _serve_http(vault_path: Path, host: str, port: int, tls_cert: Path | None,
                tls_key: Path | None, *, secure_cookies: bool, proxies: list[str],
                allowed_hosts: list[str]) -> None:
    """uvicorn in this thread until SIGINT/SIGTERM."""
    import uvicorn

    from dbsafe.api.hosts import AllowedHosts
    from dbsafe.cli.web_app import create_app

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            """Stop serving, then end with status 0 like any clean stop (uvicorn's own
            handler re-raises the signal once stopped, so a SIGTERM'd service would end
            "killed")."""
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    app = create_app(vault_path, secure_cookies=secure_cookies,
                     hosts=AllowedHosts.for_serving(host, allowed_hosts))
    scheme = "https" if tls_cert else "http"
    logging.getLogger("dbsafe.api").info("portal and API on %s://%s:%d/ (API /api/v1, "
                                         "OpenAPI /openapi.json)", scheme, host, port)
    Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          ssl_certfile=str(tls_cert) if tls_cert else None,
                          ssl_keyfile=str(tls_key) if tls_key else None,
                          proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None,
                          timeout_graceful_shutdown=10)).run()
