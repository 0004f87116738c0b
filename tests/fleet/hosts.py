"""Simulated hosts for the fleet tests: Linux network and mount namespaces on this machine.

Why namespaces
    Fleet mode splits dbsafe into a control plane (``dbsafe serve``) and an agent on every
    database server; the agent alone may touch its server's PostgreSQL. On one test machine
    everything could reach everything (one loopback, one file tree), so a control plane
    that read a data directory or connected to a socket itself would pass unnoticed. Each
    simulated host is therefore walled off: whatever crosses hosts must go through the
    network to an address a host listens on.

What each host sees
    * Its own network namespace: loopback, and ``eth0`` with ``host.address``
      (10.231.X.N/24) on a bridge in the root namespace whose address is
      ``fleet.gateway`` (10.231.X.1), where the control plane (and any object store) the
      test runs in its own namespaces listens. Its only route is that subnet's: no default
      route, no forwarding, no NAT, so nothing leaves the machine; IPv6 is off on the
      bridge and the veths, so the only traffic is the tests' own IPv4.
    * Its own mount namespace: a tmpfs (mode 0755, ``tmpfs_size``) on ``host.root``
      (/var/tmp/dbsafe-fleet-XXXX/hosts/NAME). Its clusters, sockets (``host.sockdir``)
      and logs live there, so no other process sees them: from the root namespace and
      from the other hosts, ``host.root`` is an empty folder. Everything else (the
      program files, /work, the rest of /var/tmp, a session's ``pg_template``) is the
      machine's shared tree.
    Process ids are not separate: the test can see and signal a host's processes.

Running things in a host
    A holder process (``ip netns exec NS unshare --mount ...``) mounts the tmpfs and then
    only holds the namespaces; it exits as soon as the process that made the fleet dies.
    ``host.run(argv, user=...)`` and ``host.popen(...)`` enter both namespaces with
    ``nsenter --target HOLDER --net --mount`` (``user`` wraps the command in ``runuser``),
    with a minimal environment (PATH, LANG and what the caller passes), never the test's.
    Files of a host are read and written through it (``write_file``, ``read_file``,
    ``exists``). ``host.make_cluster`` copies the session's template cluster into the
    host; ``host.make_standby`` runs pg_basebackup on that host against another host's
    address, so that the standby streams across namespaces. ``HostPg.execute`` runs psql
    in the host and returns rows of strings (None for NULL).

Teardown guarantees
    ``Fleet.close()`` (the ``fleet`` fixture's finalizer, also after a failed test) stops
    every cluster (immediate), terminates what ``popen`` started, kills whatever still
    runs in a host's network namespace and every process it recorded, then deletes the
    namespaces, the veths, the bridge and the fleet's folder. A host's tmpfs goes with the
    last process in its mount namespace. The names of everything a fleet creates are
    written to its folder's registry before it is created, next to ``owner.pid``; a fleet
    whose owner died (a killed test run) is torn down by ``cleanup_stale()``, which every
    new fleet runs first. Nothing that is not in a registry is touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import os
import random
import re
import secrets
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from conftest import PG_BIN, PG_USER, TMP_ROOT, cluster_conf
from replicas import basebackup_argv, wait_streaming

from dbsafe.core.concurrency import pid_alive

AREA_PREFIX = "dbsafe-fleet-"
LOCK_FILE = TMP_ROOT / "dbsafe-fleet.lock"
OWNER_FILE = "owner.pid"
REGISTRY_FILE = "registry.json"
PIDS_FILE = "pids"
SUBNETS = "10.231.{}.0/24"
WORKER_SLOTS = 16  # third octets X with X % 16 == the xdist worker's slot
FIRST_HOST = 10  # host N of a fleet has address .(10 + N); .1 is the gateway
MAX_HOSTS = 99  # veth names carry two digits
FIRST_PORT = 15433  # each host has its own ports; 5432 is avoided all the same
HOST_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}\Z")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FIELD_SEP = "\x1f"  # psql -F: ASCII unit separator
NULL_MARK = "\x1cNULL\x1c"  # psql's null display: file separators around a word
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
NEEDED_TOOLS = ("ip", "nsenter", "unshare", "runuser", "mount")

# The holder: mounts the host's tmpfs in its fresh mount namespace, says so, then holds
# the namespaces until the process that started it (the test) is gone.
HOLDER = """
import os, subprocess, sys, time
root, size, owner = sys.argv[1], sys.argv[2], int(sys.argv[3])
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "dbsafe-fleet",
                root], check=True)
