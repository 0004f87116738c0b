"""Verify and restore drills of an agent's server run on the agent's host (docs/fleet.md,
*Verify and drills*): requested on the control plane (the CLI against the vault, the API),
run by the agent, with the same result as a run here; a drill whose agent is gone or
revoked ends failed with the reason, within the bound.

Real processes on loopback (tests/fleet_helpers.py): `dbsafe serve` listening for agents,
and a `dbsafe agent run` per simulated host with its own folder.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import make_vault, new_cluster
from fleet_helpers import LOST_AFTER, ControlPlane, agents_of

from dbsafe.scheduler.clock import FakeClock
from dbsafe.scheduler.due import Work
from dbsafe.scheduler.execute import Executor


@pytest.fixture
def fleet(area, cli_env):
    cp = ControlPlane(make_vault(cli_env, area / "cp"), area)
    with agents_of(cp, area) as add_agent:
        yield cp, add_agent


def _small_cluster(pg_template, area: Path, name: str):
    pg = new_cluster(pg_template, area, name)
    pg.execute("CREATE TABLE ledger (id int PRIMARY KEY, note text)")
    pg.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 500) g")
    pg.execute("VACUUM")
    return pg


class Lineage:
    """Watches /proc for postgres processes whose command line names a path in ``folder``
    and keeps each one's ancestors as first seen: while `pg_ctl start -w` waits, the new
    postmaster is still its child, and pg_ctl the child of whoever ran it."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder) + "/"
        self.seen: dict[int, list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Lineage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit() or int(proc.name) in self.seen:
                    continue
                try:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if self.folder in cmd and "postgres" in cmd:
                    self.seen[int(proc.name)] = _ancestors(int(proc.name))

    def started_by(self, pid: int) -> bool:
        return any(pid in chain for chain in self.seen.values())


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rpartition(")")[2].split()[1])
        chain.append(pid)
    return chain


def test_agent_verifies_and_drills_its_hosts_server(fleet, pg_template, area):
    cp, add_agent = fleet
    a = add_agent("host-a")
    remote = _small_cluster(pg_template, area, "remote")
    local = _small_cluster(pg_template, area, "local")
    cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", remote.pgdata,
                "--port", remote.port)
    cp.vault.add_server("here", local)
    full = cp.vault.backup("db1", "--type", "full")
    cp.vault.backup("here", "--type", "full")

    # verify on the CLI: the agent reads the repository; the same report as here
    checked = cp.vault.ok("verify", "db1")
    here = cp.vault.ok("verify", "here")
    assert checked["ok"] and [p["point_id"] for p in checked["points"]] == [full["point_id"]]
    assert set(checked) == set(here) | {"job_id"}
    assert set(checked["points"][0]) == set(here["points"][0])
    job = cp.vault.ok("job", "show", checked["job_id"])
    assert (job["type"], job["state"], job["agent_id"], job["host"]) == \
        ("verify", "completed", a.id, "host-a"), job
    assert job["bytes_done"] == job["bytes_total"] > 0  # its progress reached the row

    # a drill on the CLI: the scratch cluster is started by the agent's process
    scratch = area / "scratch"
    with Lineage(scratch) as lineage:
        drilled = cp.vault.ok("drill", "run", "db1", "--scratch-root", scratch)
    local_drill = cp.vault.ok("drill", "run", "here", "--scratch-root", scratch)
    assert drilled["state"] == "completed" and drilled["failed_check"] is None, drilled
    assert drilled["point_id"] == full["point_id"] and drilled["rto_seconds"] > 0
    assert set(drilled) == set(local_drill)
    assert [c["name"] for c in drilled["checks"]] == [c["name"] for c in local_drill["checks"]]
    assert all(c["ok"] for c in drilled["checks"]), drilled["checks"]
    job = cp.vault.ok("job", "show", drilled["id"])
    assert (job["type"], job["state"], job["agent_id"], job["host"], job["pid"]) == \
        ("drill", "completed", a.id, "host-a", a.proc.pid), job
    assert job["bytes_done"] == job["bytes_total"] > 0  # its restore's progress
    assert lineage.seen, "no scratch postmaster was seen"
    assert lineage.started_by(a.proc.pid), (a.proc.pid, lineage.seen)
    assert list(scratch.iterdir()) == []  # removed on the agent's host
    listed = cp.vault.ok("drills", "--server", "db1")
    assert [d["id"] for d in listed] == [drilled["id"]] and listed[0]["state"] == "completed"

    # the API: verify and a drill queued for the agent, followed to their end
    with cp.client("operator") as api:
        verify_id = api.post("/api/v1/servers/db1/verify", json={}).json()["job_id"]
        drill_id = _api_ended(api, "/api/v1/servers/db1/drills", verify_id)
    for job_id, kind in ((verify_id, "verify"), (drill_id, "drill")):
        job = cp.vault.ok("job", "show", job_id)
        assert (job["type"], job["state"], job["agent_id"]) == (kind, "completed", a.id), job


def _api_ended(api, drill_path: str, verify_id: str) -> str:
    """Wait for the verify to end, then start the drill and wait for it: its job id."""
    _wait_job(api, verify_id)
    started = api.post(drill_path, json={})
    assert started.status_code == 202, started.text
    drill_id = started.json()["job_id"]
    _wait_job(api, drill_id)
    return drill_id


