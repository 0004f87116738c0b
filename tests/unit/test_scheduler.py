"""The scheduler's decisions with a fake clock and a real catalog (SQLite and PostgreSQL):
due runs, catch-up once after downtime, no repeat after a restart, retry of a lost run, and
the per-server concurrency limit of the runner."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from dbsafe.catalog import open_catalog
from dbsafe.policy.model import Policy
from dbsafe.scheduler.clock import FakeClock
from dbsafe.scheduler.due import Work, due_work
from dbsafe.scheduler.runner import Runner

T0 = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)  # a Monday, 00:30 UTC
POLICY = Policy(name="nightly", full="daily", full_time="01:00", timezone="UTC",
                log_every=15, keep_daily=7, keep_log=7)


@pytest.fixture
def catalog(catalog_spec, tmp_path):
    catalog = open_catalog(catalog_spec, tmp_path)
    instance = catalog.add_server("db1", "localhost", None, {
        "pgdata": "/nowhere", "port": 1, "bin_dir": "/usr/lib/postgresql/15/bin",
        "pg_version": 15, "system_identifier": "1"})
    catalog.protect_items(instance, [("app", 16384), ("postgres", 5)], "nightly")
    catalog._run("UPDATE protected_databases SET since = ?", T0.isoformat())
    yield catalog
    catalog.close()


def due(catalog, now, busy=frozenset(), lost=lambda job_id: False):
    return {(w.kind, w.slot) for w in due_work(catalog, {"nightly": POLICY}, now, set(busy),
                                                 lost)}


def claim(catalog, now):
    works = due_work(catalog, {"nightly": POLICY}, now, set(), lambda j: False)
    for w in works:
        catalog.claim_slot(w.instance_id, w.policy, w.kind, w.slot.isoformat(), w.attempt)
        catalog.set_slot_job(w.instance_id, w.policy, w.kind, f"job-{w.kind}")
    return works


def test_first_runs_come_at_the_first_slots_after_protection(catalog):
    clock = FakeClock(T0)
    assert due(catalog, clock.now()) == set()  # nothing due at protection time
    clock.advance(minutes=16)  # 00:46: the 00:45 log slot
    assert due(catalog, clock.now()) == {("log", datetime(2026, 3, 2, 0, 45, tzinfo=UTC))}
    clock.advance(minutes=15)  # 01:01: the full and the 01:00 log slot
    assert due(catalog, clock.now()) == {("full", datetime(2026, 3, 2, 1, 0, tzinfo=UTC)),
                                         ("log", datetime(2026, 3, 2, 1, 0, tzinfo=UTC))}


def test_a_claimed_slot_is_not_repeated_and_downtime_is_caught_up_once(catalog):
    clock = FakeClock(T0)
    clock.advance(minutes=31)
    assert {w.kind for w in claim(catalog, clock.now())} == {"full", "log"}
    assert due(catalog, clock.now()) == set()  # a restart at the same time repeats nothing
    clock.advance(days=3)  # three nights missed: one full, one log
    runs = due(catalog, clock.now())
    assert runs == {("full", datetime(2026, 3, 5, 1, 0, tzinfo=UTC)),
                    ("log", datetime(2026, 3, 5, 1, 0, tzinfo=UTC))}


def test_a_lost_run_is_retried_once_while_it_is_the_latest_slot(catalog):
    clock = FakeClock(T0)
    clock.advance(minutes=31)
    works = due_work(catalog, {"nightly": POLICY}, clock.now(), set(), lambda j: False)
    full = next(w for w in works if w.kind == "full")
    catalog.claim_slot(full.instance_id, full.policy, "full", full.slot.isoformat())
    # serve stopped before the queued run started: its job id was never recorded
    again = due_work(catalog, {"nightly": POLICY}, clock.now(), set(), lambda j: j is None)
    retry = next(w for w in again if w.kind == "full")
    assert retry.slot == full.slot and retry.attempt == 2
    catalog.claim_slot(full.instance_id, full.policy, "full", full.slot.isoformat(), 2)
    third = due_work(catalog, {"nightly": POLICY}, clock.now(), set(), lambda j: True)
    assert "full" not in {w.kind for w in third}  # at most two attempts
    # queued or running in this process: never handed out twice
    assert "log" not in {w.kind for w in due_work(catalog, {"nightly": POLICY}, clock.now(),
                                                  {(full.instance_id, "log")}, lambda j: False)}


def test_stopped_items_and_items_without_a_policy_are_not_scheduled(catalog):
    clock = FakeClock(T0)
    clock.advance(hours=2)
    instance = catalog.get_server("db1")["instance_id"]
    for name in ("app", "postgres"):
        catalog.set_item(instance, name, state="stopped")
    assert due(catalog, clock.now()) == set()
    catalog.protect_items(instance, [("app", 16384)], None)
    assert due(catalog, clock.now()) == set()


class Recorder:
    """A runner's execute: records each run, which then waits until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[Work] = []
        self._lock = threading.Lock()

    def __call__(self, work: Work) -> None:
        with self._lock:
            self.started.append(work)
        self.release.wait(10)

    def wait_started(self, count: int) -> list[Work]:
        for _ in range(500):
            if len(self.started) >= count:
                break
            threading.Event().wait(0.02)
        return self.started


