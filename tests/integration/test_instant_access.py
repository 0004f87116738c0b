"""Instant access on real FUSE, real PostgreSQL and real WAL archiving: `dbsafe instant`
(PostgreSQL started on a view of the vault at an instant) and `dbsafe mount` (a point's
files, read only), compared with ordinary restores of the same targets; what an instance
fetches for a lookup; the clean-up after a killed run and at the end of a time to live;
encrypted and S3 vaults."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from backends import new_vault
from conftest import (
    AREA_PREFIX,
    PG_BIN,
    TMP_ROOT,
    Pg,
    Vault,
    free_port,
    interrupt,
    make_vault,
    new_cluster,
    restored,
    wait_for,
)

from dbsafe.core.concurrency import pid_alive
from dbsafe.services.access import fuse_problem

pytestmark = pytest.mark.skipif(
    fuse_problem() is not None,
    reason=f"instant access needs FUSE on this machine: {fuse_problem()}")

# What `dbsafe restore` writes into a data directory that is not one of the point's files
# as they were backed up: a mount serves the point's files only.
RESTORE_EDITS = {"postgresql.auto.conf", "backup_label"}
# The objects of a repository (docs/repository-format.md, *Layout*); beside them in a
# local vault's folder live the client's own files (catalog, client.json, the runs' state).
REPOSITORY_OBJECTS = ("config", "data", "index", "manifests", "entries", "wal", "keys",
                      "locks", "gc", "tmp")
# What a FUSE mount whose process died answers: "Transport endpoint is not connected", or
# "Software caused connection abort" (the kernel aborted the requests then in flight).
STALE = (errno.ENOTCONN, errno.ECONNABORTED)
LEDGER = "CREATE TABLE ledger (id int PRIMARY KEY, note text)"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _file_digests(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every regular file under ``root`` (links are listed
    by their target, not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[rel] = h.hexdigest()
    return out


def _repository_digests(vault: Vault) -> dict[str, str]:
    """Every object of a local vault's repository, by path, with its sha256."""
    out = {}
    for folder in REPOSITORY_OBJECTS:
        where = vault.path / folder
        if where.is_file():
            out[folder] = hashlib.sha256(where.read_bytes()).hexdigest()
        elif where.is_dir():
            out.update({f"{folder}/{k}": v for k, v in _file_digests(where).items()})
    return out


def _mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point (a stale FUSE mount included), as
    /proc/self/mountinfo says."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        return any(line.split()[4].replace("\\040", " ") == target for line in f)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a postmaster's backends and workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _state_file(vault: Vault, run_id: str) -> Path:
    return vault.path / "instant" / f"{run_id}.json"


def _instance(out: dict) -> Pg:
    """A handle on the PostgreSQL server `dbsafe instant` started (its socket folder)."""
    return Pg(pgdata=Path(out["mountpoint"]), port=out["port"],
              sockdir=Path(out["socket_dir"]))


def _listed(vault: Vault) -> dict[str, dict]:
    return {run["id"]: run for run in vault.ok("instant", "list")}


class Runs:
    """The mounts and instances a test starts: whatever still runs at its end is stopped,
    and anything left mounted under its vaults' folders unmounted (else the area's
    clean-up would meet a live mount)."""

    def __init__(self) -> None:
        self.started: list[tuple[Vault, str]] = []

    def instant(self, vault: Vault, server: str, *args: object) -> dict:
        out = vault.ok("instant", server, "--port", free_port(), *map(str, args))
        self.started.append((vault, out["id"]))
        assert out["state"] == "ready" and out["kind"] == "instant", out
        return out

    def mount(self, vault: Vault, server: str, folder: Path, *args: object) -> dict:
        out = vault.ok("mount", server, folder, *map(str, args))
        self.started.append((vault, out["id"]))
        assert out["state"] == "ready" and out["kind"] == "mount", out
        assert out["mountpoint"] == str(folder), out
        return out

    def close(self) -> None:
        for vault, run_id in reversed(self.started):
            if _state_file(vault, run_id).exists():
                with contextlib.suppress(Exception):  # best effort: the test said what failed
                    vault.run("instant", "stop", run_id, "--json")
        for root in {vault.path.parent for vault, _ in self.started}:
            with open("/proc/self/mountinfo", encoding="utf-8") as f:
                points = [line.split()[4] for line in f]
            for point in points:
                if point.startswith(f"{root}/"):
                    subprocess.run(["fusermount3", "-u", "-z", point], check=False,
                                   capture_output=True)


