"""Shared fixtures: real PostgreSQL 15 clusters (run as the ``postgres`` OS user, under
/var/tmp), vaults, and a runner for the ``dbsafe`` command line.

Every cluster a test starts lives in a temp area (``/var/tmp/dbsafe-test-*``); the area's
finalizer stops every postmaster whose data directory lies inside it (including servers
that ``dbsafe restore --start`` started) and then removes the area, even when the test
failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import secrets_guard

from dbsafe.core.concurrency import pid_alive

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TMP_ROOT = Path("/var/tmp")
AREA_PREFIX = "dbsafe-test-"
PG_USER = "postgres"

# Per-table content checksum: equal checksums mean equal rows (order-independent).
TABLE_CHECKSUM_SQL = (
    "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t")
USER_TABLES_SQL = """
    SELECT c.oid::regclass::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    ORDER BY 1
"""


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------

# Test servers' ports: below the kernel's ephemeral range (32768-60999 on Debian), where a
# client connection's local port or a socket in TIME_WAIT cannot hold them (dbsafe's own
# check of a restore's port, a plain bind, then says "in use": a run failed so), and a block
# of its own per xdist worker, so that two test processes never hand out the same port.
PORTS_FIRST = 20000
PORTS_PER_WORKER = 1000
PORT_BLOCKS = 12  # 20000-31999
_ports_handed = 0


def free_port() -> int:
    """A TCP port of this test process's block that nobody holds now."""
    global _ports_handed
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    first = PORTS_FIRST + (index % PORT_BLOCKS) * PORTS_PER_WORKER
    for _ in range(PORTS_PER_WORKER):
        port = first + _ports_handed % PORTS_PER_WORKER
        _ports_handed += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError(f"no free port in {first}-{first + PORTS_PER_WORKER - 1}")


def wait_for(probe, what: str, timeout: float = 60.0, every: float = 0.5):
    """``probe()``'s first true answer, asked every ``every`` seconds; fails naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def pg_uid_gid() -> tuple[int, int]:
    entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def chown_postgres(path: Path, recursive: bool = False) -> None:
    uid, gid = pg_uid_gid()
    os.chown(path, uid, gid)
    if recursive:
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def as_postgres(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the postgres OS user (initdb/postgres refuse root)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 300)
    return subprocess.run(["runuser", "-u", PG_USER, "--", *argv], **kwargs)


def interrupt(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a load generator (pgbench) as Ctrl-C would; kill it if it does not end."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_area(tag: str = "") -> Path:
    area = Path(tempfile.mkdtemp(prefix=f"{AREA_PREFIX}{tag}", dir=TMP_ROOT))
    os.chmod(area, 0o755)
    chown_postgres(area)
    return area


def stop_postmaster(pgdata: Path) -> None:
    """Stop the postmaster of ``pgdata`` if one runs (immediate mode), and wait for it."""
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    if not pid_alive(pid):
        return
    as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "stop", "-m", "immediate", "-w",
                 "-t", "60"], timeout=90)
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):  # pg_ctl could not stop it: immediate shutdown by signal
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def stop_clusters_under(root: Path) -> None:
    """Stop every postmaster whose data directory (a folder holding postmaster.pid) is in
    ``root``; tablespace links are not followed."""
    if not root.exists():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        if "postmaster.pid" in filenames and "PG_VERSION" in filenames:
            stop_postmaster(Path(dirpath))
            dirnames[:] = []


def stop_agents_under(root: Path) -> None:
    """Stop every dbsafe agent whose run folder (holding agent.pid) is in ``root``."""
    if not root.exists():
        return
    for pid_file in root.rglob("agent.pid"):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_area(area: Path) -> None:
    """Stop what runs in ``area``, search what was written there for secrets, remove it."""
    stop_agents_under(area)
    stop_clusters_under(area)
    leaks = secrets_guard.scan_tree(area)
    shutil.rmtree(area, ignore_errors=True)
    assert not leaks, f"secrets written to files: {leaks}"


# The longest test files (minutes each: object stores, the scheduler's real clock, failover)
# run first: pytest-xdist hands whole files to workers in collection order (--dist loadfile),
# so a long file collected last would run alone at the end while the other workers idle.
# Longest first, as measured in a full run (`--durations=0`, summed per file); the fleet's
# scale test (~4 minutes, one test: 40 agents on the 2 cores) leads.
SLOW_FILES = ("test_fleet_scale.py", "test_vault_backends.py", "test_replica_regions.py",
              "test_replica_sets.py", "test_archive_faults.py", "test_replica_failover.py",
              "test_log_chain.py", "test_serve.py", "test_shared_vault.py",
              "test_vault_backends_log.py", "test_errors.py", "test_portal_browser.py",
              "test_restore_checks.py", "test_drills.py", "test_differential.py",
              "test_api_schema.py", "test_version_matrix.py", "test_portal_a11y.py",
              "test_portal_tasks_browser.py", "test_portal_tasks.py", "test_portal_settings.py",
              "test_instant_access.py")


def pytest_configure(config: pytest.Config) -> None:
    """Keep that order: pytest-xdist otherwise hands out the files with the most tests
    first (``--loadscope-reorder`` is its default), which puts the long files, each of a
    few tests, at the end of the run."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