def _wait_job(api, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running", "cancelling"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def test_a_drill_of_a_gone_or_revoked_agents_server_fails_with_the_reason(fleet, pg_template,
                                                                          area):
    cp, add_agent = fleet
    a = add_agent("host-a")
    pg = _small_cluster(pg_template, area, "remote")
    cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", pg.pgdata,
                "--port", pg.port)
    # refused here at once, as for a server of this host: no job, no drill_failed alert
    cp.vault.fail("drill.no_point", "drill", "run", "db1")
    cp.vault.fail("point.unknown", "verify", "db1", "--point", "nope")
    assert [j for j in cp.vault.jobs() if j["type"] in ("drill", "verify")] == []
    cp.vault.backup("db1", "--type", "full")

    a.kill()  # silent: its drill waits queued, then fails once the agent counts as lost
    started = time.monotonic()
    out = cp.vault.fail("job.agent_lost", "drill", "run", "db1", "--scratch-root",
                        area / "scratch")
    assert "host-a" in out["error"]["message"]
    assert time.monotonic() - started < 2 * LOST_AFTER + 10
    job = next(j for j in cp.vault.jobs() if j["type"] == "drill")
    assert (job["state"], job["error_code"], job["agent_id"]) == \
        ("failed", "job.agent_lost", a.id), job

    cp.vault.ok("agent", "revoke", a.id)  # revoked: refused at once, nothing queued
    started = time.monotonic()
    cp.vault.fail("agent.revoked", "drill", "run", "db1")
    cp.vault.fail("agent.revoked", "verify", "db1")
    assert time.monotonic() - started < 10
    assert [j["id"] for j in cp.vault.jobs() if j["type"] in ("drill", "verify")] == \
        [job["id"]]


def _damage_a_block(vault, point_id: str) -> str:
    """Flip a byte in the middle of a data block the point's restore reads: its id."""
    repo = vault.repository()
    zero = repo.keyed.digest(bytes(repo.block_size)).hex()
    wanted = {b for e in repo.load_manifest_whole(point_id)["files"] for b in e["blocks"]} - {zero}
    for f in sorted((vault.path / "index").iterdir()):
        doc = repo.load_index_file(f.name)
        for id_hex, offset, length, _raw, _codec in doc["blobs"]:
            if id_hex in wanted:
                pack = doc["pack"]
                with open(vault.path / "data" / pack[:2] / pack, "r+b") as data:
                    data.seek(offset + length // 2)
                    byte = data.read(1)
                    data.seek(offset + length // 2)
                    data.write(bytes([byte[0] ^ 0xFF]))
                return id_hex
    raise AssertionError("no data block of the point in the index")


def test_an_agents_failed_checks_report_what_they_found(fleet, pg_template, area):
    """A verify or drill that fails on the agent fails here with the same report (the
    failed job keeps it), and its drill row says which check failed."""
    cp, add_agent = fleet
    a = add_agent("host-a")
    pg = _small_cluster(pg_template, area, "remote")
    cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", pg.pgdata,
                "--port", pg.port)
    full = cp.vault.backup("db1", "--type", "full")
    block = _damage_a_block(cp.vault, full["point_id"])

    out = cp.vault.fail("verify.failed", "verify", "db1")
    (bad,) = out["report"]["points"]
    assert bad["point_id"] == full["point_id"] and not bad["ok"]
    assert [p["block_id"] for p in bad["problems"]] == [block]
    job = next(j for j in cp.vault.jobs() if j["type"] == "verify")
    assert (job["state"], job["error_code"], job["agent_id"]) == \
        ("failed", "verify.failed", a.id), job

    scratch = area / "scratch"
    out = cp.vault.fail("drill.check_failed", "drill", "run", "db1", "--scratch-root", scratch)
    report = out["report"]
    assert report["state"] == "failed" and report["failed_check"] == "restore", report
    assert "block" in next(c for c in report["checks"] if c["name"] == "restore")["reason"]
    assert next(c for c in report["checks"] if c["name"] == "cleanup")["ok"] is True
    assert list(scratch.iterdir()) == []
    listed = cp.vault.ok("drills", "--server", "db1")[0]
    assert (listed["id"], listed["state"], listed["failed_check"]) == \
        (report["id"], "failed", "restore")
    job = cp.vault.ok("job", "show", report["id"])
    assert (job["state"], job["error_code"], job["agent_id"]) == \
        ("failed", "drill.check_failed", a.id), job


def test_a_scheduled_drill_runs_on_the_agent(fleet, pg_template, area, monkeypatch):
    """The scheduler's run of a drill slot (run here in the test's process, as `serve`
    runs it) queues the drill for the server's agent and follows it to its end."""
    cp, add_agent = fleet
    a = add_agent("host-a")
    pg = _small_cluster(pg_template, area, "remote")
    cp.vault.ok("server", "add", "db1", "--agent", a.id, "--pgdata", pg.pgdata,
                "--port", pg.port)
    cp.vault.ok("policy", "create", "nightly", "--full", "daily", "--full-time", "00:00",
                "--log-every", "none")
    assert cp.vault.ok("protect", "db1", "--all", "--policy", "nightly")["databases"]
    full = cp.vault.backup("db1", "--type", "full")
    for key in ("XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                "DBSAFE_KEY_DIR"):
        monkeypatch.setenv(key, cp.vault.env[key])
    with sqlite3.connect(cp.vault.path / "catalog.sqlite") as db:
        (instance_id,) = db.execute("SELECT i.id FROM instances i JOIN servers s ON "
                                    "s.id = i.server_id WHERE s.name = 'db1'").fetchone()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    Executor(cp.vault.path, FakeClock(now))(Work("db1", instance_id, "nightly", "drill", now))

    (job,) = [j for j in cp.vault.jobs() if j["type"] == "drill"]
    assert (job["state"], job["agent_id"], job["host"], job["pid"]) == \
        ("completed", a.id, "host-a", a.proc.pid), job
    (drill,) = cp.vault.ok("drills", "--server", "db1")
    assert (drill["id"], drill["state"], drill["point_id"]) == \
        (job["id"], "completed", full["point_id"])
