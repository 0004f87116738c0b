#!/usr/bin/env python3
"""Where does a dbsafe full backup (and, with --restore, a restore) spend its time?

Run as root with the checkout's venv:   .venv/bin/python bench/profile.py [--restore]

It reuses (or builds) the dataset cluster of bench/dataset.py, takes ONE full backup
in-process into a fresh vault, and reports:

* phases (wall seconds): backup start, file walk, data copy, backup stop, WAL copy, pack
  sealing, manifest, catalog (and, for a restore, layout, block writes, chown);
* per worker thread: CPU seconds (``time.thread_time``) and busy wall seconds, and a cProfile
  of every worker thread, merged: self time by function (C calls such as ``posix.pread`` or
  ``ZstdCompressor.compress`` are listed apart; the page checks are counted in
  ``_checksums``/``bad_pages``, the blake3 hash in ``Keyed.digest``). Its clock is wall time
  (cheap: waits for the GIL or a lock show up in the function that waited); ``--cpu-clock``
  uses ``time.thread_time`` instead, a syscall per call event, so much of the total is then
  profiler overhead (reported as "unattributed");
* the main thread under cProfile (wall clock);
* component costs: each step of the block pipeline alone on 1 MiB blocks of the dataset,
  single-threaded, and the whole per-block pipeline on 1 vs N threads (how well it scales
  under the GIL).

cProfile adds overhead per Python call, so the profiled backup is slower than in run.py; use
the shares, not the absolute seconds. Writes bench/results/profile-<timestamp>.json (+ .txt).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the stdlib's ``profile`` module, which cProfile imports: take the
# script's folder off the front of sys.path first, and append it at the end for dataset/run.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import argparse  # noqa: E402
import concurrent.futures.thread as cft  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import dataset  # noqa: E402
from dataset import BASE, Cluster, log  # noqa: E402

RESULTS = HERE / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------
# Instrumentation


class ThreadProfiles:
    """A thread_time cProfile per pool thread, enabled only while it runs a work item."""

    def __init__(self, cpu_clock: bool = False) -> None:
        self.clock = time.thread_time if cpu_clock else time.perf_counter
        self.local = threading.local()
        self.lock = threading.Lock()
        self.profiles: list[cProfile.Profile] = []  # one per thread (names repeat across pools)
        self.cpu: dict[str, float] = {}
        self.busy: dict[str, float] = {}
        self._orig = cft._WorkItem.run

    def install(self) -> None:
        me = self
        orig = self._orig

        def run(item) -> None:  # noqa: ANN001
            name = threading.current_thread().name
            prof = getattr(me.local, "prof", None)
            if prof is None:
                prof = me.local.prof = cProfile.Profile(me.clock)
                with me.lock:
                    me.profiles.append(prof)
            c0, w0 = time.thread_time(), time.perf_counter()
            prof.enable()
            try:
                orig(item)
            finally:
                prof.disable()
                with me.lock:
                    me.cpu[name] = me.cpu.get(name, 0.0) + time.thread_time() - c0
                    me.busy[name] = me.busy.get(name, 0.0) + time.perf_counter() - w0

        cft._WorkItem.run = run

    def uninstall(self) -> None:
        cft._WorkItem.run = self._orig

    def stats(self) -> pstats.Stats | None:
        profs = list(self.profiles)
        if not profs:
            return None
        st = pstats.Stats(profs[0])
        for p in profs[1:]:
            st.add(p)
        return st


class Phases:
    """Wall time of chosen methods, summed per label (patched on their classes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, label: str) -> None:
        orig = getattr(owner, attr)
        phases = self

        def wrapper(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            t0 = time.perf_counter()
            try:
                return orig(*a, **kw)
            finally:
                phases.seconds[label] = phases.seconds.get(label, 0.0) + \
                    time.perf_counter() - t0
                phases.calls[label] = phases.calls.get(label, 0) + 1

        setattr(owner, attr, wrapper)
        self._undo.append((owner, attr, orig))

    def undo(self) -> None:
        for owner, attr, orig in reversed(self._undo):
            setattr(owner, attr, orig)
        self._undo.clear()


class RssSampler:
    def __init__(self) -> None:
        self.peak = 0
        self.threads = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * PAGE)
            self.threads = max(self.threads, threading.active_count())
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def top_functions(st: pstats.Stats, n: int, total: float) -> list[dict]:
    rows = []
    for (file, line, func), (_, nc, tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
        where = func if file == "~" else f"{Path(file).name}:{line}({func})"
        rows.append({"function": where, "calls": nc, "self_s": round(tt, 3),
                     "cum_s": round(ct, 3),
                     "self_share": round(tt / total, 3) if total else None})
    rows.sort(key=lambda r: -r["self_s"])
    return rows[:n]


CATEGORIES = [  # (label, substrings of the function key), first match wins
    ("read (os.pread)", ["posix.pread"]),
    ("write (file write/pwrite)", ["'write' of '_io", "posix.pwrite", "posix.write"]),
    ("fsync / syncfs / sync_file_range", ["posix.fsync", "(start_writeback)", "(sync_trees)"]),
    ("zstd compress", ["'compress' of 'zstandard"]),
    ("zstd decompress", ["'decompress' of 'zstandard"]),
    ("blake3 hash (Keyed.digest)", ["(digest)"]),
    ("page checksums (C)", ["(page_checksums)", "(bad_pages)", "_pagecheck"]),
    ("open/close/ftruncate", ["posix.open", "posix.close", "posix.ftruncate"]),
    ("locks", ["acquire", "release", "'__enter__' of '_thread", "'__exit__' of '_thread"]),
]


def lock_waits(st: pstats.Stats, n: int = 6) -> list[dict]:
    """Who waited on locks in the worker threads, and how long (self time of acquire)."""
    rows = []
    for (file, _, func), (_, _, _, _, callers) in st.stats.items():  # type: ignore[attr-defined]
        if file != "~" or "acquire" not in func:
            continue
        for (cfile, cline, cfunc), (_, cnc, ctt, _) in callers.items():
            rows.append({"lock": func, "caller": f"{Path(cfile).name}:{cline}({cfunc})",
                         "calls": cnc, "seconds": round(ctt, 3)})
    rows.sort(key=lambda r: -r["seconds"])
    return rows[:n]


def categorise(st: pstats.Stats, total: float) -> dict[str, float]:
    """Self time by category; what the functions do not account for is profiler overhead."""
    out: dict[str, float] = {}
    for (file, line, func), (_, _, tt, _, _) in st.stats.items():  # type: ignore[attr-defined]
        key = f"{Path(file).name}:{line}({func})" if file != "~" else func
        label = "other Python"
        for name, needles in CATEGORIES:
            if any(n in key for n in needles):
                label = name
                break
        out[label] = out.get(label, 0.0) + tt
    out["(unattributed: profiler overhead)"] = max(0.0, total - sum(out.values()))
    return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


# ---------------------------------------------------------------------------------------------
# Component costs on real blocks


def sample_blocks(pgdata: Path, count: int, block: int) -> list[tuple[str, bytes, int]]:
    """``count`` 1 MiB blocks from the largest relation files (accounts and bench_text)."""
    files = []
    for root, _, names in os.walk(pgdata / "base"):
        for n in names:
            p = Path(root) / n
            files.append((p.stat().st_size, p))
    files.sort(reverse=True)
    out = []
    per_file = max(1, count // 4)
    for size, p in files[:4]:
        with open(p, "rb") as f:
            for i in range(per_file):
                off = (i * (size // per_file)) // block * block
                data = os.pread(f.fileno(), block, off)
                if len(data) == block:
                    out.append((str(p), data, off // 8192))
    return out[:count]


def components(pgdata: Path, workers: int, count: int = 128) -> dict:
    import zstandard

    from dbsafe.engines.postgres.pages import bad_pages
    from dbsafe.vault.format import Keyed

    block = 1 << 20
    blocks = sample_blocks(pgdata, count, block)
    mb = len(blocks) * block / 1e6
    keyed = Keyed(os.urandom(32), vault_id="0" * 32)
    comp = zstandard.ZstdCompressor(level=1)
    compressed = [comp.compress(b) for _, b, _ in blocks]
    dctx = zstandard.ZstdDecompressor()
    fds = {p: os.open(p, os.O_RDONLY) for p, _, _ in blocks}

    def timed(fn) -> float:  # noqa: ANN001
        """Best of 3 runs (the first one pays for cold allocations)."""
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    costs = {
        "pread (page cache)": timed(lambda: [os.pread(fds[p], block, first * 8192)
                                              for p, _, first in blocks]),
        "blake3 keyed hash": timed(lambda: [keyed.digest(b) for _, b, _ in blocks]),
        "page checksums (bad_pages)": timed(lambda: [bad_pages(b, first)
                                                     for _, b, first in blocks]),
        "zstd level 1 compress": timed(lambda: [comp.compress(b) for _, b, _ in blocks]),
        "zstd decompress": timed(lambda: [dctx.decompress(c) for c in compressed]),
    }
    ratio = sum(len(c) for c in compressed) / (len(blocks) * block)

    def pipeline(item: tuple[str, bytes, int]) -> None:
        p, _, first = item
        data = os.pread(fds[p], block, first * 8192)
        keyed.digest(data)
        bad_pages(data, first)
        zstandard.ZstdCompressor(level=1).compress(data)

    scaling = {}
    for n in sorted({1, workers}):
        with ThreadPoolExecutor(n) as pool:
            t0 = time.perf_counter()
            list(pool.map(pipeline, blocks * 2))
            scaling[f"{n} thread(s)"] = round(2 * mb / (time.perf_counter() - t0), 1)
    for fd in fds.values():
        os.close(fd)
    return {
        "blocks": len(blocks), "block_bytes": block,
        "single_thread_mb_per_s": {k: round(mb / v, 1) for k, v in costs.items()},
        "single_thread_ms_per_block": {k: round(v * 1000 / len(blocks), 2)
                                       for k, v in costs.items()},
        "zstd1_ratio_on_sample": round(ratio, 3),
        "pipeline_read_hash_check_compress_mb_per_s": scaling,
    }


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--restore", action="store_true", help="also profile a restore")
    ap.add_argument("--top", type=int, default=25, help="functions to list")
    ap.add_argument("--cpu-clock", action="store_true",
                    help="profile worker threads with time.thread_time (CPU) instead of wall "
                         "time; costs a syscall per call event, which inflates the figures")
    ap.add_argument("--workers", type=int, default=None, help="dbsafe workers (default: cores)")
    ap.add_argument("--keep", action="store_true", help="keep the dataset afterwards "
                    "(default: keep; --no-keep removes it)", default=True)
    ap.add_argument("--no-keep", dest="keep", action="store_false")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (see bench/README.md)")

    from dbsafe.core.fdtree import Tree
    from dbsafe.engines.postgres import restore as pg_restore
    from dbsafe.engines.postgres.backup import BackupSession
    from dbsafe.services.backup.copy import Copier
    from dbsafe.services.backup.take import default_workers, run_backup
    from dbsafe.services.handle.vault_handle import Vault
    from dbsafe.services.inventory.servers import add_server
    from dbsafe.services.restore import instance as restore_service
    from dbsafe.services.restore.instance import run_restore
    from dbsafe.services.restore.targets import add_root
    from dbsafe.vault.blocks import BlockSink
    from dbsafe.vault.repository import Repository

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = BASE / f"profile-{stamp}"
    dataset.ensure()
    cluster = Cluster()
    cluster.start()
    os.environ.setdefault("PGUSER", "postgres")
    workers = args.workers or default_workers()
    from run import git_commit, warm  # same warm-cache rule as run.py

    report: dict = {"timestamp": stamp, "workers": workers, "cpus": os.cpu_count(),
                    "dbsafe_git": git_commit(), "dbsafe_module": __import__("dbsafe").__file__}
    text = io.StringIO()
    try:
        work.mkdir(parents=True)
        vault = Vault.init(work / "vault")
        add_root(vault, work)
        add_server(vault, "bench", dataset.PGDATA, cluster.port)
        t = time.perf_counter()
        warm(dataset.PGDATA)
        log(f"page cache warmed in {time.perf_counter() - t:.1f} s")

        phases = Phases()
        phases.wrap(BackupSession, "start", "backup: pg_backup_start (+ slot)")
        phases.wrap(BackupSession, "files", "backup: walk data dir")
        phases.wrap(BackupSession, "stop", "backup: pg_backup_stop")
        phases.wrap(Copier, "copy", "backup: copy blocks (data + WAL)")
        phases.wrap(BlockSink, "close", "backup: seal last packs")
        phases.wrap(Repository, "refresh_index", "vault: load index")
        phases.wrap(Repository, "save_manifest", "backup: write manifest")
        phases.wrap(vault.catalog, "add_point", "backup: catalog add_point")
        result, measured = profiled(f"profiling one full backup ({workers} workers)", phases,
                                    lambda: run_backup(vault, "bench", "full", 1, workers),
                                    args.cpu_clock)
        report["backup"] = section(
            "backup", *measured, args.top, text,
            {k: result[k] for k in ("bytes_read", "bytes_stored", "blocks_new",
                                    "blocks_reused", "files", "seconds", "mb_per_second")})

        if args.restore:
            target = work / "restore"
            phases = Phases()
            phases.wrap(restore_service, "_restore_files", "restore: write blocks (all files)")
            phases.wrap(pg_restore, "make_layout", "restore: make layout")
            phases.wrap(Tree, "chown", "restore: chown tree")
            phases.wrap(Repository, "refresh_index", "vault: load index")
            vault2 = Vault.open(work / "vault")  # a cold index, as a new process has
            res, measured = profiled(
                "profiling its restore", phases,
                lambda: run_restore(vault2, "bench", result["point_id"], to_pgdata=target,
                                    workers=workers),
                args.cpu_clock)
            report["restore"] = section(
                "restore", *measured, args.top, text,
                {k: res[k] for k in ("bytes_written", "files", "seconds")})

        log("component costs on sample blocks")
        report["components"] = comp = components(dataset.PGDATA, workers)
        print("\n== component costs (1 MiB blocks of the dataset, page cache warm) ==",
              file=text)
        for k, v in comp["single_thread_mb_per_s"].items():
            print(f"  {k:32} {v:8.0f} MB/s  ({comp['single_thread_ms_per_block'][k]:.2f} "
                  "ms/block, 1 thread)", file=text)
        print(f"  zstd-1 ratio on the sample: {comp['zstd1_ratio_on_sample']}", file=text)
        for k, v in comp["pipeline_read_hash_check_compress_mb_per_s"].items():
            print(f"  read+hash+check+compress on {k:12} {v:8.0f} MB/s", file=text)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep and not cluster.running:
            shutil.rmtree(dataset.DATASET_DIR, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"profile-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"profile-{stamp}.txt").write_text(text.getvalue())
    print(f"dbsafe {report['dbsafe_git']} ({report['dbsafe_module']})", file=text)
    print(text.getvalue())
    log(f"written bench/results/profile-{stamp}.json and .txt")


def profiled(message: str, phases: Phases, call, cpu_clock: bool):
    """Run ``call()`` with every thread profiled and RSS sampled; undo the phase wrappers.

    Returns (its result, the measurements ``section`` takes after its name)."""
    threads = ThreadProfiles(cpu_clock)
    threads.install()
    main_prof = cProfile.Profile()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    log(message)
    with RssSampler() as rss:
        t0 = time.perf_counter()
        main_prof.enable()
        result = call()
        main_prof.disable()
        wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    threads.uninstall()
    phases.undo()
    return result, (wall, ru0, ru1, rss, phases, threads, main_prof)


def section(kind: str, wall: float, ru0, ru1, rss: RssSampler, phases: Phases,  # noqa: ANN001
            threads: ThreadProfiles, main_prof: cProfile.Profile, top: int, text: io.StringIO,
            result: dict) -> dict:
    cpu_proc = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    worker_cpu = sum(threads.cpu.values())
    worker_busy = sum(threads.busy.values())
    clock = "CPU (thread_time)" if threads.clock is time.thread_time else "wall (perf_counter)"
    total = worker_cpu if threads.clock is time.thread_time else worker_busy
    st = threads.stats()
    out = {
        "wall_seconds": round(wall, 3),
        "process_cpu_seconds": round(cpu_proc, 2),
        "process_cpu_user_seconds": round(ru1.ru_utime - ru0.ru_utime, 2),
        "process_cpu_sys_seconds": round(ru1.ru_stime - ru0.ru_stime, 2),
        "cores_busy_avg": round(cpu_proc / wall, 2) if wall else None,
        "peak_rss_mb": round(rss.peak / 1e6, 1), "max_threads": rss.threads,
        "phases_wall_seconds": {k: round(v, 3) for k, v in phases.seconds.items()},
        "worker_threads": {n: {"cpu_s": round(threads.cpu[n], 3),
                               "busy_wall_s": round(threads.busy[n], 3)}
                           for n in sorted(threads.cpu)},
        "worker_cpu_seconds": round(worker_cpu, 3),
        "worker_busy_wall_seconds": round(worker_busy, 3),
        "worker_profile_clock": clock,
        "worker_time_by_category": categorise(st, total) if st else {},
        "worker_top_functions": top_functions(st, top, total) if st else [],
        "worker_lock_waits": lock_waits(st) if st else [],
        "main_thread_top_functions_wall": top_functions(pstats.Stats(main_prof), top, wall),
        "result": result,
    }
    p = lambda *a: print(*a, file=text)  # noqa: E731
    p(f"\n== {kind} (profiled; cProfile overhead included) ==")
    p(f"  wall {wall:.2f} s, process CPU {cpu_proc:.2f} s "
      f"(user {out['process_cpu_user_seconds']}, sys {out['process_cpu_sys_seconds']}), "
      f"avg {out['cores_busy_avg']} cores busy, peak RSS {out['peak_rss_mb']} MB, "
      f"{rss.threads} threads")
    p(f"  dbsafe result: {result}")
    p("  phases (wall s):")
    for k, v in out["phases_wall_seconds"].items():
        p(f"    {k:40} {v:8.3f}  ({phases.calls[k]} call(s))")
    p("  worker threads (CPU s / busy wall s):")
    for n, v in out["worker_threads"].items():
        p(f"    {n:40} {v['cpu_s']:8.3f} / {v['busy_wall_s']:8.3f}")
    p(f"  worker threads' {clock} time by category (of {total:.2f} s):")
    for k, v in out["worker_time_by_category"].items():
        p(f"    {k:40} {v:8.3f}  {v / total * 100 if total else 0:5.1f}%")
    p(f"  worker threads, top functions by self {clock} time:")
    for r in out["worker_top_functions"][:15]:
        p(f"    {r['self_s']:8.3f} s  {r['calls']:>8} calls  {r['function']}")
    p("  worker threads, where they waited on locks:")
    for r in out["worker_lock_waits"]:
        p(f"    {r['seconds']:8.3f} s  {r['calls']:>8} calls  {r['lock']} from {r['caller']}")
    p("  main thread, top functions by self wall time:")
    for r in out["main_thread_top_functions_wall"][:12]:
        p(f"    {r['self_s']:8.3f} s  {r['calls']:>8} calls  {r['function']}")
    return out


if __name__ == "__main__":
    main()