# --------------------------------------------------------------------------------------
# PostgreSQL clusters
# --------------------------------------------------------------------------------------

@dataclass
class Pg:
    """A PostgreSQL cluster on disk: its data directory, port and socket folder."""

    pgdata: Path
    port: int
    sockdir: Path
    log: Path | None = None
    bin_dir: Path = PG_BIN  # another major's programs: tests/integration/test_version_matrix.py

    def start(self) -> None:
        log = self.log or self.pgdata.parent / f"{self.pgdata.name}.log"
        if not log.exists():
            log.touch()
            chown_postgres(log)
        proc = as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(log),
                            "-w", "-t", "120", "-o", f"-p {self.port} -k {self.sockdir}",
                            "start"])
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {proc.stdout}{proc.stderr}\n"
                               f"{log.read_text() if log.exists() else ''}")

    def stop(self, mode: str = "fast") -> None:
        proc = as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "stop", "-m",
                            mode, "-w", "-t", "120"])
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {proc.stdout}{proc.stderr}")

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.sockdir), port=self.port, dbname=dbname,
                               user=PG_USER, autocommit=True, connect_timeout=10)

    def execute(self, sql: str, dbname: str = "postgres", params: object = None) -> list:
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql: str, dbname: str = "postgres", params: object = None) -> object:
        rows = self.execute(sql, dbname, params)
        return rows[0][0] if rows else None

    def pgbench(self, *args: str, dbname: str = "postgres", timeout: int = 600) -> str:
        proc = subprocess.run(
            [str(PG_BIN / "pgbench"), "-h", str(self.sockdir), "-p", str(self.port),
             "-U", PG_USER, *args, dbname], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench {args} failed: {proc.stdout}{proc.stderr}")
        return proc.stdout + proc.stderr

    def relation_path(self, table: str, dbname: str = "postgres") -> Path:
        rel = self.scalar("SELECT pg_relation_filepath(%s::regclass)", dbname, (table,))
        return self.pgdata / rel

    def table_checksums(self) -> dict[str, str]:
        """``{"db.table": md5}`` for every permanent user table of every connectable db."""
        result = {}
        dbs = [r[0] for r in self.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
            "ORDER BY 1")]
        for db in dbs:
            with self.connect(db) as conn:
                tables = [r[0] for r in conn.execute(USER_TABLES_SQL).fetchall()]
                for table in tables:
                    (digest,) = conn.execute(TABLE_CHECKSUM_SQL.format(table)).fetchone()
                    result[f"{db}.{table}"] = digest
        return result


def initdb(pgdata: Path) -> None:
    """``initdb --data-checksums`` as every test cluster is made (a new system identifier)."""
    proc = as_postgres([str(PG_BIN / "initdb"), "--data-checksums", "--no-sync", "-A",
                        "trust", "-U", PG_USER, "-E", "UTF8", "--locale", "C", "-D",
                        str(pgdata)])
    if proc.returncode != 0:
        raise RuntimeError(f"initdb failed: {proc.stdout}{proc.stderr}")


@pytest.fixture(scope="session")
def pg_template() -> Iterator[Path]:
    """One ``initdb --data-checksums`` data directory, copied by every test cluster (so
    they all share its system identifier)."""
    area = make_area("template-")
    pgdata = area / "pgdata"
    try:
        initdb(pgdata)
    except RuntimeError:
        shutil.rmtree(area, ignore_errors=True)
        raise
    yield pgdata
    remove_area(area)


def cluster_conf(settings: dict[str, str] | None = None) -> str:
    """The lines appended to a copied template's postgresql.conf (later lines win):
    the test defaults, then ``settings``. Shared with the simulated hosts (fleet/hosts.py),
    which append them from inside a host."""
    conf = {"autovacuum": "off", "max_wal_senders": "10", "fsync": "off", **(settings or {})}
    return "\n# dbsafe tests\n" + "".join(f"{k} = {v}\n" for k, v in conf.items())