print("ready", flush=True)
while os.getppid() == owner:
    time.sleep(0.2)
"""

# A TCP connection attempt from inside a host (host.can_connect).
CONNECT_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError as exc:
    sys.exit(f"{type(exc).__name__}: {exc}")
"""


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------

def wait_until(predicate: Callable[[], object], timeout: float = 30, what: str = "",
               interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run iproute2's ``ip``; its error text is in the exception when ``check``."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def start_time(pid: int) -> str | None:
    """The boot-relative start time of ``pid`` (field 22 of /proc/PID/stat): a pid plus its
    start time names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def same_process(pid: int, started: str | None) -> bool:
    """Whether ``pid`` still runs and is the process that started at ``started``."""
    return pid_alive(pid) and start_time(pid) == started


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid``; one that is already gone is what teardown wanted anyway."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (field 5 of /proc/PID/stat)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[-1].split()[2]) == pgid:
                members.append(int(stat.parent.name))
    return members


def netns_pids(netns: str) -> list[int]:
    """The processes in a named network namespace (none if it is gone)."""
    proc = ip("netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def netns_names() -> set[str]:
    """The named network namespaces (``ip netns list``; the first word of each line)."""
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line}


def link_exists(name: str) -> bool:
    """Whether an interface ``name`` exists in the root namespace."""
    return ip("link", "show", "dev", name, check=False).returncode == 0


def disable_ipv6(ifname: str, netns: str | None = None) -> None:
    """Keep IPv6 (link-local addresses, router solicitations) off a fleet's link, so that
    the only traffic there is the tests' own IPv4. /proc/sys/net is the writer's network
    namespace's, hence the write from inside ``netns``; skipped where IPv6 is absent."""
    setting = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    script = f"[ ! -e {setting} ] || echo 1 > {setting}"
    argv = ["sh", "-c", script] if netns is None else ["ip", "netns", "exec", netns,
                                                        "sh", "-c", script]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def minimal_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The environment of a command run in a host: PATH and LANG, plus the caller's."""
    return {"PATH": PATH, "LANG": "C.UTF-8", **(extra or {})}


def parse_psql(out: str) -> list[tuple[str | None, ...]]:
    """Rows from ``psql -At -0 -F US -P null=MARK``: every record ends with a NUL (which
    no text value holds), so no rows is "" and one empty value is "\\0"; fields are split
    on the unit separator, and the null display marks NULL apart from ''."""
    return [tuple(None if f == NULL_MARK else f for f in record.split(FIELD_SEP))
            for record in out.split("\0")[:-1]]


# --------------------------------------------------------------------------------------
# can this machine make namespaces?
# --------------------------------------------------------------------------------------

def missing_capabilities() -> list[str]:
    """Which of CAP_NET_ADMIN (netns, veth, bridge) and CAP_SYS_ADMIN (mount namespaces,
    tmpfs) this process lacks."""
    status = Path("/proc/self/status").read_text()
    eff = int(next(line.split()[1] for line in status.splitlines()
                   if line.startswith("CapEff:")), 16)
    return [name for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN),
                                   ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
            if not eff & (1 << bit)]


@functools.cache
def namespaces_available() -> tuple[bool, str]:
    """(True, '') when a netns, a veth pair, a bridge and a mount namespace with a tmpfs can
    be made here, else (False, why, naming the missing capability). Tried for real, once
    per process, with a throwaway registry so that a killed probe is cleaned up too."""
    absent = [tool for tool in NEEDED_TOOLS if shutil.which(tool, path=PATH) is None]
    if absent:
        return False, f"simulated hosts need {', '.join(absent)} (iproute2, util-linux)"
    area, run_id = new_area()
    registry = Registry(area)
    netns, veth, bridge = f"dbsafe-{run_id}-probe", f"dbsv{run_id}pr", f"dbsbr{run_id}"
    registry.add(netns=[netns], links=[veth, bridge])
    mountpoint = area / "probe"
    mountpoint.mkdir()
    steps = [
        ("CAP_NET_ADMIN", ["ip", "netns", "add", netns]),
        ("CAP_NET_ADMIN", ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                           "netns", netns]),
        ("CAP_NET_ADMIN", ["ip", "link", "add", bridge, "type", "bridge"]),
        ("CAP_SYS_ADMIN", ["ip", "netns", "exec", netns, "unshare", "--mount",
                           "--propagation", "private", "--", "mount", "-t", "tmpfs", "-o",
                           "size=1m", "dbsafe-probe", str(mountpoint)]),
    ]
    try:
        for capability, argv in steps:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                missing = missing_capabilities()  # `ip netns add` needs both, for one
                need = (f"this process lacks {' and '.join(missing)}" if missing
                        else f"it needs {capability}")
                return False, (f"cannot make simulated hosts: {shlex.join(argv[:3])} failed "
                               f"({proc.stderr.strip()}); {need}")
    finally:
        destroy(area)
    return True, ""