def test_runner_holds_the_per_server_limit_and_queues_the_rest():
    execute = Recorder()
    runner = Runner(execute, per_server=2, total=4)
    slot = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    works = [Work("a", 1, "p", kind, slot) for kind in ("full", "diff", "log", "drill")]
    works.append(Work("b", 2, "p", "full", slot))
    for w in works:
        runner.submit(w)
    started = execute.wait_started(3)
    assert sorted((w.server, w.kind) for w in started) == [("a", "diff"), ("a", "full"),
                                                           ("b", "full")]
    assert [w.kind for w in runner.queued()] == ["log", "drill"]
    assert runner.busy() == {w.key for w in works}
    execute.release.set()
    assert runner.join(10)
    assert runner.max_seen == {"a": 2, "b": 1}


def test_runs_of_agents_hosts_are_limited_per_host_not_by_the_total():
    """An agent's run is only followed here: ``total`` holds this host's runs, ``per_host``
    each agent's host's (a fleet's scheduled runs used to wait for one another)."""
    execute = Recorder()
    hosts = {"here1": None, "here2": None, "x1": "agent-x", "x2": "agent-x", "x3": "agent-x",
             "y1": "agent-y"}
    runner = Runner(execute, per_server=3, total=1, host_of=hosts.__getitem__, per_host=2)
    slot = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    for n, name in enumerate(hosts, 1):
        runner.submit(Work(name, n, "p", "full", slot))
    assert sorted(w.server for w in execute.wait_started(4)) == ["here1", "x1", "x2", "y1"]
    assert [w.server for w in runner.queued()] == ["here2", "x3"]
    execute.release.set()  # the queued ones start as the others end
    assert sorted(w.server for w in execute.wait_started(len(hosts))) == sorted(hosts)
    assert runner.join(10)


def test_a_slot_names_its_agents_job_while_it_runs(tmp_path):
    """A scheduled run queued for an agent goes on while the control plane restarts: from
    the moment it is queued its slot names its job, so a scheduler started meanwhile finds
    it running (not lost) and does not run the slot again; the slot still names it after."""
    import json

    from dbsafe.core.stamps import utcnow
    from dbsafe.scheduler.execute import Executor
    from dbsafe.scheduler.service import Scheduler
    from dbsafe.services.handle.vault_handle import Vault
    from dbsafe.services.inventory.policies import get_policy

    vault = Vault.init(tmp_path / "vault")
    catalog = vault.catalog
    instance = catalog.add_server("db1", "host-a", None, {
        "pgdata": "/nowhere", "port": 1, "bin_dir": "/usr/lib/postgresql/15/bin",
        "pg_version": 15, "system_identifier": "1", "recovery_model": "SIMPLE"})
    catalog.add_agent({"id": "a1", "host": "host-a", "secret_hash": "-",
                       "registered": utcnow(), "last_contact": utcnow()})
    catalog.update_server("db1", agent_id="a1")
    catalog.protect_items(instance, [("app", 16384)], "default")
    catalog._run("UPDATE protected_databases SET since = ?", T0.isoformat())
    clock = FakeClock(datetime(2026, 3, 2, 1, 0, 30, tzinfo=UTC))
    policies = {"default": get_policy(vault, "default")}
    (work,) = [w for w in due_work(catalog, policies, clock.now(), set(), lambda j: True)
               if w.kind == "full"]
    catalog.claim_slot(work.instance_id, work.policy, work.kind, work.slot.isoformat())
    run = threading.Thread(target=Executor(tmp_path / "vault", clock), args=(work,))
    run.start()
    try:
        job = None
        for _ in range(200):  # the agent's claim of the queued job
            job = catalog.claim_job("a1", utcnow())
            if job is not None:
                break
            threading.Event().wait(0.05)
        assert job is not None and job["trigger"] == "scheduled"
        assert catalog.get_slot(instance, "default", "full")["job_id"] == job["id"]
        restarted = Scheduler(tmp_path / "vault", clock, supervise_agent=False)
        try:
            assert "full" not in {w.kind for w in due_work(
                catalog, policies, clock.now(), set(), restarted._job_lost)}
        finally:
            restarted.vault.catalog.close()
    finally:
        if job is not None:  # the agent ends it
            catalog.update_job(job["id"], state="completed", end_time=utcnow(),
                               result=json.dumps({"point_id": "p1"}))
        run.join(30)
    assert not run.is_alive()
    state = catalog.get_slot(instance, "default", "full")
    assert (state["job_id"], state["attempts"]) == (job["id"], 1)


# the steps of serve and its lock (scheduler/steps.py, scheduler/service.py) ---------------

