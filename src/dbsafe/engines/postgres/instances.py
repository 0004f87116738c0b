"""The PostgreSQL instances (clusters) of this host, found three ways.

- Debian's ``pg_lsclusters`` (postgresql-common): every cluster of the packaged layout,
  running or not. postgresql-common 248 (Debian 12) has ``--json``; older ones print
  columns, which are parsed instead.
- Running postmasters, from /proc: clusters started by hand or by other tools (pg_ctl,
  containers sharing the host's process space, test clusters). A postmaster is a
  ``postgres`` process whose parent is not one; it runs inside its data directory
  (/proc/PID/cwd), and its postmaster.pid says its port.
- Data directories the caller already knows (registered in the vault), so that a stopped
  registered instance is listed too.

The same data directory found more than once is listed once, with every source in
``sources`` and the first one (in the order above) in ``source``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from dbsafe.core.child_env import SAFE_PATH, tool_env
from dbsafe.core.errors import DbsafeError
from dbsafe.core.regular_files import NotRegularFile, read_small
from dbsafe.engines.postgres import cluster

PROC = Path("/proc")


def find_instances(extra_pgdata: Iterable[Path] = ()) -> list[dict]:
    """Every instance found: pgdata, port, version, bin_dir, running, source, sources,
    pid, cluster (Debian's VERSION/NAME, else None), sorted by data directory."""
    found: dict[str, dict] = {}
    for entry in lsclusters():
        _merge(found, entry, "pg_lsclusters")
    for entry in running_postmasters():
        _merge(found, entry, "postmaster")
    for pgdata in extra_pgdata:
        _merge(found, {"pgdata": str(pgdata)}, "registered")
    return [_complete(found[k]) for k in sorted(found)]


def _merge(found: dict[str, dict], entry: dict, source: str) -> None:
    key = _canonical(entry["pgdata"])
    row = found.setdefault(key, {"pgdata": key, "port": None, "version": None,
                                 "bin_dir": None, "running": False, "pid": None,
                                 "cluster": None, "source": source, "sources": []})
    if source not in row["sources"]:
        row["sources"].append(source)
    for k, v in entry.items():
        if k != "pgdata" and v is not None and row.get(k) in (None, False):
            row[k] = v


def _canonical(pgdata: str) -> str:
    try:
        return str(Path(pgdata).resolve())
    except OSError:
        return str(pgdata)


def _complete(row: dict) -> dict:
    """Fill what the data directory itself says: version, and the live postmaster."""
    pgdata = Path(row["pgdata"])
    with contextlib.suppress(OSError, ValueError, NotRegularFile):
        row["version"] = int(read_small(str(pgdata / "PG_VERSION")).split(".")[0])
    try:
        postmaster = cluster.running_postmaster(pgdata)
    except DbsafeError:
        row["running"] = False
    except OSError:  # unreadable data directory: keep what the other sources said
        pass
    else:
        row.update(running=True, port=postmaster.port, pid=postmaster.pid)
    if row["bin_dir"] is None and row["version"] is not None:
        with contextlib.suppress(DbsafeError):
            row["bin_dir"] = cluster.find_bin_dir(row["version"])
    return row


# pg_lsclusters ----------------------------------------------------------------------------

def lsclusters() -> list[dict]:
    """Debian's clusters (empty where postgresql-common is not installed)."""
    exe = shutil.which("pg_lsclusters", path=SAFE_PATH)
    if exe is None:
        return []
    proc = subprocess.run([exe, "--json"], capture_output=True, text=True, timeout=60,
                          env=tool_env())
    if proc.returncode == 0 and proc.stdout.lstrip().startswith("["):
        return [_from_json(c) for c in json.loads(proc.stdout)]
    proc = subprocess.run([exe, "--no-header"], capture_output=True, text=True, timeout=60,
                          env=tool_env())
    if proc.returncode != 0:
        return []
    return parse_columns(proc.stdout)


def _from_json(c: dict) -> dict:
    version = int(str(c["version"]).split(".")[0])
    return {"pgdata": c["pgdata"], "port": int(c["port"]), "version": version,
            "running": bool(int(c.get("running", 0))),
            "cluster": f"{c['version']}/{c['cluster']}"}


def parse_columns(text: str) -> list[dict]:
    """``pg_lsclusters --no-header`` lines: Ver Cluster Port Status Owner Data-dir Log."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or not parts[2].isdigit():
            continue
        version, name, port, status, _owner, pgdata = parts[:6]
        rows.append({"pgdata": pgdata, "port": int(port),
                     "version": int(version.split(".")[0]),
                     "running": status.startswith("online"),
                     "cluster": f"{version}/{name}"})
    return rows


# running postmasters ----------------------------------------------------------------------

def running_postmasters(proc_root: Path = PROC) -> list[dict]:
    """A row per live postmaster: pgdata, pid, bin_dir (port: from postmaster.pid later)."""
    comms = {}
    parents = {}
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        stat = _read(Path(entry.path) / "stat")
        if stat is None:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        head, _, tail = stat.rpartition(")")
        comms[int(entry.name)] = head.partition("(")[2]
        parents[int(entry.name)] = int(tail.split()[1])
    rows = []
    for pid, comm in comms.items():
        if comm not in ("postgres", "postmaster") or comms.get(parents[pid]) in (
                "postgres", "postmaster"):
            continue
        pgdata = _postmaster_pgdata(proc_root / str(pid))
        if pgdata is None:
            continue
        exe = _readlink(proc_root / str(pid) / "exe")
        rows.append({"pgdata": pgdata, "pid": pid, "running": True,
                     "bin_dir": str(Path(exe).parent) if exe else None})
    return rows


def _postmaster_pgdata(proc_dir: Path) -> str | None:
    """The postmaster works in its data directory; else its -D argument, else PGDATA."""
    cwd = _readlink(proc_dir / "cwd")
    if cwd and (Path(cwd) / "PG_VERSION").exists():
        return cwd
    cmdline = (_read(proc_dir / "cmdline") or "").split("\0")
    for i, arg in enumerate(cmdline):
        if arg == "-D" and i + 1 < len(cmdline):
            return cmdline[i + 1]
        if arg.startswith("-D") and len(arg) > 2:
            return arg[2:]
    for var in (_read(proc_dir / "environ") or "").split("\0"):
        if var.startswith("PGDATA="):
            return var[len("PGDATA="):]
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return None


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
