"""Followers of agents' jobs woken by the catalog (services/fleet/follow.py): one LISTEN
connection per process on a PostgreSQL catalog, the job's own notifications only, the
connection closed once no one follows, and channels that work for every schema name the
catalog accepts. A real catalog cluster; the writes come from another catalog handle (its
own connections), as an agent's reach serve's."""

from __future__ import annotations

import threading
import uuid

import pytest
from conftest import catalog_dsn, wait_for

from dbsafe.catalog import open_catalog
from dbsafe.catalog.postgres import PostgresCatalog
from dbsafe.services.activity.jobs import Job, cancel_job
from dbsafe.services.fleet.follow import JobUpdates


@pytest.fixture
def two_handles(catalog_cluster):
    """Two handles on one fresh PostgreSQL catalog: the follower's and the writer's."""
    dsn = catalog_dsn(catalog_cluster, f"t_{uuid.uuid4().hex[:12]}")
    follower, writer = PostgresCatalog(dsn), PostgresCatalog(dsn)
    try:
        yield follower, writer
    finally:
        follower.close()
        writer.close()


def _listeners(catalog: PostgresCatalog) -> int:
    """Connections of this cluster listening on ``catalog``'s job updates channel."""
    rows = catalog._all("SELECT count(*) AS n FROM pg_stat_activity WHERE query = ?",
                        f'LISTEN "{catalog.job_updates_channel}"')
    return int(rows[0]["n"])


def test_a_follower_is_woken_by_a_write_on_its_job_and_not_by_others(two_handles):
    follower, writer = two_handles
    updates = JobUpdates.of(follower)
    assert updates is not None and JobUpdates.of(follower) is updates  # one per catalog
    with updates.watching("backup-1") as mine, updates.watching("backup-2") as other:
        assert mine is not None and other is not None
        writer.notify_job_update("backup-2")
        assert other.wait(30), "the follower of backup-2 was not woken"
        assert not mine.is_set(), "a write on another job woke the follower of backup-1"
        writer.notify_job_update("backup-1")
        assert mine.wait(30), "the follower of backup-1 was not woken"
    assert _listeners(writer) == 1  # both followers on one connection


def test_the_listening_connection_ends_once_no_one_follows(two_handles, monkeypatch):
    follower, writer = two_handles
    monkeypatch.setattr(JobUpdates, "IDLE_CLOSE", 0.2)
    updates = JobUpdates.of(follower)
    assert updates is not None
    with updates.watching("backup-1") as heard:
        assert heard is not None
        assert _listeners(writer) == 1
    wait_for(lambda: _listeners(writer) == 0, "the idle listener to close its connection")
    with updates.watching("backup-1") as heard:  # the next follower listens again
        assert heard is not None
        writer.notify_job_update("backup-1")
        assert heard.wait(30)


def test_channels_of_the_longest_schema_name_carry_notifications(catalog_cluster):
    """pg_notify refuses a channel name over 63 bytes: "dbsafe_job_updates_" and a
    63-character schema made one (the queued jobs' channel too)."""
    catalog = PostgresCatalog(catalog_dsn(catalog_cluster,
                                          "s" + (uuid.uuid4().hex * 2)[:62]))
    try:
        assert len(catalog.schema) == 63 and len(catalog.job_updates_channel) <= 63
        with catalog.listen_jobs() as jobs, catalog.listen_job_updates() as updates:
            catalog.notify_jobs("agent-1")
            catalog.notify_job_update("backup-1")
            assert [n.payload for n in jobs.notifies(timeout=30, stop_after=1)] == ["agent-1"]
            assert [n.payload for n in updates.notifies(timeout=30,
                                                        stop_after=1)] == ["backup-1"]
    finally:
        catalog.close()


def test_sqlite_has_no_listener_and_a_progress_write_says_a_cancel(tmp_path):
    """SQLite's followers look at the row on their own; on either backend a job's progress
    write answers whether a cancel was asked (the job stops with ``job.cancelled``)."""
    catalog = open_catalog("sqlite", tmp_path)
    try:
        assert JobUpdates.of(catalog) is None
        job = Job(catalog, "verify", None)
        with pytest.raises(Exception) as raised, job:
            job.expect(100)
            cancel_job(catalog, job.id)
            job.PROGRESS_INTERVAL = 0.0
            job.advance(10)
        assert getattr(raised.value, "code", None) == "job.cancelled"
        assert catalog.get_job(job.id)["state"] == "cancelled"
    finally:
        catalog.close()


def test_progress_advanced_by_threads_at_once_counts_every_byte(tmp_path):
    """Progress is written by one thread at a time, outside the job's lock: threads that
    advance meanwhile neither wait for the write nor write twice."""
    catalog = open_catalog("sqlite", tmp_path)
    try:
        with Job(catalog, "verify", None) as job:
            job.expect(4000)
            job.PROGRESS_INTERVAL = 0.0
            threads = [threading.Thread(target=lambda: [job.advance(1) for _ in range(1000)])
                       for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert job.progress() == (4000, 4000)
        row = catalog.get_job(job.id)
        assert (row["state"], row["bytes_done"], row["bytes_total"]) == ("completed", 4000, 4000)
    finally:
        catalog.close()
