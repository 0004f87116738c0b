#!/usr/bin/env python3
"""20,000 protected databases in one vault (ten servers of 2,000) against 2,000 (one
server): listing, the scheduler's planning pass, retention and the portal's lists, each
timed at both sizes, so that "still fast" is a ratio.

Run from the checkout (no PostgreSQL cluster needed; wrk for the portal part:
``bash scripts/install.sh --bench``):

    .venv/bin/python bench/vault_scale.py [--shapes 1x2000,10x2000] [--days 90]
        [--repeat 5] [--slow-repeat 2] [--retention-repeat 3] [--profile]
        [--portal all|largest|none] [--portal-duration 15s] [--clients 20]
        [--work DIR] [--keep]

e.g. ``--shapes 1x2000,1x5000,10x2000 --work /var/tmp/dbsafe-bench/vs --profile`` adds one
server of 5,000 (a raised per-server limit) and keeps the seeded vaults for the next run.

Method:

1. Seeds one vault per shape (SERVERSxDATABASES) with bench/portal_load.py's ``seed``
   (imported, not copied): every database protected with the policy "daily" (weekly full,
   daily differentials, a log backup every 15 minutes, logs kept 35 days), 90 days of
   points, WAL records and jobs per server, a few alerts; and, in the repository, a
   manifest per point and a record per WAL file (portal_load's ``write_repository``), so
   that the listings which reconcile the catalog with the repository (``points.reconcile``,
   ``archive.reconcile_wal``) keep every row. Each measurement checks what it lists. Seeded
   vaults are kept in ``--work DIR`` and reused when given again.
2. Listing, each a fresh ``dbsafe --json`` process (as an administrator runs it; so each
   reconciles the catalog with the repository once): ``server list``, ``items`` (every
   protected database of the vault), ``points srv-00`` (one server's 90 days), ``jobs``
   (the 50 newest). ``--repeat`` runs each: median and max wall seconds.
3. The scheduler, in this process, on one vault handle as ``dbsafe serve`` keeps one: a
   ``scheduler.service.Scheduler`` whose runner only records what it is handed (no
   backup runs) and whose ``claim_slot`` is not written (so every pass finds the same
   work), ``Scheduler._schedule`` (what every 5-second tick runs to decide which backups
   are due: the items, the policies, ``due.due_work``) at the instant just after the next
   log slot, when every server's log backup is due; the tick's choice of servers to
   discover (``_to_discover``); and the health check's per-database part that runs every
   minute (``monitor.overdue_checks`` of every server). The first call (which reconciles
   the handle) is reported apart from the median of the ``--repeat`` after it
   (``--slow-repeat`` when the first took more than 10 s).
4. Retention, as a scheduled run does it after each backup (``scheduler/execute.py``
   ``_maintain``): for each server, a fresh vault handle and
   ``lifecycle.expiry.apply_retention`` at a fixed instant. It has no mode that decides
   without deleting, so it runs on a COPY of the seeded vault per repetition (the
   catalog and the small files copied; ``manifests/`` and ``wal/`` hard-linked: dbsafe
   writes an object to a temporary name and renames it, and deletes by unlinking, so the
   seeded vault is never touched). Pass 1 expires what the seed holds beyond the policy
   (55 of the 90 days of log points, their WAL); pass 2, right after, finds nothing to
   expire (the decision alone); pass 3, 15 minutes later, expires one log point per
   server (its WAL stays until the log chain's base moves, daily): what every run after a
   scheduled log backup does in steady state. ``points.reconcile`` on a fresh handle
   (every run's first listing) is timed apart.
5. The portal: bench/portal_load.py on the seeded vault (``--vault``: serve
   ``--no-scheduler``, wrk at 20 clients on the dashboard, the database list and the API
   item list; targets p95 <= 300 ms pages, <= 100 ms API).

``--profile`` runs each in-process pass over 1 s once more under cProfile (retention: both
passes of the first server, on one more copy) and keeps its top functions in the results.

The machine's load average is recorded before and after each part (a shared machine makes
timings noisy: compare ratios of one run). Results: a table on stdout (median and max
seconds per shape; for each shape after the first, the ratio of its median to the first
shape's, and that ratio over the growth in databases (of the vault; of a server for the
rows "per server"): above 1 grows worse than linearly),
the p95 of each portal URL per shape, and bench/results/vault-scale-<UTC time>.json.
Everything lives in /var/tmp/dbsafe-bench/vault-scale-<UTC time> and is removed at the end
unless ``--keep`` or ``--work``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
# bench/profile.py is named like the stdlib module cProfile imports: this folder goes last
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
import portal_load  # noqa: E402  (its seeding, reused)

ROOT = HERE.parent
RESULTS = HERE / "results"
BASE = Path("/var/tmp/dbsafe-bench")
SLOW_SECONDS = 10.0
PROFILE_SECONDS = 1.0
CLI = {"server list": ("server", "list"), "items": ("items",),
       "points srv-00": ("points", "srv-00"), "jobs": ("jobs",)}


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summary(runs: list[float], first: float | None = None) -> dict:
    out = {"median": round(statistics.median(runs), 4), "max": round(max(runs), 4),
           "runs": [round(r, 4) for r in runs]}
    if first is not None:
        out["first"] = round(first, 4)
    return out


def timed(action: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = action()
    return time.perf_counter() - t0, result


def profiled(action: Callable[[], object], top: int = 12) -> list[dict]:
    """The functions ``action`` spent most time in (own time), by one run under cProfile
    (imported here: this folder's profile.py is last on sys.path, see above)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(action)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return [{"function": f"{'/'.join(Path(f).parts[-2:])}:{line}({name})", "calls": nc,
             "own_s": round(tt, 3), "cumulative_s": round(ct, 3)}
            for (f, line, name), (_cc, nc, tt, ct, _callers) in rows]