@pytest.fixture
def mount_folder() -> Iterator[Callable[[str], Path]]:
    """``mount_folder(name)``: a new empty folder to mount on, in a folder of root's own
    (`dbsafe mount` refuses a path that anyone but root could change, and the test areas
    belong to postgres); removed afterwards, anything still mounted there unmounted."""
    root = Path(tempfile.mkdtemp(prefix=f"{AREA_PREFIX}mnt-", dir=TMP_ROOT))  # root's, 0700

    def make(name: str) -> Path:
        folder = root / name
        folder.mkdir(mode=0o700)
        return folder

    try:
        yield make
    finally:
        for folder in root.iterdir():
            if _mounted(folder):
                subprocess.run(["fusermount3", "-u", "-z", str(folder)], check=False,
                               capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def runs() -> Iterator[Runs]:
    started = Runs()
    try:
        yield started
    finally:
        started.close()


def _protected(pg_template: Path, area: Path, vault: Vault, name: str) -> Pg:
    """A cluster in the FULL recovery model, its WAL archived into ``vault`` by the agent."""
    pg = new_cluster(pg_template, area, name)
    vault.add_server(name, pg)
    out = vault.ok("protect", name, "--all", "--restart")
    assert out["recovery_model"] == "FULL" and out["archiving_active"], out
    return pg


def _log_reaches(vault: Vault, name: str, instant: datetime) -> None:
    """A log backup (it switches the WAL and waits for the archive to hold it), then: the
    chain is whole and reaches ``instant``."""
    log = vault.backup(name, "--type", "log")
    assert log["type"] == "log" and not log["warnings"], log
    chain = vault.chain(name)
    assert chain["gaps"] == [], chain
    assert datetime.fromisoformat(chain["log_ranges"][-1]["end_time"]) > instant, chain


# --------------------------------------------------------------------------------------
# one protected cluster and its chain, shared by the module
# --------------------------------------------------------------------------------------

@dataclass
class Chain:
    vault: Vault
    pg: Pg                      # stopped once the chain is archived
    area: Path
    full: dict                  # the full, as `dbsafe points` shows it
    instants: list[datetime]    # noted while pgbench ran, after the full


@pytest.fixture(scope="module")
def chain(pg_template: Path, module_area: Path, cli_env: dict[str, str]) -> Chain:
    """pgbench (scale 5) in a protected cluster, a full, then pgbench running while three
    instants are noted, a log backup whose archive reaches past them; the cluster is then
    stopped (nothing of it changes while the tests run)."""
    vault = make_vault({**cli_env, "DBSAFE_RUN_DIR": str(module_area / "run")},
                       module_area / "vault")
    pg = _protected(pg_template, module_area, vault, "pitr")
    pg.pgbench("-i", "-s", "5", "-q")
    vault.backup("pitr", "--type", "full")
    load = subprocess.Popen(
        [str(PG_BIN / "pgbench"), "-h", str(pg.sockdir), "-p", str(pg.port), "-U",
         "postgres", "-n", "-c", "2", "-j", "1", "-T", "300", "postgres"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    instants = []
    try:
        for _ in range(4):  # commits before each instant, and after the last
            before = pg.scalar("SELECT count(*) FROM pgbench_history")
            wait_for(lambda b=before: pg.scalar("SELECT count(*) FROM pgbench_history")
                     > b + 200, "pgbench to commit 200 transactions", every=0.1)
            assert load.poll() is None, "pgbench exited early"
            instants.append(pg.scalar("SELECT clock_timestamp()"))
        instants.pop()
    finally:
        interrupt(load)
    _log_reaches(vault, "pitr", instants[-1])
    pg.stop()
    (full,) = [p for p in vault.points("pitr") if p["type"] == "full"]
    return Chain(vault, pg, module_area, full, instants)


# --------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------

def test_instances_at_three_instants_equal_restores(chain: Chain, runs: Runs):
    """An instance at each of three instants noted under pgbench load holds every table as
    a restore to the same instant does; it runs paused in recovery at the target, in a data
    directory of its own. Neither the repository's objects nor the source's files change
    (not even with a promoted instance that writes)."""
    vault = chain.vault
    repository_before = _repository_digests(vault)
    source_before = _file_digests(chain.pg.pgdata)
    seen = []
    for n, instant in enumerate(chain.instants):
        out = runs.instant(vault, "pitr", "--time", instant.isoformat())
        assert out["promoted"] is False and out["point_id"] == chain.full["point_id"], out
        mountpoint = Path(out["mountpoint"])
        assert mountpoint == chain.area / out["id"] / "pgdata", out
        assert _mounted(mountpoint) and not _mounted(chain.pg.pgdata)
        assert out["connection"] == (f"host={out['socket_dir']} port={out['port']} "
                                     "dbname=postgres user=postgres")
        pg = _instance(out)
        assert pg.scalar("SELECT pg_is_in_recovery()") is True
        assert pg.scalar("SELECT pg_get_wal_replay_pause_state()") == "paused"
        got = pg.table_checksums()
        vault.ok("instant", "stop", out["id"])
        assert not _mounted(mountpoint) and not (chain.area / out["id"]).exists()

        target = chain.area / f"pitr-restore-{n}"
        res = vault.ok("restore", "pitr", "--time", instant.isoformat(), "--no-recovery",
                       "--to-pgdata", target, "--port", free_port())
        assert res["recovery"]["paused"] is True, res
        expected = restored(target, res["port"])
        try:
            assert got == expected.table_checksums(), instant
        finally:
            expected.stop()
        assert set(got) == {f"postgres.pgbench_{t}" for t in
                            ("accounts", "branches", "history", "tellers")}
        seen.append(got["postgres.pgbench_history"])
    assert len(set(seen)) == 3, "the three instants should differ (pgbench ran between)"

    # a promoted instance takes writes; they stay in its local store
    out = runs.instant(vault, "pitr", "--time", chain.instants[-1].isoformat(), "--promote")
    assert out["promoted"] is True
    pg = _instance(out)
    wait_for(lambda: pg.scalar("SELECT pg_is_in_recovery()") is False, "the promotion")
    pg.execute("CREATE TABLE written_here AS SELECT g, md5(g::text) AS v "
               "FROM generate_series(1, 20000) g")
    pg.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 5000")
    pg.execute("CHECKPOINT")
    assert pg.scalar("SELECT count(*) FROM written_here") == 20000
    run = wait_for(lambda: (_listed(vault).get(out["id"]) or {}).get("local_bytes"),
                   "the instance's local bytes to be counted")
    assert run > 0
    vault.ok("instant", "stop", out["id"])
    assert not (chain.area / out["id"]).exists()  # its local store went with it

    assert _repository_digests(vault) == repository_before
    assert _file_digests(chain.pg.pgdata) == source_before


def test_instance_of_a_full_point_as_it_is(chain: Chain, runs: Runs):
    """`dbsafe instant SERVER --point FULL` starts PostgreSQL on the full as it was backed
    up (the WAL its backup saved, in pg_wal as a restore writes it, brings it to
    consistency; it is then promoted) and answers a lookup. Before 893ce9e it failed, and
    the failure itself was hidden behind a TypeError."""
    res = chain.vault.run("instant", "pitr", "--point", chain.full["point_id"], "--port",
                          str(free_port()), "--json")
    if res.returncode == 0:
        runs.started.append((chain.vault, res.json()["id"]))
    assert "not JSON serializable" not in res.stdout, (
        "a run that fails must report why, not that its process could not record its "
        f"error (a DbsafeError whose details hold a Path):\n{res.describe()}")
    assert res.returncode == 0, (
        "an instance of a full point (no recovery plan) must start: the point's WAL (the "
        "manifest's 'wal' list, which a restore writes into pg_wal) must be in the view, "
        f"else PostgreSQL finds no checkpoint record:\n{res.describe()}")
    out = res.json()
    assert out["promoted"] is True and out["point_id"] == chain.full["point_id"], out
    pg = _instance(out)
    assert pg.execute("SELECT aid, bid FROM pgbench_accounts WHERE aid = 17") == [(17, 1)]
    chain.vault.ok("instant", "stop", out["id"])
    assert not _mounted(Path(out["mountpoint"]))


def test_mount_serves_the_point_read_only(chain: Chain,
                                          mount_folder: Callable[[str], Path], runs: Runs):
    """`dbsafe mount --point`: every file has the bytes a restore of the point writes
    (but the files a restore edits); writing is refused; `dbsafe umount` leaves an empty
    plain folder."""
    vault, point = chain.vault, chain.full["point_id"]
    folder = mount_folder("mnt-ro")
    out = runs.mount(vault, "pitr", folder, "--point", point)
    assert _mounted(folder) and out["id"] in _listed(vault)

    for attempt in (lambda: os.open(folder / "new-file", os.O_WRONLY | os.O_CREAT, 0o600),
                    lambda: os.open(folder / "PG_VERSION", os.O_RDWR),
                    lambda: os.mkdir(folder / "new-dir"),
                    lambda: os.unlink(folder / "PG_VERSION"),
                    lambda: os.truncate(folder / "PG_VERSION", 0)):
        with pytest.raises(OSError) as err:
            attempt()
        assert err.value.errno in (errno.EROFS, errno.EACCES), err.value
    assert (folder / "PG_VERSION").read_text().strip() == "15"

    target = chain.area / "mnt-ro-restore"
    vault.ok("restore", "pitr", "--point", point, "--to-pgdata", target)
    served = _file_digests(folder)
    written = _file_digests(target)
    for name in RESTORE_EDITS:
        served.pop(name, None)
        written.pop(name, None)
    only_served = sorted(set(served) - set(written))
    only_written = sorted(set(written) - set(served))
    differ = sorted(p for p in set(served) & set(written) if served[p] != written[p])

    vault.ok("umount", folder)
    assert not _mounted(folder)
    assert folder.is_dir() and not folder.is_symlink() and list(folder.iterdir()) == []
    assert out["id"] not in _listed(vault)
    assert not _state_file(vault, out["id"]).exists()

    assert len(served) > 500
    assert (only_served, only_written, differ) == ([], [], []), (
        "the mount and the restore of the same point differ: only mounted "
        f"{only_served}, only restored {only_written}, other bytes {differ}")


def test_a_lookup_fetches_a_few_blocks(pg_template: Path, area: Path, wal_vault: Vault,
                                       runs: Runs):
    """An instance of a 500 MB cluster (pgbench scale 30) answers a one-row lookup having
    fetched at most 5 % of what its point stores (what a restore would fetch)."""
    vault = wal_vault
    pg = _protected(pg_template, area, vault, "big")
    pg.pgbench("-i", "-s", "30", "-q")
    vault.backup("big", "--type", "full")
    time.sleep(0.2)
    instant = pg.scalar("SELECT clock_timestamp()")  # no write between the full and it
    time.sleep(0.2)
    _log_reaches(vault, "big", instant)
    (point,) = [p for p in vault.points("big") if p["type"] == "full"]
    assert point["bytes_read"] > 400e6, point

    out = runs.instant(vault, "big", "--time", instant.isoformat())
    served = _instance(out)
    row = served.execute("SELECT aid, bid, abalance FROM pgbench_accounts WHERE aid = 17")
    assert row == [(17, 1, 0)]
    fetched = _fetched_now(vault, out["id"])
    assert 0 < fetched <= 0.05 * point["bytes_stored"], (
        f"a one-row lookup fetched {fetched} bytes; the point stores "
        f"{point['bytes_stored']} (reads {point['bytes_read']})")

    # a count(*) of the table by a sequential scan fetches about the table as stored
    with served.connect() as conn:
        conn.execute("SET enable_indexscan = off")
        conn.execute("SET enable_indexonlyscan = off")
        conn.execute("SET enable_bitmapscan = off")
        assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == \
            (3_000_000,)
        heap = conn.execute("SELECT pg_relation_filepath('pgbench_accounts')").fetchone()[0]
    repo = vault.repository()
    files = [f for f in repo.load_manifest_whole(point["point_id"])["files"]
             if f["path"] == heap or f["path"].startswith(f"{heap}.")]
    table = sum(repo.index.get(bytes.fromhex(b)).length for f in files for b in f["blocks"])
    scanned = _fetched_now(vault, out["id"]) - fetched
    assert 0.8 * table <= scanned <= 1.2 * table + (1 << 20), (
        f"a count(*) of pgbench_accounts fetched {scanned} bytes; the table stores {table}")


def _fetched_now(vault: Vault, run_id: str) -> int:
    """The run's fetched bytes once its process wrote its counters (every 2 s) twice: the
    second write began after what the test just did."""
    state_file = _state_file(vault, run_id)
    for _ in range(2):
        written = state_file.stat().st_mtime_ns
        wait_for(lambda w=written: state_file.stat().st_mtime_ns != w,
                 "the counters' next update", every=0.2)
    return _listed(vault)[run_id]["fetched_bytes"]


def test_a_killed_run_is_reaped(chain: Chain, mount_folder: Callable[[str], Path],
                                runs: Runs):
    """A run's process killed outright leaves a stale mount (and, for an instance, its
    postmaster); the next `dbsafe instant list`, or a new mount on the same folder, takes
    it all away: the mount, the server and its processes, the folders, the state file."""
    vault = chain.vault
    # an instance, reaped by `instant list`
    out = runs.instant(vault, "pitr", "--time", chain.instants[0].isoformat())
    state = json.loads(_state_file(vault, out["id"]).read_text())
    pid, postmaster = state["pid"], state["postmaster_pid"]
    assert state["mountpoint"] == out["mountpoint"] and pid_alive(postmaster)
    workers = _children(postmaster)
    assert workers, "the postmaster has no processes"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), "the run's process to die")
    mountpoint = Path(out["mountpoint"])
    assert _mounted(mountpoint)
    with pytest.raises(OSError) as err:
        os.listdir(mountpoint)
    assert err.value.errno in STALE, err.value

    assert out["id"] not in _listed(vault)
    assert not _mounted(mountpoint)
    wait_for(lambda: not pid_alive(postmaster), "the postmaster to be gone", timeout=30)
    wait_for(lambda: not any(pid_alive(w) for w in workers),
             "the postmaster's processes to end", timeout=30)
    assert not _state_file(vault, out["id"]).exists()
    assert not Path(state["run_dir"]).exists()

    # a mount, reaped by the next mount on the same folder
    folder = mount_folder("mnt-killed")
    first = runs.mount(vault, "pitr", folder, "--point", chain.full["point_id"])
    pid = json.loads(_state_file(vault, first["id"]).read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), "the mount's process to die")
    assert _mounted(folder)
    with pytest.raises(OSError) as err:
        os.stat(folder / "PG_VERSION")
    assert err.value.errno in STALE, err.value

    second = runs.mount(vault, "pitr", folder, "--point", chain.full["point_id"])
    assert (folder / "PG_VERSION").read_text().strip() == "15"
    assert not _state_file(vault, first["id"]).exists()
    assert set(_listed(vault)) == {second["id"]}
    vault.ok("umount", folder)
    assert not _mounted(folder) and list(folder.iterdir()) == []