# --------------------------------------------------------------------------------------
# the registry: what a fleet made, so that anyone can undo it
# --------------------------------------------------------------------------------------

def run_id_in_use(run_id: str) -> bool:
    """Whether an interface or a netns here already carries ``run_id`` in its name."""
    links = json.loads(ip("-j", "link", "show").stdout)
    return any(link["ifname"].startswith(("dbsbr" + run_id, "dbsv" + run_id))
               for link in links) or any(name.startswith(f"dbsafe-{run_id}-")
                                         for name in netns_names())


def new_area() -> tuple[Path, str]:
    """A fleet's folder /var/tmp/dbsafe-fleet-RUNID and its run id, which every name the
    fleet creates carries (dbsbrRUNID, dbsafe-RUNID-HOST, dbsvRUNIDNN): mkdir is atomic,
    so two processes (pytest-xdist workers) never get the same one, and a run id some
    existing interface or netns already carries is skipped. Owned by the creating process
    from the start (owner.pid: pid and start time); traversable by postgres."""
    while True:
        run_id = secrets.token_hex(3)
        if run_id_in_use(run_id):
            continue
        area = TMP_ROOT / f"{AREA_PREFIX}{run_id}"
        try:
            area.mkdir(mode=0o755)
        except FileExistsError:
            continue
        break
    os.chmod(area, 0o755)  # whatever the umask
    pid = os.getpid()
    (area / OWNER_FILE).write_text(f"{pid} {start_time(pid)}\n")
    return area, run_id


