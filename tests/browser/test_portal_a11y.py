"""The portal's main pages at a desktop's and a phone's width, checked for accessibility in a
real browser: tests/browser/a11y_pages.mjs (playwright-core from npm driving Debian's
chromium) visits each page at 1280x800 and at 390x844, runs axe-core on it (from npm,
injected from tools/node: nothing is fetched from a CDN), tabs through it from the top, and
at the phone's width measures whether the page as a whole scrolls sideways. On the
database's page it picks an instant on the restore timeline and a backup's mark with the
keyboard alone.

This file prepares a real cluster with a protected database, a full and a log backup (so
the timeline has marks and a band, the job pages content), a Backup Contributor (every
action form shows) and `dbsafe serve`; the script hands back one result per page visited,
which is checked here: no axe violation of impact serious or critical, no sideways scroll
at 390 px (a wide table scrolls inside itself), the navigation's links and the main
content's first control reached by Tab with a visible focus outline, the skip link.

Screenshots of every page at both widths go to tests/artefacts/browser/a11y/ (gitignored).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import secrets_guard
from conftest import run_cli
from portal_harness import serving, shop_cluster

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "tools" / "node" / "node_modules"
PLAYWRIGHT = NODE_MODULES / "playwright-core"
AXE = NODE_MODULES / "axe-core" / "axe.min.js"
CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = ROOT / "tests" / "artefacts" / "browser" / "a11y"
SCRIPT = Path(__file__).with_name("a11y_pages.mjs")
# minor by axe's measure, and fixed: a column of buttons has a header a screen reader reads
FAILING_RULES = {"empty-table-header"}
FLOW_SECONDS = 600
FAILING_IMPACTS = ("serious", "critical")
MIN_CHART_TEXT_PX = 9  # a chart's smallest text as drawn, at both widths (11 px by design)


@pytest.fixture
def serve(wal_vault, pg_template, area):
    """A cluster with a protected database (FULL model: its WAL archived), a full and a log
    backup of it; a Backup Contributor; `dbsafe serve` (no scheduler) on a free port.
    Yields (url, user, password, job id of the full backup)."""
    for need, what in ((PLAYWRIGHT, "playwright-core"), (AXE, "axe-core"),
                       (CHROMIUM, "chromium")):
        if not need.exists():
            pytest.fail(f"{what} is missing ({need}): run scripts/install.sh --test")
    pg = shop_cluster(pg_template, area)
    wal_vault.add_server("src", pg)
    wal_vault.ok("protect", "src", "--db", "shop", "--restart")
    wal_vault.backup("src")
    for i in range(2):  # a log band of a few seconds after the full, to step through
        time.sleep(2)
        pg.execute("INSERT INTO marks VALUES (%s, clock_timestamp())", "shop", (1000 + i,))
    wal_vault.backup("src", "--type", "log")
    job = next(j for j in wal_vault.jobs()
               if j["type"] == "backup" and j.get("backup_type") == "full")
    password = secrets.token_urlsafe(18)
    secrets_guard.register(password)
    out = run_cli({**wal_vault.env, "DBSAFE_USER_PASSWORD": password}, "user", "add", "ana",
                  "--role", "contributor", "--json", vault=wal_vault.path)
    assert out.returncode == 0, out.describe()
    with serving(wal_vault) as url:
        yield url, "ana", password, job["id"]


def _pages(job_id: str) -> list[tuple[str, str]]:
    """(name, path) of the pages to check, logged in; the login page is checked first."""
    return [("dashboard", "/"), ("databases", "/databases"), ("servers", "/servers"),
            ("server", "/servers/src"), ("database", "/servers/src/databases/shop"),
            ("restore", "/servers/src/restore?database=shop"), ("jobs", "/jobs"),
            ("job", f"/jobs/{job_id}"), ("policies", "/policies"),
            ("policy", "/policies/default"), ("alerts", "/alerts"), ("reports", "/reports"),
            ("planner", "/planner"), ("audit", "/audit"), ("settings", "/settings"),
            ("settings-alerts", "/settings/alerts"), ("settings-access", "/settings/access")]


def _violations(visit: dict) -> list[str]:
    return [f"{visit['viewport']} {visit['name']} ({visit['path']}): {v['id']} [{v['impact']}] "
            f"{v['help']}; {v['nodes']} node(s), e.g. {', '.join(v['targets'])}"
            for v in visit["violations"]
            if v["impact"] in FAILING_IMPACTS or v["id"] in FAILING_RULES]


def _keyboard_faults(visit: dict) -> list[str]:
    kb = visit["keyboard"]
    where = f"{visit['viewport']} {visit['name']} ({visit['path']})"
    faults = []
    if kb["nav_missed"]:
        faults.append(f"{where}: Tab never reached the navigation's {kb['nav_missed']}")
    if kb["main_first"] and kb["main_reached"] != kb["main_first"]:
        faults.append(f"{where}: Tab reached {kb['main_reached']} first in the main "
                      f"content, not its first control {kb['main_first']}")
    faults += [f"{where}: no visible focus outline on {el}" for el in kb["unmarked"]]
    skip = kb["skip"]
    if skip and not (skip["focused"] and skip["shown"] and skip["then"] == kb["main_first"]):
        faults.append(f"{where}: the skip link (first Tab, shown, then Enter and Tab to the "
                      f"main content's first control) failed: {skip}")
    return faults


def test_main_pages_accessible_at_desktop_and_phone_width(serve):
    url, user, password, job_id = serve
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    ARTEFACTS.mkdir(parents=True)
    pages = _pages(job_id)
    env = {**os.environ, "DBSAFE_URL": url, "DBSAFE_USER": user, "DBSAFE_PASSWORD": password,
           "PAGES": json.dumps(pages), "AXE": str(AXE), "ARTEFACTS": str(ARTEFACTS),
           "PLAYWRIGHT_CORE": str(PLAYWRIGHT)}
    # node and its chromium in a process group of their own: all of it goes if it hangs
    flow = subprocess.Popen(["node", str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = flow.communicate(timeout=FLOW_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(flow.pid, signal.SIGKILL)
        stdout, stderr = flow.communicate()
        pytest.fail(f"the browser run took over {FLOW_SECONDS} s:\n{stdout}{stderr}")
    finally:
        if flow.poll() is None:
            os.killpg(flow.pid, signal.SIGKILL)
            flow.wait()
    (ARTEFACTS / "run.log").write_text(stdout + stderr)  # every result, for a look
    assert flow.returncode == 0, stdout + stderr
    visits: list[dict] = []
    results: dict[str, object] = {}
    for line in stdout.splitlines():
        if line.startswith("@@result "):
            _, key, text = line.split(" ", 2)
            if key == "page":
                visits.append(json.loads(text))
            else:
                results[key] = json.loads(text)

    names = ["login"] + [name for name, _ in pages]
    for viewport in ("desktop", "phone"):
        assert [v["name"] for v in visits if v["viewport"] == viewport] == names
    for v in visits:
        assert v["status"] == 200, f"{v['viewport']} {v['name']}: HTTP {v['status']}"
        assert (ARTEFACTS / v["screenshot"]).stat().st_size > 0

    problems = [p for v in visits for p in _violations(v)]
    for v in visits:
        if v["viewport"] == "phone" and v["scroll_width"] > v["inner_width"] + 1:
            problems.append(f"phone {v['name']} ({v['path']}) scrolls sideways: "
                            f"{v['scroll_width']} px wide in {v['inner_width']}; sticking "
                            f"out: {', '.join(v['sticking_out']) or '?'}")
        problems += _keyboard_faults(v)
        if v["chart_text_px"] is not None and v["chart_text_px"] < MIN_CHART_TEXT_PX:
            problems.append(f"{v['viewport']} {v['name']} ({v['path']}): chart text drawn at "
                            f"{v['chart_text_px']} px, under {MIN_CHART_TEXT_PX}")
    assert not problems, "\n".join(problems)
    charted = {v["name"] for v in visits if v["chart_text_px"] is not None}
    assert {"dashboard", "reports"} <= charted, charted  # the measure saw the charts

    # the timeline, from the keyboard alone (at both widths)
    for viewport in ("desktop", "phone"):
        tl = results[f"timeline_{viewport}"]
        assert isinstance(tl, dict)
        band_start, band_end = tl["band_start"], tl["band_end"]
        assert tl["focused"] == "band", tl
        assert tl["focus_visible"], tl
        assert tl["home"] == band_start, tl
        assert tl["end"] == band_end, tl
        assert band_start <= tl["left"] < band_end, tl  # ← from the end: back into the band
        assert tl["valuetext"] == tl["left"], tl  # the slider says which instant
        assert tl["shown"].startswith("instant "), tl
        assert tl["mark_point"] and tl["picked_point"] == tl["mark_point"], tl
        assert tl["time_after_mark"] == "", tl