def test_a_failing_step_is_a_job_and_an_alert_until_a_clean_run(tmp_path):
    """Retention of a server (a catalog row: retention decides from the catalog and the
    vault, it never connects) whose items name a policy that does not exist, then two
    policies, then one."""
    from dbsafe.scheduler.execute import _retention_warnings
    from dbsafe.scheduler.steps import run_step
    from dbsafe.services.activity import alerts
    from dbsafe.services.activity.jobs import list_jobs
    from dbsafe.services.handle.vault_handle import Vault
    from dbsafe.services.lifecycle.expiry import apply_retention

    vault = Vault.init(tmp_path / "vault")
    instance = vault.catalog.add_server("db1", "localhost", None, {
        "pgdata": "/nowhere", "port": 1, "bin_dir": "/usr/lib/postgresql/15/bin",
        "pg_version": 15, "system_identifier": "1"})
    vault.catalog.protect_items(instance, [("app", 16384)], "gone")

    def retention() -> dict | None:
        return run_step(vault, "retention", "db1", lambda: apply_retention(vault, "db1", T0),
                        warnings_of=_retention_warnings)

    assert retention() is None
    (job,) = list_jobs(vault.catalog)
    assert (job["type"], job["server"], job["state"], job["trigger"], job["error_code"]) == \
        ("retention", "db1", "failed", "scheduled", "policy.unknown")
    (alert,) = alerts.list_alerts(vault.catalog)
    assert (alert["kind"], alert["server"], alert["item"], alert["job_id"]) == \
        ("step_failed", "db1", "retention", job["id"])
    assert alert["message"].startswith("retention of db1 failed: [policy.unknown]")

    # two policies on one instance: retention cannot tell which one keeps what
    vault.catalog.protect_items(instance, [("postgres", 5)], "default")
    assert retention()["skipped"]
    # a job of its own: it runs after each backup (the two may start in one millisecond,
    # so it is told from the first by its id, not by its place in the list)
    (newest,) = [j for j in list_jobs(vault.catalog) if j["id"] != job["id"]]
    assert newest["state"] == "completed_with_warnings" and newest["type"] == "retention"
    assert "no single policy" in newest["warnings"][0]["message"]
    (alert,) = alerts.list_alerts(vault.catalog)
    assert alert["count"] == 2 and "completed with warnings: retention did not run" in \
        alert["message"]

    vault.catalog.set_item(instance, "app", policy="default")
    assert retention()["expired"] == []
    assert alerts.list_alerts(vault.catalog) == []
    assert alerts.list_alerts(vault.catalog, "resolved")[0]["item"] == "retention"
    assert len(list_jobs(vault.catalog)) == 2  # a clean run that did nothing writes no job


def test_every_step_is_a_job_type_the_portal_filters_on():
    from dbsafe.scheduler.steps import STEPS
    from dbsafe.services.activity.jobs import TYPES

    assert set(STEPS) <= set(TYPES)


def test_a_step_of_every_pass_is_one_job_while_its_alert_stays(tmp_path):
    from dbsafe.scheduler.steps import run_step
    from dbsafe.services.activity import alerts
    from dbsafe.services.activity.jobs import list_jobs
    from dbsafe.services.handle.vault_handle import Vault
    from dbsafe.services.inventory.policies import get_policy

    vault = Vault.init(tmp_path / "vault")
    for _ in range(3):  # every few seconds: one job, one alert counted three times
        assert run_step(vault, "schedule", None, lambda: get_policy(vault, "gone")) is None
    (job,) = list_jobs(vault.catalog)
    assert job["type"] == "schedule" and job["error_code"] == "policy.unknown"
    (alert,) = alerts.list_alerts(vault.catalog)
    assert alert["count"] == 3 and alert["severity"] == "critical"
    assert run_step(vault, "schedule", None, lambda: get_policy(vault, "default")).name == \
        "default"
    assert alerts.list_alerts(vault.catalog) == []


def test_one_scheduler_per_catalog(tmp_path):
    """A second scheduler is refused: on this host by serve.lock (with the pid), and by the
    catalog's lock, which a scheduler of another client folder or host sharing a
    PostgreSQL catalog holds (here: another handle on this catalog holds it)."""
    from dbsafe.core.errors import DbsafeError
    from dbsafe.scheduler.service import Scheduler
    from dbsafe.services.handle.vault_handle import Vault

    Vault.init(tmp_path / "vault")
    first = Scheduler(tmp_path / "vault", supervise_agent=False)
    first.acquire()
    try:
        with pytest.raises(DbsafeError) as refused:
            Scheduler(tmp_path / "vault", supervise_agent=False).acquire()
        assert refused.value.code == "serve.already_running"
    finally:
        first.release()
    elsewhere = Vault.open(tmp_path / "vault")
    with elsewhere.exclusive("scheduler"):
        with pytest.raises(DbsafeError) as refused:
            Scheduler(tmp_path / "vault", supervise_agent=False).acquire()
        assert refused.value.code == "serve.scheduler_elsewhere"
    again = Scheduler(tmp_path / "vault", supervise_agent=False)
    again.acquire()  # both locks are free again
    again.release()
