"""Pure parts of discovery and the limits: OS check, pg_lsclusters columns, which databases
are protectable, and lowering (never raising) the item limits."""

from __future__ import annotations

import pytest

from dbsafe.engines.postgres.instances import parse_columns
from dbsafe.services.inventory import limits
from dbsafe.services.protection.discovery import protectability, protectable_names

DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
"""


def test_debian_12_is_what_the_suite_runs_on(tmp_path):
    (tmp_path / "os-release").write_text(DEBIAN_12)
    release = limits.read_os_release((str(tmp_path / "missing"), str(tmp_path / "os-release")))
    assert release["ID"] == "debian" and release["VERSION_ID"] == "12"
    assert limits.check_os(release) is None


@pytest.mark.parametrize("text, shown", [
    ('NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nPRETTY_NAME="Ubuntu 24.04 LTS"\n',
     "Ubuntu 24.04 LTS"),
    ("# a comment\nPRETTY_NAME='Debian GNU/Linux 11 (bullseye)'\nID=debian\nVERSION_ID=11\n",
     "Debian GNU/Linux 11 (bullseye)"),
    ('ID="rhel"\nVERSION_ID="9.4"\nPRETTY_NAME="unbalanced\n', "rhel 9.4"),
    (None, "an unknown system"),
])
def test_other_systems_are_accepted_with_a_warning_naming_the_tested_one(tmp_path, text,
                                                                         shown):
    """Refused before; now a warning naming the system and the one the suite runs on."""
    path = tmp_path / "os-release"
    if text is not None:
        path.write_text(text)
    warning = limits.check_os(limits.read_os_release((str(path),)))
    assert warning is not None and shown in warning
    assert "Debian 12 (bookworm)" in warning and "registered" in warning


def test_registration_returns_the_warning(tmp_path, monkeypatch):
    (tmp_path / "os-release").write_text('ID=fedora\nVERSION_ID=41\n')
    monkeypatch.setattr(limits, "OS_RELEASE_FILES", (str(tmp_path / "os-release"),))
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    (warning,) = limits.check_registration(pgdata, str(pgdata))
    assert "fedora 41" in warning
    (tmp_path / "os-release").write_text(DEBIAN_12)
    assert limits.check_registration(pgdata, str(pgdata)) == []


def test_pg_lsclusters_columns_of_older_postgresql_common():
    text = ("12  main    5433 online postgres /var/lib/postgresql/12/main "
            "/var/log/postgresql/postgresql-12-main.log\n"
            "15  reports 5434 down,binaries_missing postgres /srv/pg/15/reports "
            "/var/log/postgresql/postgresql-15-reports.log\n"
            "Ver Cluster Port Status Owner Data directory Log file\n")
    assert parse_columns(text) == [
        {"pgdata": "/var/lib/postgresql/12/main", "port": 5433, "version": 12,
         "running": True, "cluster": "12/main"},
        {"pgdata": "/srv/pg/15/reports", "port": 5434, "version": 15, "running": False,
         "cluster": "15/reports"},
    ]


def _db(name, **flags):
    return {"name": name, "is_template": False, "allow_connections": True, "invalid": False,
            **flags}


def test_protectable_databases():
    dbs = [_db("app"), _db("postgres"), _db("template1", is_template=True),
           _db("archive", allow_connections=False), _db("half", invalid=True),
           _db("tpl_noconn", is_template=True, allow_connections=False)]
    assert protectable_names(dbs) == ["app", "postgres"]
    assert protectability(dbs[2])[1].startswith("template database")
    assert protectability(dbs[3])[1].startswith("does not allow connections")
    assert "DROP DATABASE half" in protectability(dbs[4])[1]


def test_item_limits_can_be_lowered_not_raised(monkeypatch):
    assert limits.max_items_per_server() == limits.MAX_ITEMS_PER_SERVER == 2000
    assert limits.max_items_per_vault() == limits.MAX_ITEMS_PER_VAULT == 2000
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", "40")
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_VAULT", "5000")
    assert limits.max_items_per_server() == 40
    assert limits.max_items_per_vault() == 2000
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", "lots")
    assert limits.max_items_per_server() == 2000


def test_large_database_warning_names_the_database_and_the_limit():
    message = limits.large_database_warning("dwh", 3 * 1024**4)
    assert "'dwh' is 3.00 TiB" in message and "2 TiB" in message
