"""The support matrix's limits on real clusters: protected items per server and per vault,
databases per request, a database of many thousand files backed up and restored, and the
deployments refused at registration.

The full 2,000-database run (create, discover, auto-protect, back up, refuse the 2,001st)
takes 4-5 minutes and 15 GB here, so it lives in bench/many_databases.py (figures in
bench/README.md); these tests lower the limit (DBSAFE_MAX_ITEMS_PER_SERVER / _VAULT) to
hit it with a few dozen databases, and refuse the 2,001st against the real limit of 2,000
with a catalog that holds 2,000 items.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import Pg, Vault, chown_postgres, free_port, new_cluster, restored, stop_postmaster
from test_discovery import items, set_auto_protect

from dbsafe.core.errors import DbsafeError
from dbsafe.services.handle.vault_handle import Vault as ServiceVault
from dbsafe.services.inventory import limits


def _create(pg: Pg, names: list[str]) -> None:
    with pg.connect() as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')


def _check(vault: Vault, server: str, names: list[str], auto: bool = False) -> list[str]:
    v = ServiceVault.open(vault.path)
    try:
        return limits.check_protect(v, v.catalog.get_server(server), names, auto)
    finally:
        v.catalog.close()


@pytest.fixture(scope="module")
def crowded_cluster(pg_template, module_area):
    """A cluster of 55 user databases (56 protectable, with postgres); the tests only
    change what their own vault records about it."""
    pg = new_cluster(pg_template, module_area, "crowded")
    _create(pg, [f"u{i:03d}" for i in range(1, 56)])
    return pg


@pytest.fixture
def crowded(crowded_cluster, vault):
    """The crowded cluster, registered as "c" in the test's fresh vault."""
    vault.add_server("c", crowded_cluster)
    return crowded_cluster


def test_databases_per_request(crowded, vault):
    names = [f"u{i:03d}" for i in range(1, 52)]
    with pytest.raises(DbsafeError) as err:
        _check(vault, "c", names)
    assert err.value.code == "limit.per_request"
    assert "51 databases in one request: at most 50" in err.value.message
    assert "--auto" in err.value.message
    assert _check(vault, "c", names[:50]) == []
    assert _check(vault, "c", names, auto=True) == []


def test_items_per_server_and_per_vault(crowded, pg_template, area, vault, monkeypatch):
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", "50")
    env = {**vault.env, "DBSAFE_MAX_ITEMS_PER_SERVER": "50"}
    lowered = Vault(vault.path, env)
    set_auto_protect(vault, "c", "default")
    out = lowered.ok("discover", "c")
    assert len(out["auto_protected"]) == 50
    left = sorted({d["name"] for d in out["databases"] if d["protectable"]}
                  - set(out["auto_protected"]))
    assert len(left) == 6
    (warning,) = out["warnings"]
    assert warning.startswith(f"6 database(s) of 'c' were not auto-protected ({', '.join(left)})")
    assert "50 protected databases per server" in warning
    assert sum(1 for i in items(vault, "c").values() if i["state"] == "protected") == 50

    with pytest.raises(DbsafeError) as err:
        _check(vault, "c", [left[0]])
    assert err.value.code == "limit.items_per_server"
    assert "'c' has 50 protected database(s) and this adds 1" in err.value.message
    assert "at most 50" in err.value.message
    # re-protecting what is protected adds nothing
    assert _check(vault, "c", out["auto_protected"][:3]) == []
    # the next discovery does not forget them, and says so again
    again = lowered.ok("discover", "c")
    assert again["auto_protected"] == [] and again["warnings"] == [warning]

    # per vault: a second server shares the vault's 52
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_VAULT", "52")
    other = new_cluster(pg_template, area, "other")
    _create(other, ["o1", "o2", "o3"])
    vault.add_server("o", other)
    assert _check(vault, "o", ["o1", "o2"]) == []
    with pytest.raises(DbsafeError) as err:
        _check(vault, "o", ["o1", "o2", "o3"])
    assert err.value.code == "limit.items_per_vault"
    assert "this vault protects 50 database(s) and this adds 3" in err.value.message
    assert "at most 52" in err.value.message


def test_the_2001st_item_is_refused_at_the_real_limit(crowded, vault):
    """2,000 items in the catalog (55 real databases protected, the rest rows of a vault
    that holds 2,000): the 2,001st is refused with limit 2000 in the message."""
    v = ServiceVault.open(vault.path)
    try:
        server = v.catalog.get_server("c")
        v.catalog.protect_items(server["instance_id"],
                                [(f"u{i:03d}", None) for i in range(1, 55)], "default")
        v.catalog.protect_items(server["instance_id"],
                                [(f"filler{i:04d}", None) for i in range(2000 - 54)],
                                "default")
        assert v.catalog.count_items() == 2000
        with pytest.raises(DbsafeError) as err:
            limits.check_protect(v, server, ["u055"], auto=False)
        assert limits.room(v, server) == 0
    finally:
        v.catalog.close()
    assert err.value.code == "limit.items_per_server"
    assert "has 2000 protected database(s) and this adds 1" in err.value.message
    assert "at most 2000" in err.value.message


# files per database ------------------------------------------------------------------------

TABLES = 2200  # x (heap, fsm, vm, toast, toast index, primary key) = 13,200 files