# --- seeding ------------------------------------------------------------------------------

def parse_shape(text: str) -> tuple[int, int]:
    servers, _, dbs = text.lower().partition("x")
    return int(servers), int(dbs)


def seeded_vault(work: Path, servers: int, dbs: int, days: int, alerts: int) -> dict:
    """The shape's vault in ``work``, seeded now unless an earlier run left it there."""
    shape = f"{servers}x{dbs}"
    vault_dir = work / f"vault-{shape}"
    record = work / f"seeded-{shape}.json"
    if record.exists() and vault_dir.exists():
        info = json.loads(record.read_text())
        log(f"{shape}: reusing {vault_dir} (seeded in {info['seconds']} s)")
        info["reused"] = True
    else:
        if vault_dir.exists():  # a seeding that did not finish
            shutil.rmtree(vault_dir)
        log(f"{shape}: seeding {servers} servers x {dbs} databases, {days} days")
        seconds, counts = timed(lambda: portal_load.seed(vault_dir, servers, dbs, days,
                                                         alerts))
        info = {"counts": counts, "seconds": round(seconds, 1), "load": load()}
        record.write_text(json.dumps(info) + "\n")
        log(f"{shape}: seeded in {info['seconds']} s: {counts}")
        info["reused"] = False
    info["catalog"] = {**portal_load.catalog_counts(vault_dir),
                       "bytes": portal_load.catalog_bytes(vault_dir)}
    info["vault"] = str(vault_dir)
    return info


def seed_end(vault_dir: Path) -> datetime:
    """The seed's last 15-minute slot: every server's last backup job started then (a log
    backup that failed on purpose has a job, not a point)."""
    db = sqlite3.connect(vault_dir / "catalog.sqlite")
    try:
        (last,) = db.execute("SELECT max(start_time) FROM jobs WHERE type = 'backup'"
                             ).fetchone()
    finally:
        db.close()
    return datetime.fromisoformat(last).astimezone(UTC)


# --- listing --------------------------------------------------------------------------------

def listed(out: object) -> int | None:
    """How many rows a listing's JSON holds (its ``total`` when it pages)."""
    if isinstance(out, list):
        return len(out)
    if isinstance(out, dict):
        if "total" in out:
            return int(out["total"])
        for key in ("items", "servers", "jobs", "points"):
            if isinstance(out.get(key), list):
                return len(out[key])
    return None


def cli_listing(vault_dir: Path, repeat: int) -> dict:
    results = {}
    for name, args in CLI.items():
        runs, size, count = [], 0, None
        for _ in range(repeat):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "dbsafe", "--vault", str(vault_dir),
                                   "--json", *args], capture_output=True, text=True)
            runs.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"dbsafe {' '.join(args)} failed ({proc.returncode}): "
                                 f"{proc.stdout[-1000:]}{proc.stderr[-2000:]}")
            size, count = len(proc.stdout), listed(json.loads(proc.stdout))
        results[name] = {**summary(runs), "bytes": size, "rows": count}
        log(f"  dbsafe {' '.join(args)}: median {results[name]['median']:.3f} s, "
            f"{count} rows, {size / 1e6:.1f} MB")
    return results


# --- the scheduler ----------------------------------------------------------------------------

class RecordingRunner:
    """Stands for scheduler.runner.Runner: nothing queued or running, nothing run."""

    def __init__(self) -> None:
        self.submitted: list = []

    def busy(self) -> set:
        return set()

    def submit(self, work) -> None:
        self.submitted.append(work)


