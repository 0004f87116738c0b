"""dbsafe serve: the scheduler (and, later, the REST API and portal) in one process."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import timedelta

import typer

from dbsafe.cli import render
from dbsafe.cli.context import open_vault
from dbsafe.core.sdk_logging import quiet_sdk_loggers


def serve(per_server: int = typer.Option(3, "--max-per-server", min=1,
                                         help="Backups at a time per server (queued beyond); "
                                              "`dbsafe server set NAME --max-concurrent N` "
                                              "overrides it per server."),
          total: int = typer.Option(4, "--max-total", min=1, help="Runs at a time in all."),
          discover_hours: float = typer.Option(8.0, "--discover-every",
                                               help="Hours between discoveries."),
          tick: float = typer.Option(5.0, "--tick", help="Seconds between scheduler passes.",
                                     hidden=True),
          once: bool = typer.Option(False, "--once",
                                    help="One scheduler pass, wait for its runs, exit."),
          json: bool = typer.Option(False, "--json", help="Log lines as JSON.")) -> None:
    """Run the scheduler: scheduled backups, retention, discovery, health alerts, drills."""
    from dbsafe.scheduler.service import Scheduler

    render.state.json = json
    vault = open_vault()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s "
                        "%(message)s" if not json else
                        '{"time": "%(asctime)s", "logger": "%(name)s", "level": '
                        '"%(levelname)s", "message": %(message)r}')
    quiet_sdk_loggers()
    scheduler = Scheduler(vault.path, per_server=per_server, total=total, tick_seconds=tick,
                          discover_every=timedelta(hours=discover_hours))
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
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("dbsafe.scheduler").info("dbsafe serve: vault %s, pid %d", vault.path,
                                               os.getpid())
    scheduler.run(stop)
