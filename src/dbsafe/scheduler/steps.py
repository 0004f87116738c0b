"""The steps ``dbsafe serve`` runs besides backups and drills — retention, purge, garbage
collection, discovery, health checks, the WAL agent, scheduling itself — and what one that
fails leaves behind: a job that says so and an alert, never only a log line.

A step that raises is a failed job: the job it started that failed (a ``purge``, the
``delete`` of expired points), or else a job of the step's own type (``retention``, ...)
recorded with the error. A step that ends with warnings (a discovery that the limits keep
from protecting new databases) is a job ``completed_with_warnings`` with their text. Either
raises the alert ``step_failed`` keyed (server, step) — the server is None for the steps of
the whole vault — and the step's next clean run resolves it.

The frequent steps — those of every pass (health checks, the agent, scheduling: every few
seconds) and discovery (retried at every pass while it fails) — record a job only when their
alert is raised anew; while it stays active a repeat only counts on the alert (``count``,
``last_seen``), so a step that keeps failing is one job and one alert.
docs/alerts.md lists the steps and what a failure of each means.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dbsafe.core.errors import DbsafeError
from dbsafe.core.stamps import utcnow
from dbsafe.services import activity
from dbsafe.services.activity import failure, job_started, record_job
from dbsafe.services.handle import Vault

log = logging.getLogger("dbsafe.scheduler")
T = TypeVar("T")


@dataclass(frozen=True)
class Step:
    name: str
    severity: str
    consequence: str          # what stays undone while it fails, and what to do
    frequent: bool = False    # runs, or is retried, at every pass of the scheduler


STEPS = {s.name: s for s in (
    Step("retention", "warning",
         "expired points stay and the log chain is not pruned, so the vault keeps growing; "
         "it runs again after the next scheduled backup of the server"),
    Step("purge", "warning",
         "soft-deleted points past their retention stay in the vault; `dbsafe purge` runs "
         "it now"),
    Step("gc", "warning",
         "blocks that no point uses any more are not reclaimed; `dbsafe gc` runs it now"),
    Step("discovery", "warning",
         "new, dropped and renamed databases are not noticed and auto-protection takes no "
         "new one; `dbsafe discover NAME` runs it now", frequent=True),
    Step("health-check", "warning",
         "the conditions those checks watch raise no alert until they run again; "
         "`dbsafe alerts check` runs them now", frequent=True),
    Step("agent", "warning",
         "the WAL of servers in the FULL model is not archived while the agent is down; "
         "see `dbsafe agent status`", frequent=True),
    Step("fleet", "warning",
         "jobs whose agent fell silent are not failed and silent agents raise no alert "
         "until it runs again; see `dbsafe agent list`", frequent=True),
    Step("schedule", "critical",
         "no scheduled backup of the servers concerned runs until it is fixed",
         frequent=True),
)}


def run_step(vault: Vault, name: str, server: str | None, action: Callable[[], T], *,
             warnings_of: Callable[[T], list[str]] = lambda result: []) -> T | None:
    """Run one step; its result, or None when it failed (recorded and alerted, see the
    module's docstring). ``warnings_of`` reads the warnings out of its result."""
    step = STEPS[name]
    catalog = vault.catalog
    started = utcnow()
    own_jobs: list[str] = []
    token = job_started.set(own_jobs.append)
    active = repeat = False
    try:
        # read first: a step that runs fine (nearly always) writes nothing
        active = (activity.STEP_FAILED, server, name) in activity.active_keys(catalog)
        repeat = active and step.frequent
        result = action()
    except Exception as exc:  # noqa: BLE001 - recorded and alerted, never lost
        _failed(vault, step, server, exc, started, own_jobs, repeat)
        return None
    finally:
        job_started.reset(token)
    try:
        warnings = warnings_of(result)
        if warnings:
            job_id = None if repeat else record_job(
                catalog, name, server, started=started,
                result={"server": server, "warnings": [{"message": w} for w in warnings]})
            _alert(vault, step, server, "completed with warnings: " + "; ".join(warnings),
                   {"warnings": warnings}, job_id, severity="warning")
        elif active:
            activity.resolve_alerts(catalog, activity.STEP_FAILED, server=server, item=name)
    except Exception:  # noqa: BLE001 - the catalog itself fails: the log is all that is left
        log.exception("%s of %s: its outcome could not be recorded", name, server or "vault")
    return result


def _failed(vault: Vault, step: Step, server: str | None, exc: Exception, started: str,
            own_jobs: list[str], repeat: bool) -> None:
    where = server or "the vault"
    if isinstance(exc, DbsafeError):
        log.warning("%s of %s failed: [%s] %s", step.name, where, exc.code, exc.message)
    else:  # a bug: its traceback goes to the log, its one line to the job and the alert
        log.exception("%s of %s failed", step.name, where)
    try:
        catalog = vault.catalog
        job_id = next((j for j in own_jobs
                       if (catalog.get_job(j) or {}).get("state") == "failed"), None)
        if job_id is None and not repeat:
            job_id = record_job(catalog, step.name, server, started=started, error=exc)
        ended = failure(exc)
        _alert(vault, step, server,
               f"failed: [{ended['error_code']}] {ended['error_message']}",
               {"error_code": ended["error_code"], "error_message": ended["error_message"]},
               job_id)
    except Exception:  # noqa: BLE001 - the catalog itself fails: the log is all that is left
        log.exception("%s of %s: its failure could not be recorded", step.name, where)


def _alert(vault: Vault, step: Step, server: str | None, what: str, details: dict,
           job_id: str | None, severity: str | None = None) -> None:
    """Raise (or, while active, repeat) the step's alert; a repeat without a job of its
    own leaves the alert's ``job_id`` at the last one recorded."""
    subject = f"{step.name} of {server}" if server else step.name
    if job_id is not None:
        details = {**details, "job_id": job_id}
    activity.raise_alert(vault.catalog, activity.STEP_FAILED, severity or step.severity,
                       f"{subject} {what}; {step.consequence}", server=server,
                       item=step.name, details={"step": step.name, **details}, job_id=job_id)