def scheduling(vault_dir: Path, now: datetime, repeat: int, slow_repeat: int, servers: int,
               profile: bool) -> dict:
    from dbsafe.scheduler.service import Scheduler
    from dbsafe.services.activity import alerts
    from dbsafe.services.operations.monitor import overdue_checks

    sched = Scheduler(vault_dir, supervise_agent=False)
    runner = RecordingRunner()
    sched.runner = runner  # type: ignore[assignment]
    claims: list[tuple] = []
    catalog = sched.vault.catalog
    catalog.claim_slot = lambda *a, **k: claims.append(a)  # type: ignore[method-assign]
    out: dict = {"now": now.isoformat()}
    try:
        def plan() -> int:
            runner.submitted.clear()
            due, missing = sched._schedule(now)
            if missing:
                raise SystemExit(f"the scheduler could not read a policy: {missing}")
            return len(due)

        def to_discover() -> int:
            return len(sched._to_discover(now))

        def ages() -> int:
            active = alerts.active_keys(catalog)
            return sum(len(overdue_checks(sched.vault, s, now, active))
                       for s in catalog.list_servers())

        for name, action, expect in (("plan (Scheduler._schedule)", plan, servers),
                                     ("discovery due (_to_discover)", to_discover, servers),
                                     ("backup age (overdue_checks, all)", ages, None)):
            first, count = timed(action)
            runs = []
            for _ in range(repeat if first < SLOW_SECONDS else slow_repeat):
                seconds, again = timed(action)
                runs.append(seconds)
                if again != count:
                    raise SystemExit(f"{name}: {count} then {again}")
            if expect is not None and count != expect:
                raise SystemExit(f"{name}: {count}, expected {expect}")
            out[name] = {**summary(runs, first), "count": count}
            if profile and out[name]["median"] > PROFILE_SECONDS:
                out[name]["profile"] = profiled(action)
            log(f"  {name}: first {first:.3f} s, median {out[name]['median']:.3f} s "
                f"({count})")
        out["due"] = sorted({f"{w.server}:{w.kind}" for w in runner.submitted})
    finally:
        catalog.close()
    return out


# --- retention --------------------------------------------------------------------------------

LINKED = ("manifests", "wal")  # written by rename, deleted by unlink: safe to hard-link


def clone(vault_dir: Path, copy: Path) -> None:
    """A copy retention may change: the bulk of the objects hard-linked, the rest copied."""
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir()
    for entry in vault_dir.iterdir():
        if entry.name in LINKED and entry.is_dir():
            subprocess.run(["cp", "-al", str(entry), str(copy / entry.name)], check=True)
        elif entry.is_dir():
            shutil.copytree(entry, copy / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, copy / entry.name)


def server_names(vault_dir: Path) -> list[str]:
    db = sqlite3.connect(vault_dir / "catalog.sqlite")
    try:
        return [r[0] for r in db.execute("SELECT name FROM servers WHERE kind = 'server' "
                                         "ORDER BY name")]
    finally:
        db.close()


