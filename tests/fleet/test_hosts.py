"""The simulated hosts themselves (hosts.py): what a host hides from the root namespace and
from the other hosts, that replication crosses hosts over their addresses, and that
nothing is left behind, after a failed test or a killed test run."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import PG_BIN, PG_USER

from dbsafe.core.concurrency import pid_alive

from .hosts import (
    Fleet,
    cleanup_stale_locked,
    fleet_lock,
    link_exists,
    netns_names,
    netns_pids,
    wait_until,
)

TESTS = Path(__file__).resolve().parents[1]


def connect_root(**kwargs: object) -> psycopg.Connection:
    """A connection attempt from the root namespace (where the control plane runs)."""
    return psycopg.connect(user=PG_USER, dbname="postgres", connect_timeout=5, **kwargs)


def mounts_naming(path: Path) -> list[str]:
    """The processes (any mount namespace) whose mount table names a path under ``path``."""
    found = []
    for mounts in Path("/proc").glob("[0-9]*/mounts"):
        try:
            if str(path) in mounts.read_text():
                found.append(mounts.parent.name)
        except OSError:  # the process ended meanwhile
            pass
    return found


# What the fleet fixture's skip says, from a process without one capability.
PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from fleet.hosts import namespaces_available
print(json.dumps(namespaces_available()))
"""