def test_a_mount_ends_at_its_time_to_live(chain: Chain,
                                          mount_folder: Callable[[str], Path], runs: Runs):
    """`dbsafe mount --ttl 3s` unmounts by itself: gone from `instant list`, from the
    mount table, its state file removed, its folder left empty."""
    vault = chain.vault
    folder = mount_folder("mnt-ttl")
    out = runs.mount(vault, "pitr", folder, "--point", chain.full["point_id"], "--ttl", "3s")
    assert out["expires_in_seconds"] is not None and out["expires_in_seconds"] <= 3, out
    wait_for(lambda: not _mounted(folder) and out["id"] not in _listed(vault),
             "the mount to end at its time to live", timeout=30)
    wait_for(lambda: not _state_file(vault, out["id"]).exists(), "its state file to go")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("kind", ["local-encrypted", "s3", "azure"])
def test_instance_on_an_encrypted_or_s3_vault(kind: str, request: pytest.FixtureRequest,
                                              area: Path, cli_env: dict[str, str],
                                              pg_template: Path, runs: Runs):
    """An instance reads its point and its WAL from an encrypted vault, or from an S3 or
    Azure Blob vault (its process opens the vault itself, with the command's
    environment)."""
    vault = new_vault(kind, request, area, cli_env)
    pg = _protected(pg_template, area, vault, "small")
    pg.execute(LEDGER)
    pg.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 10) g")
    vault.backup("small", "--type", "full")
    pg.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(11, 20) g")
    time.sleep(0.05)
    instant = pg.scalar("SELECT clock_timestamp()")
    time.sleep(0.05)
    pg.execute("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(21, 30) g")
    _log_reaches(vault, "small", instant)

    out = runs.instant(vault, "small", "--time", instant.isoformat())
    got = _instance(out)
    assert got.scalar("SELECT note FROM ledger WHERE id = 17") == \
        pg.scalar("SELECT md5('17')")
    assert got.scalar("SELECT count(*) FROM ledger") == 20
    assert got.scalar("SELECT max(id) FROM ledger") == 20
    vault.ok("instant", "stop", out["id"])
    assert not _mounted(Path(out["mountpoint"]))
    assert not Path(out["mountpoint"]).exists()  # the run's folder went with it