def retention(vault_dir: Path, work: Path, now: datetime, repeat: int,
              profile: bool) -> dict:
    from dbsafe.services.handle.vault_handle import Vault
    from dbsafe.services.lifecycle.expiry import apply_retention
    from dbsafe.services.lifecycle.points import reconcile

    names = server_names(vault_dir)
    # (label, instant): the seed's surplus; nothing left; one slot later, one log point
    # per server expires, as after every scheduled log backup in steady state
    instants = {"pass 1 (expires 55 days)": now, "pass 2 (nothing to expire)": now,
                "pass 3 (+15 min: 1 point/server)": now + portal_load.SLOT}
    passes: dict[str, dict] = {label: {} for label in instants}
    totals: dict[str, list[float]] = {k: [] for k in passes}
    per_server: dict[str, list[float]] = {k: [] for k in passes}
    reconciles = []
    profiles: dict[str, list[dict]] = {}
    for r in range(repeat):
        copy = work / "retention-copy"
        clone(vault_dir, copy)
        before = portal_load.catalog_counts(copy)
        vault = Vault.open(copy)  # what every run's first listing does first (no change)
        try:
            reconciles.append(timed(functools.partial(reconcile, vault))[0])
        finally:
            vault.catalog.close()
        for label in passes:
            total = 0.0
            expired = wal = 0
            for name in names:
                vault = Vault.open(copy)  # a fresh handle per run, as the executor opens
                try:
                    seconds, result = timed(functools.partial(apply_retention, vault, name,
                                                              instants[label]))
                finally:
                    vault.catalog.close()
                if result.get("skipped"):
                    raise SystemExit(f"retention of {name} skipped: {result['skipped']}")
                total += seconds
                per_server[label].append(seconds)
                expired += len(result["expired"])
                wal += (result["wal"] or {}).get("wal_files_deleted", 0)
            totals[label].append(total)
            passes[label] = {"points_expired": expired, "wal_files_deleted": wal}
            log(f"  retention {label}, copy {r + 1}: {total:.1f} s for {len(names)} servers, "
                f"{expired} points and {wal} WAL files expired")
        after = portal_load.catalog_counts(copy)
        shutil.rmtree(copy)
    if profile:  # both passes of the first server, on one more copy
        copy = work / "retention-copy"
        clone(vault_dir, copy)
        for label in passes:
            vault = Vault.open(copy)
            try:
                profiles[label] = profiled(functools.partial(apply_retention, vault, names[0],
                                                             instants[label]))
            finally:
                vault.catalog.close()
        shutil.rmtree(copy)
    if passes["pass 2 (nothing to expire)"]["points_expired"]:
        raise SystemExit("retention's second pass expired points: the first left some")
    out = {"servers": len(names), "catalog_before": before, "catalog_after": after,
           "reconcile (fresh handle)": summary(reconciles)}
    for label, figures in passes.items():
        out[f"retention {label}, all servers"] = {**summary(totals[label]), **figures}
        out[f"retention {label}, per server"] = {
            **summary(per_server[label]),
            **({"profile": profiles[label]} if label in profiles else {})}
    return out


# --- the portal ----------------------------------------------------------------------------

def portal(vault_dir: Path, duration: str, clients: int, keep: bool) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "portal_load.py"), "--vault",
                           str(vault_dir), "--duration", duration, "--clients", str(clients)],
                          capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    path = next((ln.split(": ", 1)[1] for ln in lines if ln.startswith("results: ")), None)
    kept = next((ln.split(": ", 1)[1].split(" ")[0] for ln in lines
                 if ln.startswith("kept: ")), None)
    if kept and not keep and Path(kept).is_dir() and Path(kept).parent == BASE:
        shutil.rmtree(kept)  # portal_load keeps its folder (serve.log) when given --vault
    if path is None:
        raise SystemExit(f"portal_load gave no result ({proc.returncode}): "
                         f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    result = json.loads(Path(path).read_text())
    return {"results": path, "exit_status": proc.returncode,
            "catalog_unchanged": result.get("catalog_unchanged"),
            "not_measured": result.get("not_measured"),
            "urls": {name: {k: r[k] for k in ("path", "clients", "p50_ms", "p95_ms", "p99_ms",
                                              "max_ms", "requests_per_second", "errors")}
                     for name, r in result.get("load", {}).items()},
            "first_request": result.get("first_request")}


# --- the run ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", default="1x2000,10x2000",
                   help="SERVERSxDATABASES, comma-separated; the first is the reference")
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--alerts", type=int, default=5,
                   help="servers whose last log backup failed (portal_load's --alerts)")
    p.add_argument("--repeat", type=int, default=5, help="runs of each listing and pass")
    p.add_argument("--slow-repeat", type=int, default=2,
                   help="runs after the first of an in-process pass whose first run took "
                        f"more than {SLOW_SECONDS:.0f} s")
    p.add_argument("--profile", action="store_true",
                   help="one more run of each in-process pass that took more than "
                        f"{PROFILE_SECONDS:.0f} s under cProfile: its top functions into the "
                        "results")
    p.add_argument("--retention-repeat", type=int, default=3,
                   help="copies of each vault retention runs on")
    p.add_argument("--portal", choices=("all", "largest", "none"), default="all",
                   help="run bench/portal_load.py on every shape, the largest, or none")
    p.add_argument("--portal-duration", default="15s")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--work", type=Path, default=None,
                   help="keep the seeded vaults here and reuse those found (kept)")
    p.add_argument("--keep", action="store_true", help="keep the run's folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shapes = [parse_shape(s) for s in args.shapes.split(",")]
    if args.portal != "none" and shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: bash scripts/install.sh --bench, or --portal none")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = args.work or BASE / f"vault-scale-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"time": stamp, "commit": portal_load.git_commit(), "cpus": os.cpu_count(),
                    "options": {k: (str(v) if isinstance(v, Path) else v)
                                for k, v in vars(args).items()},
                    "load_start": load(), "shapes": {}}
    largest = max(range(len(shapes)), key=lambda i: shapes[i][0] * shapes[i][1])
    try:
        for i, (servers, dbs) in enumerate(shapes):
            shape = f"{servers}x{dbs}"
            entry: dict = {"servers": servers, "databases": servers * dbs}
            result["shapes"][shape] = entry
            entry["seed"] = seeded_vault(work, servers, dbs, args.days, args.alerts)
            vault_dir = Path(entry["seed"]["vault"])
            # just after the next log slot: every server's log backup is due
            now = seed_end(vault_dir) + portal_load.SLOT + timedelta(minutes=1)
            entry["load"] = {"before": load()}
            log(f"{shape}: listing")
            entry["listing"] = cli_listing(vault_dir, args.repeat)
            entry["load"]["after listing"] = load()
            log(f"{shape}: scheduler at {now.isoformat()}")
            entry["scheduler"] = scheduling(vault_dir, now, args.repeat, args.slow_repeat,
                                            servers, args.profile)
            entry["load"]["after scheduler"] = load()
            log(f"{shape}: retention on copies")
            entry["retention"] = retention(vault_dir, work, now, args.retention_repeat,
                                           args.profile)
            entry["load"]["after retention"] = load()
            if args.portal == "all" or (args.portal == "largest" and i == largest):
                log(f"{shape}: portal_load, {args.clients} clients, {args.portal_duration} "
                    "per URL")
                entry["portal"] = portal(vault_dir, args.portal_duration, args.clients,
                                         args.keep)
                entry["load"]["after portal"] = load()
    finally:
        result["load_end"] = load()
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"vault-scale-{stamp}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nresults: {out}")
    if args.keep or args.work:
        print(f"kept: {work}")
    else:
        shutil.rmtree(work)
    portal_failed = any((e.get("portal") or {}).get("exit_status") for e in
                        result["shapes"].values())
    return 1 if portal_failed else 0