@pytest.mark.parametrize("capability", ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
def test_without_a_capability_the_skip_reason_names_it(namespaces, capability):
    drop = "-" + capability.removeprefix("CAP_").lower()
    proc = subprocess.run(["setpriv", "--bounding-set", drop, "--", sys.executable, "-c",
                           PROBE, str(TESTS)], capture_output=True, text=True, timeout=120,
                          check=True)
    ok, reason = json.loads(proc.stdout)
    assert not ok and reason.endswith(f"this process lacks {capability}"), reason


def test_the_root_namespace_sees_no_file_and_reaches_no_cluster_of_a_host(fleet):
    a = fleet.add_host("a")
    hidden = a.make_cluster("hidden")
    shown = a.make_cluster("shown", listen_on_address=True)
    a.write_file(a.root / "note", "only on a\n", owner=PG_USER, mode=0o600)

    # inside the host, all is there
    assert a.exists(hidden.pgdata / "PG_VERSION")
    assert a.read_file(a.root / "note") == "only on a\n"
    assert a.run(["stat", "-c", "%U %a", a.root / "note"]).stdout.split() == [PG_USER, "600"]
    assert hidden.scalar("SELECT current_setting('data_directory')") == str(hidden.pgdata)

    # from here, the host's root is an empty folder: no data directory, no socket
    assert a.root.is_dir() and list(a.root.iterdir()) == []
    with pytest.raises(psycopg.OperationalError, match="No such file or directory"):
        connect_root(host=str(a.sockdir), port=hidden.port)
    # a cluster on the host's loopback only: nothing listens on its address
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((a.address, hidden.port), timeout=5)
    # one on its address too: the network gets there, pg_hba.conf turns the gateway away
    with pytest.raises(psycopg.OperationalError,
                       match=f'no pg_hba.conf entry for host "{fleet.gateway}"'):
        connect_root(host=a.address, port=shown.port)


def test_hosts_reach_each_other_only_where_one_listens(fleet):
    a, b = fleet.add_host("a"), fleet.add_host("b")
    hidden = a.make_cluster("hidden")
    shown = a.make_cluster("shown", listen_on_address=True,
                           hba=[f"host all {PG_USER} {b.address}/32 trust"])

    # B's mount view has A's root empty too
    assert not b.exists(hidden.pgdata)
    assert b.run(["ls", "-A", a.root]).stdout == ""

    assert b.can_connect(a.address, shown.port)
    assert not b.can_connect(a.address, hidden.port)
    assert not b.can_connect("127.0.0.1", hidden.port)  # B's loopback is B's own
    psql = [PG_BIN / "psql", "-XAt", "-h", a.address, "-p", str(shown.port), "-U", PG_USER,
            "-c", "SELECT host(inet_client_addr())"]
    assert b.run(psql, user=PG_USER).stdout.strip() == b.address

    # the root side can serve the hosts on the gateway (a control plane, an object store)
    with socket.create_server((fleet.gateway, 0)) as server:
        assert b.can_connect(fleet.gateway, server.getsockname()[1])
    # and nothing else is routed: the host's subnet is all it knows, over IPv4 alone
    routes = b.run(["ip", "-4", "route", "show", "table", "main"]).stdout.splitlines()
    assert [r.split()[0] for r in routes] == [str(fleet.subnet)]
    assert b.run(["ip", "-6", "addr", "show", "dev", "eth0"]).stdout == ""
    assert "default" not in b.run(["ip", "-6", "route", "show", "table", "all"]).stdout
    assert subprocess.run(["ip", "-6", "addr", "show", "dev", fleet.bridge],
                          capture_output=True, text=True, check=True).stdout == ""


def test_a_standby_on_one_host_streams_from_a_primary_on_another(fleet):
    a, b = fleet.add_host("a"), fleet.add_host("b")
    primary = a.make_cluster("p1", listen_on_address=True,
                             hba=[f"host replication {PG_USER} {b.address}/32 trust"])
    primary.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    standby = b.make_standby(primary, "s1")

    assert standby.execute("SELECT status, sender_host FROM pg_stat_wal_receiver") == [
        ("streaming", a.address)]
    wait_until(lambda: primary.execute("SELECT host(client_addr), state "  # after catchup
                                       "FROM pg_stat_replication") == [(b.address, "streaming")],
               30, "the primary to stream to b's address")
    primary.execute("INSERT INTO t VALUES (1, 'written on a')")
    wait_until(lambda: standby.execute("SELECT v FROM t") == [("written on a",)], 30,
               "the row to be replayed on b")
    assert standby.scalar("SELECT pg_is_in_recovery()") == "t"
    assert not b.exists(primary.pgdata) and not a.exists(standby.pgdata)


def test_psql_rows_keep_nulls_empty_strings_and_separators_apart(fleet):
    pg = fleet.add_host("a").make_cluster("db")
    assert pg.execute("SELECT NULL::text, '', E'two\\nlines', 'tab\there', 'x|y', 42") == [
        (None, "", "two\nlines", "tab\there", "x|y", "42")]
    assert pg.execute("SELECT 1 WHERE false") == []
    assert pg.execute("SELECT ''") == [("",)]
    assert pg.execute("SELECT NULL") == [(None,)]
    assert pg.execute("CREATE TABLE t (i int)") == []
    assert pg.execute("INSERT INTO t VALUES (2), (1) RETURNING i") == [("2",), ("1",)]
    with pytest.raises(RuntimeError, match="does not exist"):
        pg.execute("SELECT * FROM nowhere")


def test_teardown_after_a_failed_test_leaves_nothing(namespaces, pg_template):
    with pytest.raises(RuntimeError, match="the test failed"), \
            Fleet(template=pg_template) as fleet:
        a, b = fleet.add_host("a"), fleet.add_host("b")
        primary = a.make_cluster("p1", listen_on_address=True,
                                 hba=[f"host replication {PG_USER} {b.address}/32 trust"])
        standby = b.make_standby(primary, "s1")
        b.popen(["sleep", "600"], user=PG_USER)  # runuser's child too
        names = [h.netns for h in (a, b)]
        links = [fleet.bridge, a.veth, b.veth]
        pids = [p for ns in names for p in netns_pids(ns)]
        assert {a.holder.pid, b.holder.pid, primary.pid, standby.pid} <= set(pids)
        assert mounts_naming(fleet.area)
        raise RuntimeError("the test failed")

    assert not set(names) & netns_names()
    assert not [link for link in links if link_exists(link)]
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not mounts_naming(fleet.area)  # the tmpfs went with the mount namespaces
    assert not fleet.area.exists()


# A test run that made a fleet with a cluster and an agent-like process, then was killed.
KILLED_RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from fleet.hosts import Fleet
fleet = Fleet(template=Path(sys.argv[2])).__enter__()
host = fleet.add_host("a")
pg = host.make_cluster("db")
host.popen(["sleep", "600"])
print(json.dumps({"area": str(fleet.area), "netns": host.netns, "holder": host.holder.pid,
                  "links": [fleet.bridge, host.veth], "postmaster": pg.pid}), flush=True)
sys.stdin.read()
"""


def start_killed_run(template: Path) -> tuple[subprocess.Popen, dict]:
    """Run KILLED_RUN until its fleet is up; returns the process and what it made."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(TESTS), str(template)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise AssertionError(f"the fleet script did not start (exit {proc.wait()})")
    return proc, json.loads(line)


def test_cleanup_stale_removes_what_a_killed_run_left(namespaces, pg_template):
    proc, made = start_killed_run(pg_template)
    # held: another pytest-xdist worker's new fleet would clean up the leftovers itself
    with fleet_lock():
        proc.kill()
        proc.wait()
        wait_until(lambda: not pid_alive(made["holder"]), 10, "the holder to see its owner die")
        # left behind: the netns with the postmaster and the sleeper, the links, the folder
        assert made["netns"] in netns_names() and pid_alive(made["postmaster"])
        assert len(netns_pids(made["netns"])) >= 2
        assert all(map(link_exists, made["links"]))

        found = cleanup_stale_locked()

    assert f"netns {made['netns']}" in found and f"pid {made['postmaster']}" in found
    assert made["netns"] not in netns_names()
    assert not pid_alive(made["postmaster"])
    assert not [link for link in made["links"] if link_exists(link)]
    assert not mounts_naming(Path(made["area"]))
    assert not Path(made["area"]).exists()