def own_cluster(area: Path, name: str) -> Pg:
    """A running cluster made by initdb: its own system identifier, as every real cluster
    has (copies of the test template share one)."""
    pgdata = area / name
    initdb(pgdata)
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write(cluster_conf())
    pg = Pg(pgdata=pgdata, port=free_port(), sockdir=area, log=area / f"{name}.log")
    pg.start()
    return pg


def new_cluster(template: Path, area: Path, name: str = "pgdata",
                settings: dict[str, str] | None = None, start: bool = True) -> Pg:
    """A cluster in ``area`` copied from the template, optionally started.

    ``fsync = off``: tests crash PostgreSQL's processes, never the machine, and written data
    survives a process crash in the page cache; flushing it to disk would only cost time.
    A restore copies postgresql.conf, so restored clusters inherit it."""
    pgdata = area / name
    subprocess.run(["cp", "-a", str(template), str(pgdata)], check=True)
    with open(pgdata / "postgresql.conf", "a") as f:
        f.write(cluster_conf(settings))
    pg = Pg(pgdata=pgdata, port=free_port(), sockdir=area, log=area / f"{name}.log")
    if start:
        pg.start()
    return pg


@pytest.fixture
def area() -> Iterator[Path]:
    """A per-test temp folder under /var/tmp (owned by postgres); every cluster in it is
    stopped and the folder removed afterwards."""
    path = make_area()
    yield path
    remove_area(path)


@pytest.fixture
def small_fs(area: Path) -> Iterator[Callable[[str, str], Path]]:
    """``small_fs(name, size)``: a tmpfs of ``size`` (``"48m"``) mounted at ``area/name``,
    to fill on purpose; unmounted afterwards (skipped where mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = area / name
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(where)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        stop_clusters_under(where)
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture(scope="module")
def module_area() -> Iterator[Path]:
    path = make_area("mod-")
    yield path
    remove_area(path)


# The shared source cluster ----------------------------------------------------------------

SOURCE_SETUP = [
    # A table of many types, with NULLs and a TOASTed value.
    """CREATE TABLE kinds (
         id int PRIMARY KEY, t text, n numeric(20,5), j jsonb, b bytea,
         ts timestamptz, arr int[], flag boolean)""",
    """INSERT INTO kinds
       SELECT g, 'row ' || g, g * 1.5, jsonb_build_object('g', g, 'sq', g * g),
              decode(md5(g::text), 'hex'), timestamptz '2024-01-01 00:00+00' + g * interval '1 min',
              ARRAY[g, g + 1], g % 2 = 0
       FROM generate_series(1, 2000) g""",
    "INSERT INTO kinds (id, t) VALUES (100001, NULL), (100002, repeat('toast me ', 20000))",
    # A partitioned table.
    "CREATE TABLE events (id int, day date, payload text) PARTITION BY RANGE (day)",
    "CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') "
    "TO ('2025-01-01')",
    "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') "
    "TO ('2026-01-01')",
    "INSERT INTO events SELECT g, date '2024-06-01' + (g % 400), md5(g::text) "
    "FROM generate_series(1, 5000) g",
    # An unlogged table: a restore brings it back empty (only its init fork is copied).
    "CREATE UNLOGGED TABLE scratch_unlogged (id int PRIMARY KEY, v text)",
    "INSERT INTO scratch_unlogged SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
]


@pytest.fixture(scope="session")
def source(pg_template: Path) -> Iterator[Pg]:
    """The shared source cluster: pgbench (scale 5) plus assorted tables in db ``bench``,
    a user db ``appdb``, a db read-only by setting and one that takes no connections.

    autovacuum is off so that nothing changes it behind a test's back (test_dedup needs an
    unchanged instance between two backups). Tests may write to it, but must not break it.
    """
    area = make_area("source-")
    try:
        pg = new_cluster(pg_template, area, "src")
        pg.execute("CREATE DATABASE bench")
        pg.pgbench("-i", "-s", "5", "-q", dbname="bench")
        for sql in SOURCE_SETUP:
            pg.execute(sql, "bench")
        pg.execute("CREATE DATABASE appdb")
        pg.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)", "appdb")
        pg.execute("INSERT INTO notes SELECT g, repeat('n', g % 50) "
                   "FROM generate_series(1, 500) g", "appdb")
        pg.execute("CREATE DATABASE ro_setting")
        pg.execute("CREATE TABLE frozen (id int)", "ro_setting")
        pg.execute("INSERT INTO frozen SELECT generate_series(1, 10)", "ro_setting")
        pg.execute("ALTER DATABASE ro_setting SET default_transaction_read_only = on")
        pg.execute("CREATE DATABASE ro_noconn ALLOW_CONNECTIONS false")
        pg.execute("VACUUM ANALYZE", "bench")
        pg.execute("CHECKPOINT")
    except BaseException:
        remove_area(area)
        raise
    yield pg
    remove_area(area)


# --------------------------------------------------------------------------------------
# the dbsafe command line
# --------------------------------------------------------------------------------------

@dataclass
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> object:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not JSON ({exc}) from {self.argv}:\nstdout: {self.stdout}\n"
                                 f"stderr: {self.stderr}") from None

    def describe(self) -> str:
        return (f"{' '.join(self.argv)} exited {self.returncode}\nstdout: {self.stdout}\n"
                f"stderr: {self.stderr}")


@pytest.fixture(scope="session")
def cli_env() -> Iterator[dict[str, str]]:
    """Environment for dbsafe subprocesses: no DBSAFE_HOME leaking in, logs kept out of
    /root (platformdirs follows the XDG variables), vault keys out of /etc/dbsafe/keys
    (DBSAFE_KEY_DIR; each key file is named by its vault's random id)."""
    state = make_area("xdg-")
    env = {k: v for k, v in os.environ.items() if k not in ("DBSAFE_HOME", "PGUSER",
                                                            "PGHOST", "PGPORT")}
    env.update(XDG_STATE_HOME=str(state / "state"), XDG_DATA_HOME=str(state / "data"),
               XDG_CACHE_HOME=str(state / "cache"), XDG_CONFIG_HOME=str(state / "config"),
               DBSAFE_KEY_DIR=str(state / "keys"), COLUMNS="200", NO_COLOR="1")
    yield env
    remove_area(state)  # dbsafe's own logs are there


def run_cli(env: dict[str, str], *args: str, vault: Path | None = None,
            cwd: Path | None = None, timeout: int = 600) -> CliResult:
    argv = [sys.executable, "-m", "dbsafe"]
    if vault is not None:
        argv += ["--vault", str(vault)]
    argv += [str(a) for a in args]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)
    leaks = secrets_guard.leaks_in(proc.stdout + proc.stderr)
    assert not leaks, f"dbsafe {' '.join(argv[3:])} printed secrets {leaks}"
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def assert_no_traceback(res: CliResult) -> None:
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.describe()


