"""The portal in a real browser: Playwright (playwright-core from npm,
driving Debian's chromium) runs tests/browser/restore_flow.mjs against `dbsafe serve` over
a real vault and a real PostgreSQL cluster. This file prepares them, does what the script
asks between its steps (write rows after the full backup), and checks that the database the
wizard restored holds exactly the rows committed up to the instant picked on the timeline.

Screenshots of every page visited go to tests/artefacts/browser/restore-flow/ (gitignored).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import secrets_guard
from conftest import run_cli
from portal_harness import serving, shop_cluster

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT = ROOT / "tools" / "node" / "node_modules" / "playwright-core"
CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = ROOT / "tests" / "artefacts" / "browser" / "restore-flow"  # its own: others' stay
SCRIPT = Path(__file__).with_name("restore_flow.mjs")
ROWS = 60
ROW_EVERY = 0.5  # seconds between committed rows: the instant picked falls among them
FLOW_SECONDS = 900


@pytest.fixture
def serve(wal_vault, pg_template, area):
    """A cluster with a database to protect, registered; a portal user; `dbsafe serve` (no
    scheduler) on a free port. Yields (url, user, password, cluster)."""
    for need, what in ((PLAYWRIGHT, "playwright-core"), (CHROMIUM, "chromium")):
        if not need.exists():
            pytest.fail(f"{what} is missing ({need}): run scripts/install.sh --test")
    pg = shop_cluster(pg_template, area)
    wal_vault.add_server("src", pg)
    password = secrets.token_urlsafe(18)
    secrets_guard.register(password)
    out = run_cli({**wal_vault.env, "DBSAFE_USER_PASSWORD": password}, "user", "add", "dba",
                  "--role", "operator", "--json", vault=wal_vault.path)
    assert out.returncode == 0, out.describe()
    with serving(wal_vault) as url:
        yield url, "dba", password, pg


def _write_rows(pg) -> None:
    """One row per transaction, ROW_EVERY apart, after the full backup."""
    with pg.connect("shop") as conn:
        for i in range(ROWS):
            conn.execute("INSERT INTO marks VALUES (%s, clock_timestamp())", (1000 + i,))
            time.sleep(ROW_EVERY)


def test_restore_an_instant_picked_on_the_timeline(serve, wal_vault):
    url, user, password, pg = serve
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True)
    env = {**os.environ, "DBSAFE_URL": url, "DBSAFE_USER": user, "DBSAFE_PASSWORD": password,
           "DBSAFE_SERVER": "src", "DBSAFE_DATABASE": "shop", "ARTEFACTS": str(ARTEFACTS),
           "PLAYWRIGHT_CORE": str(PLAYWRIGHT)}
    flow = subprocess.Popen(["node", str(SCRIPT)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1)
    results: dict[str, str] = {}
    log: list[str] = []
    deadline = time.monotonic() + FLOW_SECONDS
    try:
        for line in flow.stdout:
            log.append(line.rstrip())
            if line.startswith("@@step "):
                step = line.split()[1]
                if step == "write-rows":
                    _write_rows(pg)
                flow.stdin.write("ok\n")
                flow.stdin.flush()
            elif line.startswith("@@result "):
                _, key, value = line.rstrip().split(" ", 2)
                results[key] = value
            assert time.monotonic() < deadline, "the browser flow took too long"
        flow.wait(60)
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()
    stderr = flow.stderr.read()
    assert flow.returncode == 0, "\n".join(log) + "\n" + stderr
    assert sorted(p.name for p in ARTEFACTS.glob("*.png"))  # the screenshots are there

    # the restored database holds the rows committed up to the instant picked
    picked = datetime.fromisoformat(results["picked"].replace("Z", "+00:00"))
    rows = dict(pg.execute("SELECT id, at FROM marks", "shop"))
    with psycopg.connect(host=str(pg.sockdir), port=pg.port, dbname=results["new_name"],
                         user="postgres", autocommit=True) as conn:
        restored = {r[0] for r in conn.execute("SELECT id FROM marks")}
    expected = {i for i, at in rows.items() if at <= picked}
    # a row written within a moment of the instant may commit on either side of it
    unsure = {i for i, at in rows.items() if abs((at - picked).total_seconds()) < 0.2}
    assert restored - unsure == expected - unsure
    written = {i for i in rows if i >= 1000}
    assert written & restored and written - restored, (
        f"the instant {picked} should fall among the rows written after the full")