def rows(entry: dict) -> dict[str, dict]:
    """Every timed figure of a shape, by the table's row name."""
    out = {f"dbsafe {name}": r for name, r in entry.get("listing", {}).items()}
    out.update({f"scheduler: {k}": v for k, v in entry.get("scheduler", {}).items()
                if isinstance(v, dict)})
    ret = entry.get("retention", {})
    out.update({k: v for k, v in ret.items() if isinstance(v, dict) and "median" in v})
    return out


def print_table(result: dict) -> None:
    shapes = list(result["shapes"].items())
    if not shapes:
        return
    for shape, entry in shapes:
        seed = entry.get("seed", {})
        cat = seed.get("catalog", {})
        print(f"{shape}: {entry['databases']} databases; catalog {cat.get('bytes', 0) / 1e6:.0f}"
              f" MB, {cat.get('recovery_points')} points, {cat.get('wal_files')} WAL files, "
              f"{cat.get('jobs')} jobs; seeded in {seed.get('seconds')} s; load average "
              f"{entry.get('load')}")
    (ref_shape, ref), others = shapes[0], shapes[1:]
    head = f"\n{'seconds (median / max)':52} {ref_shape:>15}"
    for shape, _ in others:
        head += f" {shape:>15} {'ratio':>6} {'/linear':>7}"
    print(head)
    for name, r in rows(ref).items():
        line = f"{name:52} {r['median']:>7.3f} {r['max']:>7.3f}"
        for _, entry in others:
            o = rows(entry).get(name)
            if o is None:
                line += f" {'-':>15} {'':>6} {'':>7}"
                continue
            ratio = o["median"] / r["median"] if r["median"] else float("nan")
            growth = entry["databases"] / ref["databases"]
            if name.endswith("per server"):  # against a server's own databases
                growth *= ref["servers"] / entry["servers"]
            line += f" {o['median']:>7.3f} {o['max']:>7.3f} {ratio:>6.2f} {ratio / growth:>7.2f}"
        print(line)
    portals = [(s, e["portal"]) for s, e in shapes if e.get("portal")]
    if portals:
        print(f"\n{'portal_load p95 ms (target)':52}" + "".join(f" {s:>15}" for s, _ in portals))
        names = list(dict.fromkeys(n for _, p in portals for n in p["urls"]))
        for name in names:
            target = portal_load.TARGETS_MS.get(name)
            label = next(p["urls"][name]["path"] for _, p in portals if name in p["urls"])
            label = f"GET {label}" + (f" (<{target})" if target else "")
            print(f"{label:52}" + "".join(
                f" {p['urls'][name]['p95_ms']:>15.1f}" if name in p["urls"] else f" {'-':>15}"
                for _, p in portals))


if __name__ == "__main__":
    sys.exit(main())