def _relation_files(pgdata, oid: int) -> int:
    folder = pgdata / "base" / str(oid)
    return sum(1 for f in os.listdir(folder) if f.split("_")[0].split(".")[0].isdigit())


def test_a_database_of_thirteen_thousand_files(pg_template, area, vault):
    """The seed promises 1,000 files per database; a full backup and restore of 13,200
    relation files (one database) restores every table's rows."""
    pg = new_cluster(pg_template, area, "files")
    pg.execute("CREATE DATABASE many")
    with pg.connect("many") as conn:
        with conn.transaction():
            for i in range(TABLES):
                conn.execute(f"CREATE TABLE t{i} (id int PRIMARY KEY, body text)")
                conn.execute(f"INSERT INTO t{i} VALUES (%s, repeat('x', %s))",
                             (i, i % 300))
        conn.execute("VACUUM")  # free space and visibility maps: 2 more files a table
    pg.execute("CHECKPOINT")
    oid = pg.scalar("SELECT oid::bigint FROM pg_database WHERE datname = 'many'")
    files = _relation_files(pg.pgdata, oid)
    assert files >= TABLES * 6, files

    vault.add_server("files", pg)
    out = vault.ok("discover", "files")
    many = next(d for d in out["databases"] if d["name"] == "many")
    assert many["file_count"] >= files
    before = pg.table_checksums()
    assert sum(1 for k in before if k.startswith("many.")) == TABLES

    point = vault.backup("files")
    assert point["files"] > files
    target, port = area / "restored", free_port()
    vault.ok("restore", "files", "--point", point["point_id"], "--to-pgdata", target,
             "--port", port, "--start")
    copy = restored(target, port)
    assert _relation_files(target, oid) == files
    assert copy.table_checksums() == before
    assert copy.scalar("SELECT count(*) FROM pg_class WHERE relname ~ '^t[0-9]+$'",
                       "many") == TABLES


# deployments refused at registration --------------------------------------------------------

def test_an_instance_reached_elsewhere_is_refused(pg_template, area, vault):
    """--pgdata names one cluster but --host leads to another one (a remote host, a proxy,
    another container): dbsafe would back up files the server does not use."""
    here = new_cluster(pg_template, area, "here", settings={"listen_addresses": "''"})
    elsewhere_sockets = area / "elsewhere-sockets"
    elsewhere_sockets.mkdir()
    chown_postgres(elsewhere_sockets)
    elsewhere = new_cluster(pg_template, area, "elsewhere",
                            settings={"listen_addresses": "''"}, start=False)
    elsewhere.port, elsewhere.sockdir = here.port, elsewhere_sockets  # same port
    elsewhere.start()
    out = vault.fail("server.deployment_unsupported", "server", "add", "x", "--pgdata",
                     here.pgdata, "--port", here.port, "--host", elsewhere_sockets)
    assert f"has its data in {elsewhere.pgdata}" in out["error"]["message"]
    assert vault.ok("server", "list") == []
    vault.add_server("x", here)  # through its own socket: fine


@pytest.fixture
def overlay(area):
    """An overlay mount (a container's copy-on-write layer) in the test area; the cluster
    started in it is stopped and the mount removed before the area goes."""
    layers = {n: area / f"overlay-{n}" for n in ("lower", "upper", "work", "merged")}
    for path in layers.values():
        path.mkdir()
        chown_postgres(path)
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                           f"lowerdir={layers['lower']},upperdir={layers['upper']},"
                           f"workdir={layers['work']}", str(layers["merged"])],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount an overlay file system here: {proc.stderr.strip()}")
    yield layers["merged"]
    stop_postmaster(layers["merged"] / "pgdata")
    subprocess.run(["umount", str(layers["merged"])], check=True)


def test_a_data_directory_on_an_overlay_is_refused(pg_template, overlay, vault):
    pg = new_cluster(pg_template, overlay, "pgdata")
    assert limits.filesystem_type(pg.pgdata) == "overlay"
    out = vault.fail("server.deployment_unsupported", "server", "add", "ov", "--pgdata",
                     pg.pgdata, "--port", pg.port)
    assert "overlay file system (overlay)" in out["error"]["message"]
    assert vault.ok("server", "list") == []


def test_another_linux_is_registered_with_a_warning(pg_template, area, vault, tmp_path,
                                                    monkeypatch):
    """The result and the CLI's own output name the system and the one the suite runs on
    (the command runs in this process, so that it reads the os-release file given here)."""
    from typer.testing import CliRunner

    from dbsafe.cli.app import app

    (tmp_path / "os-release").write_text('PRETTY_NAME="Rocky Linux 9.5"\nID=rocky\n')
    monkeypatch.setattr(limits, "OS_RELEASE_FILES", (str(tmp_path / "os-release"),))
    monkeypatch.setenv("COLUMNS", "400")
    source = new_cluster(pg_template, area)

    def add(name: str, *extra: str):
        res = CliRunner().invoke(app, ["--vault", str(vault.path), "server", "add", name,
                                       "--pgdata", str(source.pgdata), "--port",
                                       str(source.port), *extra])
        assert res.exit_code == 0, res.output
        return res.stdout

    (warning,) = json.loads(add("rocky", "--json"))["warnings"]
    assert "Rocky Linux 9.5" in warning and "Debian 12 (bookworm)" in warning
    vault.ok("server", "remove", "rocky")
    text = add("rocky")
    assert "warning" in text and "Rocky Linux 9.5" in text, text
