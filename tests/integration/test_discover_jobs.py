"""``dbsafe discover`` and ``dbsafe jobs``."""

from __future__ import annotations

import pytest
from conftest import free_port, make_vault


def test_discover_lists_databases(src_vault, source):
    out = src_vault.ok("discover", "src")
    assert out["server"] == "src"
    assert out["recovery_model"] == "SIMPLE"  # archive_mode is off
    assert source.scalar("SHOW archive_mode") == "off"
    dbs = {d["name"]: d for d in out["databases"]}

    assert "template0" not in dbs
    assert {"postgres", "template1", "bench", "appdb", "ro_setting", "ro_noconn"} <= set(dbs)
    assert dbs["postgres"]["kind"] == "system" and dbs["template1"]["kind"] == "system"
    for name in ("bench", "appdb", "ro_setting", "ro_noconn"):
        assert dbs[name]["kind"] == "user", dbs[name]

    oids = dict(source.execute("SELECT datname, oid::bigint FROM pg_database"))
    for name, db in dbs.items():
        assert db["oid"] == oids[name]
        assert db["size_bytes"] > 0, db
        assert db["file_count"] > 0, db
        assert db["recovery_model"] == "SIMPLE", db
    # Sizes are PostgreSQL's own: the pgbench database is the big one.
    assert dbs["bench"]["size_bytes"] == source.scalar(
        "SELECT pg_database_size('bench')")
    assert dbs["bench"]["size_bytes"] > dbs["appdb"]["size_bytes"]

    assert dbs["ro_setting"]["read_only"] is True
    assert dbs["ro_noconn"]["read_only"] is True
    for name in ("postgres", "template1", "bench", "appdb"):
        assert dbs[name]["read_only"] is False, dbs[name]


@pytest.fixture(scope="module")
def job_runs(source, module_area, cli_env):
    """One backup, one restore and one verify in a fresh vault; returns (vault, results)."""
    vault = make_vault(cli_env, module_area / "vault")
    vault.add_server("src", source)
    backup = vault.backup("src")
    restore = vault.ok("restore", "src", "--point", backup["point_id"], "--to-pgdata",
                       module_area / "r", "--port", free_port())
    verify = vault.ok("verify", "src")
    return vault, {"backup": backup, "restore": restore, "verify": verify}


@pytest.mark.parametrize("kind", ["backup", "restore", "verify"])
def test_jobs_record_completed_work(job_runs, kind):
    vault, results = job_runs
    jobs = [j for j in vault.jobs() if j["type"] == kind]
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert job["server"] == "src"
    assert job["state"] == "completed", job
    assert job["error_code"] is None
    assert job["start_time"] and job["end_time"] and job["end_time"] >= job["start_time"]
    assert job["bytes_total"] > 0, job
    assert job["bytes_done"] == job["bytes_total"], (
        f"{kind} job finished with bytes_done {job['bytes_done']} of "
        f"bytes_total {job['bytes_total']}")
    assert job["result"] is not None


def test_job_sizes_match_the_work(job_runs):
    vault, results = job_runs
    jobs = {j["type"]: j for j in vault.jobs()}
    assert jobs["backup"]["id"] == results["backup"]["job_id"]
    assert jobs["backup"]["bytes_total"] == results["backup"]["bytes_read"]
    assert jobs["restore"]["bytes_total"] == results["restore"]["bytes_written"]
    assert results["verify"]["ok"] is True