def allow_restores(vault_path: Path, *roots: Path) -> None:
    """Make ``roots`` the restore roots of the client in ``vault_path`` (``restore_roots`` in
    its client.json, as `dbsafe vault restore-roots add` writes it, without a CLI call)."""
    settings_file = vault_path / "client.json"
    settings = json.loads(settings_file.read_text()) if settings_file.exists() else {}
    settings["restore_roots"] = [str(r) for r in roots]
    settings_file.write_text(json.dumps(settings, indent=2))


AS_FROM_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "os.execv(sys.executable, [sys.executable, '-m', 'dbsafe', "
                      "*sys.argv[1:]])")


class Vault:
    """A vault folder and the dbsafe command line pointed at it."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env

    def run(self, *args: str, cwd: Path | None = None, timeout: int = 600) -> CliResult:
        res = run_cli(self.env, *args, vault=self.path, cwd=cwd, timeout=timeout)
        assert_no_traceback(res)
        if res.returncode == 0 and tuple(args[:2]) in (("vault", "init"), ("vault", "connect")):
            # restores may write only below restore roots: a new client's is its test's area
            allow_restores(self.path, self.path.parent)
        return res

    def ok(self, *args: str, cwd: Path | None = None) -> object:
        """Run ``dbsafe ... --json``; it must succeed; returns the parsed JSON."""
        res = self.run(*args, "--json", cwd=cwd)
        assert res.returncode == 0, res.describe()
        return res.json()

    def fail(self, code: str, *args: str, cwd: Path | None = None) -> dict:
        """Run ``dbsafe ... --json``; it must fail with ``code``; returns the JSON output."""
        res = self.run(*args, "--json", cwd=cwd)
        assert res.returncode != 0, res.describe()
        out = res.json()
        assert out["error"]["code"] == code, res.describe()
        assert out["error"]["message"], res.describe()
        return out

    def popen(self, *args: str) -> subprocess.Popen:
        """dbsafe running beside the test, as from a terminal: Ctrl-C (SIGINT) reaches it
        even when the test run itself was started in the background, whose children
        inherit SIGINT ignored (POSIX, for a shell without job control) — the launcher puts
        it back to the default, then becomes dbsafe (exec: the pid is dbsafe's)."""
        return subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, "--vault",
                                 str(self.path), *map(str, args)], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def add_server(self, name: str, pg: Pg) -> dict:
        return self.ok("server", "add", name, "--pgdata", pg.pgdata, "--port", pg.port)

    def backup(self, name: str, *extra: str) -> dict:
        return self.ok("backup", name, *extra)

    def points(self, name: str) -> list[dict]:
        return self.ok("points", name)["points"]

    def chain(self, name: str) -> dict:
        """``dbsafe points NAME --json``: points, log_ranges and gaps."""
        return self.ok("points", name)

    def jobs(self) -> list[dict]:
        return self.ok("jobs", "--limit", "200")

    def size(self) -> int:
        """Bytes of every file in the vault folder."""
        total = 0
        for dirpath, _dirs, files in os.walk(self.path):
            for f in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total

    def pack_files(self) -> list[Path]:
        return sorted(p for p in (self.path / "data").rglob("*") if p.is_file())

    def repository(self):
        from dbsafe.vault.repository import Repository
        return Repository.open(self.path)

    def restore_matches(self, server: str, point_id: str, expected: dict,
                        target: Path) -> None:
        """Restore ``point_id`` into ``target``, start it, compare its tables to
        ``expected`` (``Pg.table_checksums()``), stop it."""
        out = self.ok("restore", server, "--point", point_id, "--to-pgdata", target,
                      "--port", free_port(), "--start")
        pg = restored(target, out["port"])
        try:
            assert pg.table_checksums() == expected
        finally:
            pg.stop()

    @property
    def key_file(self) -> Path:
        """Where this client keeps the key of its encrypted vault (the key folder)."""
        vault_id = json.loads((self.path / "config").read_text())["vault_id"]
        return Path(self.env["DBSAFE_KEY_DIR"]) / f"{vault_id}.key"

    def repository_with_key(self, passphrase: str):
        """The repository of an encrypted vault, opened with this client's key."""
        from dbsafe.vault import crypto
        from dbsafe.vault.repository import Repository
        doc = crypto.parse_key_file(self.key_file.read_bytes())
        master = crypto.unwrap_master(doc, passphrase)
        return Repository.open(self.path, master=lambda: master)