class Registry:
    """What a fleet made, in files of its folder, so that its own teardown and any later
    cleanup_stale() undo the same list: the names of its netns and links (written before
    each is created) and the processes it started (pid and start time)."""

    def __init__(self, area: Path) -> None:
        self.area = area

    def load(self) -> dict[str, list[str]]:
        """The names recorded so far (none while the file is not written yet)."""
        try:
            return json.loads((self.area / REGISTRY_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"netns": [], "links": []}

    def add(self, netns: Sequence[str] = (), links: Sequence[str] = ()) -> None:
        """Record names before creating them: a crash in between leaves a name too many,
        which teardown skips, never an object too few."""
        data = self.load()
        data["netns"] += netns
        data["links"] += links
        tmp = self.area / f"{REGISTRY_FILE}.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.area / REGISTRY_FILE)

    def record_pid(self, pid: int | None, what: str) -> None:
        """Note a process (with its start time, so that a reused pid is never killed)."""
        if pid:
            with open(self.area / PIDS_FILE, "a") as f:
                f.write(f"{pid} {start_time(pid)} {what}\n")

    def pids(self) -> list[tuple[int, str | None]]:
        """(pid, start time) of every process recorded."""
        try:
            lines = (self.area / PIDS_FILE).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [(int(pid), started) for pid, started, *_ in (ln.split() for ln in lines)]

    def owner_alive(self) -> bool | None:
        """Whether the process that created the area runs; None while owner.pid is absent."""
        try:
            pid, started = (self.area / OWNER_FILE).read_text().split()
        except (FileNotFoundError, ValueError):
            return None
        return same_process(int(pid), started)


def destroy(area: Path, timeout: float = 30) -> list[str]:
    """Undo everything in ``area``'s registry: kill every process in its network
    namespaces and every recorded one, delete the namespaces and links, remove the folder.
    Returns what it found still there."""
    registry = Registry(area)
    names = registry.load()
    found = [f"netns {ns}" for ns in names["netns"] if ns in netns_names()]
    found += [f"link {link}" for link in names["links"] if link_exists(link)]

    def survivors() -> list[int]:
        alive = [pid for ns in names["netns"] for pid in netns_pids(ns)]
        return alive + [pid for pid, started in registry.pids() if same_process(pid, started)]

    found += [f"pid {pid}" for pid in survivors()]

    def killed_all() -> bool:  # again until none is left: a dying parent may have forked
        alive = survivors()
        for pid in alive:
            kill(pid)
        return not alive

    wait_until(killed_all, timeout, f"the processes of {area} to die")
    for ns in names["netns"]:
        if ns in netns_names():
            ip("netns", "del", ns)
    for link in names["links"]:
        # a veth also goes with its netns, but the kernel frees a netns later (async)
        if ip("link", "del", "dev", link, check=False).returncode and link_exists(link):
            raise RuntimeError(f"cannot delete link {link}")
    wait_until(lambda: not any(map(link_exists, names["links"])), timeout,
               f"the links of {area} to go")
    shutil.rmtree(area, ignore_errors=True)
    return found


@contextlib.contextmanager
def fleet_lock() -> Iterator[None]:
    """One process at a time picks a subnet and creates its bridge, or cleans up stale
    fleets, so that two pytest-xdist workers never take the same subnet."""
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cleanup_stale() -> list[str]:
    """Tear down the fleets whose creating process is gone (killed test runs): returns
    what was found (netns, links, pids) in their registries."""
    with fleet_lock():
        return cleanup_stale_locked()


def cleanup_stale_locked() -> list[str]:
    """cleanup_stale() for a caller that holds fleet_lock already (flock is per open file:
    taking it twice in one process would wait for itself)."""
    found = []
    for area in sorted(TMP_ROOT.glob(f"{AREA_PREFIX}*")):
        owner_alive = Registry(area).owner_alive()
        if owner_alive is None:  # mkdtemp'd but not yet owned: only a dead owner's is old
            with contextlib.suppress(FileNotFoundError):
                if time.time() - area.stat().st_mtime > 60:
                    shutil.rmtree(area, ignore_errors=True)
            continue
        if not owner_alive:
            found += destroy(area)
    return found


# --------------------------------------------------------------------------------------
# the subnet
# --------------------------------------------------------------------------------------

def worker_slot() -> int:
    """0 outside pytest-xdist, N + 1 on worker gwN."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0


def networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network on an interface or in a route here (the default route aside)."""
    nets = []
    for dev in json.loads(ip("-j", "-4", "addr", "show").stdout):
        for info in dev.get("addr_info", []):
            nets.append(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network)
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout):
        with contextlib.suppress(ValueError):  # "default", and any other word
            nets.append(ipaddress.ip_network(route.get("dst", "default"), strict=False))
    return nets


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.231.X.0/24 no interface or route uses: X in this xdist worker's slot, chosen at
    random among those (call under fleet_lock)."""
    used = networks_in_use()
    slot = worker_slot() % WORKER_SLOTS
    thirds = [x for x in range(1, 255) if x % WORKER_SLOTS == slot]
    random.shuffle(thirds)
    for x in thirds:
        net = ipaddress.ip_network(SUBNETS.format(x))
        if not any(net.overlaps(other) for other in used):
            return net
    raise RuntimeError(f"no free 10.231.X.0/24 subnet for worker slot {slot}")


# --------------------------------------------------------------------------------------
# PostgreSQL in a host
# --------------------------------------------------------------------------------------

@dataclass
class HostPg:
    """A PostgreSQL cluster inside a simulated host: every command runs there (the
    fields are paths in the host's mount namespace, the port is in its network one)."""

    host: SimulatedHost
    name: str
    pgdata: Path
    port: int
    sockdir: Path
    log: Path
    pid: int | None = field(default=None, repr=False)  # the postmaster, once started

    def __str__(self) -> str:
        return f"{self.host.name}:{self.name}"

    def pg_ctl(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
        """pg_ctl on this data directory, as postgres, in the host; the caller checks."""
        return self.host.run([str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), *args],
                             user=PG_USER, check=False, timeout=timeout)

    def configure(self, settings: dict[str, str]) -> None:
        """Append settings (with the test defaults) to postgresql.conf; later lines win."""
        self.host.append_file(self.pgdata / "postgresql.conf", cluster_conf(settings))

    def add_hba(self, *lines: str) -> None:
        """Append pg_hba.conf lines (``host replication postgres 10.231.X.M/32 trust``),
        and reload if the server runs."""
        self.host.append_file(self.pgdata / "pg_hba.conf", "".join(f"{ln}\n" for ln in lines))
        if self.running:
            proc = self.pg_ctl("reload")
            assert proc.returncode == 0, proc.stderr

    def start(self) -> None:
        """pg_ctl start -w; the postmaster's pid is recorded for teardown."""
        proc = self.pg_ctl("-l", str(self.log), "-w", "-t", "120", "start")
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start of {self} failed: {proc.stdout}{proc.stderr}\n"
                               f"{self.server_log()}")
        self.pid = self.postmaster_pid()
        self.host.fleet.registry.record_pid(self.pid, f"postmaster {self}")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -w -m ``mode`` in the host; raises if it fails."""
        proc = self.pg_ctl("stop", "-m", mode, "-w", "-t", "120")
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl stop of {self} failed: {proc.stdout}{proc.stderr}")

    @property
    def running(self) -> bool:
        """Whether the postmaster runs (pg_ctl status, in the host: from here the data
        directory is not even visible)."""
        return self.pg_ctl("status").returncode == 0

    def postmaster_pid(self) -> int | None:
        """The first line of postmaster.pid; pids are not separated, so it is signalable."""
        proc = self.host.run(["head", "-n1", str(self.pgdata / "postmaster.pid")], check=False)
        return int(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None

    def server_log(self) -> str:
        """The server's log (pg_ctl -l), for failure messages."""
        return self.host.run(["cat", str(self.log)], check=False).stdout

    def psql_argv(self, db: str = "postgres") -> list[str]:
        """psql over this cluster's socket, unaligned and quiet, records ended by NUL,
        fields by the unit separator, NULL shown as NULL_MARK (see parse_psql)."""
        return [str(PG_BIN / "psql"), "-XAtq", "-0", "-F", FIELD_SEP, "-P",
                f"null={NULL_MARK}", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir), "-p",
                str(self.port), "-U", PG_USER, "-d", db]

    def execute(self, sql: str, db: str = "postgres") -> list[tuple[str | None, ...]]:
        """Run ``sql`` with psql in the host: the rows of its last statement, as strings."""
        proc = self.host.run([*self.psql_argv(db), "-c", sql], user=PG_USER, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql on {self} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()}\nSQL: {sql}")
        return parse_psql(proc.stdout)

    def scalar(self, sql: str, db: str = "postgres") -> str | None:
        """The first value of the first row (None for no row, or NULL)."""
        rows = self.execute(sql, db)
        return rows[0][0] if rows else None

    def teardown(self) -> None:
        """Immediate stop inside the host while it is there, then the postmaster's pid."""
        if self.host.holder_alive:
            self.pg_ctl("stop", "-m", "immediate", "-w", "-t", "20", timeout=40)
        if self.pid and pid_alive(self.pid):
            kill(self.pid)


