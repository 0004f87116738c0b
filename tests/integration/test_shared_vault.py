"""One vault shared by two agents: two clients, each in its own folder,
with one repository and one PostgreSQL catalog, register different servers and back them up
at the same time; garbage collection runs from one while the other backs up. Nothing is
lost, nothing corrupt, everything restores."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from conftest import Pg, Vault, catalog_dsn, new_cluster
from servers.fixtures import make_location

from dbsafe.storage import open_storage

REPOSITORIES = ["s3"]  # "folder" works the same (a folder both clients reach)


def _location(kind: str, area: Path, request: pytest.FixtureRequest) -> tuple[str, dict]:
    """One repository for both clients: a folder both reach, or a bucket on the S3 server."""
    if kind == "folder":
        return str(area / "repository"), {}
    where = make_location(kind, request, area)
    return where.location, where.env


@pytest.fixture(params=REPOSITORIES)
def shared(request, area: Path, cli_env: dict[str, str], pg_template: Path,
           catalog_cluster: Pg):
    location, extra_env = _location(request.param, area, request)
    env = {**cli_env, **extra_env}
    dsn = catalog_dsn(catalog_cluster, f"shared_{uuid.uuid4().hex[:10]}")
    a = Vault(area / "client-a", env)
    b = Vault(area / "client-b", env)
    info = a.ok("vault", "init", "--repository", location, "--catalog", dsn)
    assert info["catalog"]["backend"] == "postgresql"
    b.ok("vault", "connect", "--repository", location, "--catalog", dsn)
    a.ok("vault", "soft-delete", "--off")  # deleted points go at once: gc has work to do
    clusters = {}
    for name, scale in (("pga", "4"), ("pgb", "20")):
        pg = new_cluster(pg_template, area, name)
        pg.execute("CREATE DATABASE bench")
        pg.pgbench("-i", "-s", scale, "-q", dbname="bench")
        pg.execute("CHECKPOINT")
        clusters[name] = pg
    # A's rows are its own: its blocks become garbage once its point is deleted
    clusters["pga"].execute("UPDATE pgbench_accounts SET filler = md5(aid::text)", "bench")
    clusters["pga"].execute("CHECKPOINT")
    return a, b, clusters, location, env


def _finish(proc) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out, err)
    return json.loads(out)


def _writer_locks(location: str, env: dict[str, str]) -> list[str]:
    saved = dict(os.environ)
    os.environ.update(env)  # the object store's credentials
    try:
        storage = open_storage(location)
        return storage.names("locks")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_two_agents_back_up_at_once_and_gc_runs_beside_a_backup(shared, area: Path):
    a, b, clusters, location, env = shared
    pga, pgb = clusters["pga"], clusters["pgb"]
    a.add_server("sa", pga)
    b.add_server("sb", pgb)
    for client in (a, b):  # one catalog: each client sees both servers
        assert {s["name"] for s in client.ok("server", "list")} >= {"sa", "sb"}

    # both back up at the same moment into the one repository
    expected_a = pga.table_checksums()
    runs = [a.popen("backup", "sa", "--type", "full", "--json"),
            b.popen("backup", "sb", "--type", "full", "--json")]
    first_a, first_b = (_finish(p) for p in runs)
    for client in (a, b):
        assert [p["point_id"] for p in client.points("sa")] == [first_a["point_id"]]
        assert [p["point_id"] for p in client.points("sb")] == [first_b["point_id"]]

    # A drops its point and collects garbage again and again while B backs up: B's backup
    # deduplicates against A's packs (both clusters come from one template)
    pgb.execute("UPDATE pgbench_accounts SET abalance = abalance + 3 WHERE aid % 11 = 0",
                "bench")
    pgb.execute("CHECKPOINT")
    expected_b2 = pgb.table_checksums()
    second = b.popen("backup", "sb", "--type", "full", "--json")
    deadline = time.monotonic() + 60
    while not _writer_locks(location, env):  # B's writer lock is in the repository
        assert second.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    a.ok("delete-point", first_a["point_id"])
    runs_of_gc = [a.ok("gc")]  # at least one, even when B finished during delete-point
    while second.poll() is None:
        runs_of_gc.append(a.ok("gc"))
        time.sleep(0.2)
    second_b = _finish(second)
    final = a.ok("gc", "--wait", "60")
    assert final["tombstones_pending"] == 0 and final["unreadable_packs"] == [], final
    # gc started while B's writer lock was in the repository and had work to do then
    # (whether a run ends before or after B's backup depends on how long it repacks)
    assert runs_of_gc and sum(r["packs_marked"] for r in runs_of_gc) > 0, runs_of_gc
    jobs_seen_by_a = {(j["type"], j["server"]) for j in a.jobs()}
    assert ("backup", "sb") in jobs_seen_by_a  # B's jobs, through the shared catalog

    # nothing lost: B's points verify and restore; A backs up again and restores
    assert b.ok("verify", "sb")["ok"] is True
    b.restore_matches("sb", second_b["point_id"], expected_b2, area / "r2")
    again = a.backup("sa", "--type", "full")
    assert a.ok("verify", "sa")["ok"] is True
    b.restore_matches("sa", again["point_id"], expected_a, area / "r3")
    jobs = {(j["type"], j["server"], j["state"]) for j in b.jobs()}
    assert ("backup", "sa", "completed") in jobs and ("gc", None, "completed") in jobs