def make_vault(env: dict[str, str], path: Path) -> Vault:
    vault = Vault(path, env)
    info = vault.ok("vault", "init")
    assert info["path"] == str(path)
    return vault


@pytest.fixture
def vault(area: Path, cli_env: dict[str, str]) -> Vault:
    """A fresh, initialised vault in the test's temp area."""
    return make_vault(cli_env, area / "vault")


@pytest.fixture
def wal_vault(area: Path, cli_env: dict[str, str]) -> Vault:
    """A fresh vault whose agent runs from ``area/run`` (reachable by postgres; the area's
    finalizer stops the agent)."""
    env = {**cli_env, "DBSAFE_RUN_DIR": str(area / "run")}
    return make_vault(env, area / "vault")


@pytest.fixture
def src_vault(vault: Vault, source: Pg) -> Vault:
    """A fresh vault with the shared source cluster registered as ``src``."""
    vault.add_server("src", source)
    return vault


def restored(target: Path, port: int) -> Pg:
    """A handle on a cluster that ``dbsafe restore --start`` started (socket in pgdata)."""
    return Pg(pgdata=target, port=port, sockdir=target)


# --------------------------------------------------------------------------------------
# catalog backends: SQLite, or a schema of its own on a PostgreSQL cluster
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def catalog_cluster(pg_template: Path) -> Iterator[Pg]:
    """A cluster holding PostgreSQL catalogs: one per test process, started when first used."""
    area = make_area("catalog-")
    try:
        yield new_cluster(pg_template, area, "catalog")
    finally:
        remove_area(area)


def catalog_dsn(pg: Pg, schema: str | None = None, dbname: str = "postgres") -> str:
    """A libpq keyword DSN of ``pg`` (no password: the test clusters trust local users)."""
    dsn = f"host={pg.sockdir} port={pg.port} dbname={dbname} user={PG_USER}"
    return f"{dsn} options='-c search_path={schema}'" if schema else dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_spec(request: pytest.FixtureRequest) -> str:
    """A fresh, empty catalog for ``open_catalog(catalog_spec, tmp_path)``: 'sqlite', or a
    DSN naming a schema of its own on the catalog cluster."""
    if request.param == "sqlite":
        return "sqlite"
    import uuid

    return catalog_dsn(request.getfixturevalue("catalog_cluster"),
                       f"t_{uuid.uuid4().hex[:12]}")
# object storage servers and the storage_location fixture ---------------------------------
from servers.fixtures import (  # noqa: E402, F401 - fixtures for every test module
    azurite_server,
    faulty_location,
    s3_server,
    storage_location,
)