# --------------------------------------------------------------------------------------
# a host
# --------------------------------------------------------------------------------------

class HostCommandError(subprocess.CalledProcessError):
    """A command in a simulated host failed; says where, and what it printed."""

    def __init__(self, host: str, proc: subprocess.CompletedProcess, argv: Sequence[str]):
        super().__init__(proc.returncode, list(argv), proc.stdout, proc.stderr)
        self.host = host

    def __str__(self) -> str:
        return (f"on host {self.host}: {shlex.join(self.cmd)} exited {self.returncode}\n"
                f"stdout: {self.stdout}\nstderr: {self.stderr}")


class SimulatedHost:
    """One machine of the fleet: its own network namespace (``address``) and mount
    namespace (a tmpfs on ``root``); see the module's docstring."""

    def __init__(self, fleet: Fleet, name: str, index: int) -> None:
        self.fleet = fleet
        self.name = name
        self.netns = f"dbsafe-{fleet.run_id}-{name}"
        self.veth = f"dbsv{fleet.run_id}{index:02d}"  # the root namespace's end
        self.address = str(fleet.subnet.network_address + FIRST_HOST + index)
        self.root = fleet.area / "hosts" / name
        self.sockdir = self.root / "run"
        self.logdir = self.root / "log"
        self.holder: subprocess.Popen | None = None
        self.clusters: list[HostPg] = []
        self.processes: list[subprocess.Popen] = []
        self.process_logs: dict[int, Path] = {}
        self.as_user: dict[int, bool] = {}  # pid of a popen: whether runuser wraps it
        self._ports: set[int] = set()

    def __repr__(self) -> str:
        return f"SimulatedHost({self.name!r}, {self.address})"

    # creation -----------------------------------------------------------------------

    def create(self) -> None:
        """The netns with loopback and eth0 on the fleet's bridge, then the holder."""
        self.fleet.registry.add(netns=[self.netns], links=[self.veth])
        self.root.mkdir(parents=True)
        os.chmod(self.root.parent, 0o755)
        ip("netns", "add", self.netns)
        ip("-n", self.netns, "link", "set", "lo", "up")
        ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns",
           self.netns)
        disable_ipv6(self.veth)
        disable_ipv6("eth0", self.netns)
        ip("link", "set", self.veth, "master", self.fleet.bridge, "up")
        ip("-n", self.netns, "addr", "add", f"{self.address}/{self.fleet.subnet.prefixlen}",
           "dev", "eth0")
        ip("-n", self.netns, "link", "set", "eth0", "up")
        self.start_holder()
        self.run(["install", "-d", "-o", PG_USER, "-g", PG_USER, "-m", "0755",
                  str(self.sockdir), str(self.logdir)])

    def start_holder(self, timeout: float = 30) -> None:
        """Start the process whose namespaces are the host's, and wait for its tmpfs."""
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation",
             "private", "--", sys.executable, "-I", "-c", HOLDER, str(self.root),
             self.fleet.tmpfs_size, str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=minimal_env(None), cwd="/")
        self.fleet.registry.record_pid(self.holder.pid, f"holder {self.name}")
        assert self.holder.stdout is not None
        ready, _, _ = select.select([self.holder.stdout], [], [], timeout)
        line = self.holder.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.holder.kill()
            _, err = self.holder.communicate(timeout=10)
            raise RuntimeError(f"host {self.name}: the namespace holder did not start: "
                               f"{err.decode(errors='replace').strip()}")

    @property
    def holder_alive(self) -> bool:
        """Whether the host still exists: nsenter needs the holder's pid."""
        return self.holder is not None and self.holder.poll() is None

    # commands -----------------------------------------------------------------------

    def command(self, argv: Sequence[str | Path], user: str | None = None) -> list[str]:
        """``argv`` as run inside this host's namespaces, as ``user`` if given."""
        if not self.holder_alive:
            raise RuntimeError(f"host {self.name} is gone (its holder ended)")
        assert self.holder is not None
        as_user = ["runuser", "-u", user, "--"] if user else []
        return ["nsenter", "--target", str(self.holder.pid), "--net", "--mount", "--",
                *as_user, *map(str, argv)]

    def run(self, argv: Sequence[str | Path], user: str | None = None,
            env: dict[str, str] | None = None, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command in the host and wait for it; output is captured as text."""
        proc = subprocess.run(self.command(argv, user), env=minimal_env(env), cwd="/",
                              input=input, capture_output=True, text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise HostCommandError(self.name, proc, list(map(str, argv)))
        return proc

    def popen(self, argv: Sequence[str | Path], user: str | None = None,
              env: dict[str, str] | None = None, stdout: int | IO | None = None,
              stderr: int | IO | None = subprocess.STDOUT) -> subprocess.Popen:
        """Start a long-running command in the host (an agent); teardown kills it. Its
        output goes to a log file in the fleet's folder unless ``stdout`` says otherwise
        (``host.process_log(proc)`` reads it)."""
        log = None
        if stdout is None:
            log = self.fleet.area / "logs" / f"{self.name}-{len(self.processes)}.log"
            log.parent.mkdir(exist_ok=True)
            stdout = open(log, "wb")  # noqa: SIM115 - the child keeps it; closed below
        try:
            proc = subprocess.Popen(self.command(argv, user), env=minimal_env(env), cwd="/",
                                    stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                    start_new_session=True)
        finally:
            if log is not None:
                stdout.close()  # type: ignore[union-attr]
        self.processes.append(proc)
        self.as_user[proc.pid] = bool(user)
        self.fleet.registry.record_pid(proc.pid, f"{self.name}: {argv[0]}")
        if log is not None:
            self.process_logs[proc.pid] = log
        return proc

    def terminate(self, proc: subprocess.Popen, timeout: float = 5) -> int:
        """Stop a process of ``popen`` as a service manager would: SIGTERM, SIGKILL to its
        process group after ``timeout``; returns its exit status."""
        self.send_term(proc)
        return self.wait_or_kill(proc, timeout)

    def send_term(self, proc: subprocess.Popen) -> None:
        """SIGTERM to the process group of a ``popen``. Under runuser, to the command
        only: runuser, signalled itself, waits 2 seconds before it lets go, and it exits
        anyway when the command does."""
        members = group_members(proc.pid)
        if self.as_user.get(proc.pid):
            members = [pid for pid in members if pid != proc.pid]
        for pid in members:
            kill(pid, signal.SIGTERM)

    @staticmethod
    def wait_or_kill(proc: subprocess.Popen, timeout: float) -> int:
        """Its exit status after ``timeout``, or after SIGKILL to its process group."""
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(10)

    def process_log(self, proc: subprocess.Popen) -> str:
        """What a ``popen`` process printed, when its output went to the default log."""
        return self.process_logs[proc.pid].read_text(errors="replace")

    def can_connect(self, address: str, port: int, timeout: float = 3) -> bool:
        """Whether a TCP connection from this host to ``address:port`` is accepted."""
        return self.run([sys.executable, "-I", "-c", CONNECT_PROBE, address, str(port),
                         str(timeout)], check=False, timeout=timeout + 30).returncode == 0

    # files --------------------------------------------------------------------------

    def write_file(self, path: str | Path, text: str, owner: str | None = None,
                   mode: int = 0o644) -> None:
        """Write a file as this host sees it (its root only exists in its namespace)."""
        script = 'cat > "$1" && chmod "$2" "$1" && { [ -z "$3" ] || chown "$3:" "$1"; }'
        self.run(["sh", "-c", script, "sh", str(path), f"{mode:o}", owner or ""], input=text)

    def append_file(self, path: str | Path, text: str) -> None:
        """Append to a file of the host (settings, pg_hba.conf lines)."""
        self.run(["sh", "-c", 'cat >> "$1"', "sh", str(path)], input=text)

    def read_file(self, path: str | Path) -> str:
        """A file as the host sees it."""
        return self.run(["cat", str(path)]).stdout

    def exists(self, path: str | Path) -> bool:
        """Whether ``path`` exists as the host sees it."""
        return self.run(["test", "-e", str(path)], check=False).returncode == 0

    def mkdir(self, path: str | Path, owner: str | None = None, mode: int = 0o755) -> None:
        """A folder of the host (host.root itself belongs to root: postgres cannot)."""
        owned = ["-o", owner, "-g", owner] if owner else []
        self.run(["install", "-d", *owned, "-m", f"{mode:o}", str(path)])

    # PostgreSQL ---------------------------------------------------------------------

    def new_pg(self, name: str, port: int | None) -> HostPg:
        """A cluster's handle, listed for teardown before anything of it exists."""
        port = port or next(p for p in range(FIRST_PORT, 65536) if p not in self._ports)
        if port in self._ports or any(pg.name == name for pg in self.clusters):
            raise ValueError(f"host {self.name} already has a cluster {name} or port {port}")
        self._ports.add(port)
        pg = HostPg(self, name, self.root / name, port, self.sockdir,
                    self.logdir / f"{name}.log")
        self.clusters.append(pg)
        return pg

    def local_settings(self, pg: HostPg, listen_on_address: bool) -> dict[str, str]:
        """Where a cluster of this host listens: set in postgresql.conf rather than on
        pg_ctl's command line, so that any later start (an agent's) uses them too."""
        listen = f"localhost,{self.address}" if listen_on_address else "localhost"
        return {"port": str(pg.port), "unix_socket_directories": f"'{pg.sockdir}'",
                "listen_addresses": f"'{listen}'", "cluster_name": f"'{self.name}-{pg.name}'"}

    def make_cluster(self, name: str, port: int | None = None, listen_on_address: bool = False,
                     settings: dict[str, str] | None = None,
                     hba: Sequence[str] | None = None, start: bool = True) -> HostPg:
        """A cluster in ``root/name``, copied from the fleet's template inside the host.
        It listens on localhost (and on ``address`` with ``listen_on_address``); ``hba``
        lines are added to its pg_hba.conf (local connections are trusted)."""
        if self.fleet.template is None:
            raise ValueError("make_cluster needs Fleet(template=...) (the pg_template fixture)")
        pg = self.new_pg(name, port)
        self.run(["cp", "-a", str(self.fleet.template), str(pg.pgdata)])
        pg.configure({**self.local_settings(pg, listen_on_address), **(settings or {})})
        if hba:
            pg.add_hba(*hba)
        if start:
            pg.start()
        return pg

    def make_standby(self, primary: HostPg, name: str, port: int | None = None) -> HostPg:
        """A standby on this host streaming from ``primary`` (on another host) over the
        network: pg_basebackup runs here against the primary's address, which must listen
        there and trust this host's address for replication in its pg_hba.conf."""
        pg = self.new_pg(name, port)
        self.mkdir(pg.pgdata, owner=PG_USER, mode=0o700)
        self.run(basebackup_argv(primary.host.address, primary.port, pg.pgdata),
                 user=PG_USER, timeout=300)
        # the copied postgresql.conf names the primary's port, address and socket folder
        pg.configure(self.local_settings(pg, listen_on_address=False))
        pg.start()
        wait_streaming(pg)
        return pg

    # teardown -----------------------------------------------------------------------

    def stop_everything(self) -> None:
        """Clusters (immediate), then what popen started (TERM, then KILL): the rest of
        teardown, by the registry, kills whatever is left in the namespace."""
        for pg in self.clusters:
            pg.teardown()
        running = [proc for proc in self.processes if proc.poll() is None]
        for proc in running:
            self.send_term(proc)
        deadline = time.monotonic() + 5
        for proc in running:
            self.wait_or_kill(proc, max(0.1, deadline - time.monotonic()))

    def reap(self) -> None:
        """Collect the holder (our child) once the registry's teardown killed it."""
        if self.holder is not None:
            self.holder.kill()
            self.holder.communicate(timeout=10)


# --------------------------------------------------------------------------------------
# the fleet
# --------------------------------------------------------------------------------------

class Fleet:
    """A bridge in the root namespace (``gateway`` on ``subnet``) and the simulated hosts
    on it; one per test (the ``fleet`` fixture). Use as a context manager: leaving it tears
    everything down, even after an exception."""

    def __init__(self, template: Path | None = None, tmpfs_size: str = "512m") -> None:
        self.template = template  # a data directory to copy (conftest's pg_template)
        self.tmpfs_size = tmpfs_size
        self.hosts: dict[str, SimulatedHost] = {}
        self.area: Path
        self.run_id: str
        self.bridge: str
        self.registry: Registry
        self.subnet: ipaddress.IPv4Network
        self.gateway: str

    def __enter__(self) -> Fleet:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Clean up after crashed runs, then take a free subnet and make the bridge."""
        ok, reason = namespaces_available()
        if not ok:
            raise RuntimeError(reason)
        with fleet_lock():
            cleanup_stale_locked()
            self.area, self.run_id = new_area()
            self.bridge = f"dbsbr{self.run_id}"
            self.registry = Registry(self.area)
            try:
                self.make_bridge()
            except BaseException:
                destroy(self.area)
                raise

    def make_bridge(self) -> None:
        """The bridge with the gateway address (call under fleet_lock: the subnet is
        taken once an interface has it)."""
        self.subnet = free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.registry.add(links=[self.bridge])
        ip("link", "add", self.bridge, "type", "bridge")
        disable_ipv6(self.bridge)
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> SimulatedHost:
        """A new host ``name`` (lower-case letters, digits, dashes) on the bridge."""
        if not HOST_NAME.match(name) or name in self.hosts:
            raise ValueError(f"bad or duplicate host name {name!r}")
        if len(self.hosts) >= MAX_HOSTS:
            raise ValueError(f"a fleet has at most {MAX_HOSTS} hosts")
        host = SimulatedHost(self, name, len(self.hosts))
        self.hosts[name] = host
        host.create()
        return host

    def close(self) -> None:
        """Stop each host's clusters and processes, then undo the registry (kill what is
        left, delete netns, veths, bridge, folder). Errors are raised after all of it."""
        errors = []
        for host in self.hosts.values():
            try:
                host.stop_everything()
            except Exception as exc:  # teardown goes on; the error is raised at the end
                errors.append(f"host {host.name}: {exc!r}")
        try:
            destroy(self.area)
        except Exception as exc:
            errors.append(f"fleet {self.area}: {exc!r}")
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.reap()
        if errors:
            raise RuntimeError("fleet teardown: " + "; ".join(errors))
