"""Pure parts of discovery and the limits: OS check, pg_lsclusters columns, which databases
are protectable, and lowering (never raising) the item limits."""

from __future__ import annotations

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.engines.postgres.instances import parse_columns
from dbsafe.services import limits
from dbsafe.services.discovery import protectability, protectable_names


def test_debian_12_is_supported():
    limits.check_os({"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12"})


@pytest.mark.parametrize("release, shown", [
    ({"ID": "ubuntu", "VERSION_ID": "24.04", "PRETTY_NAME": "Ubuntu 24.04 LTS"},
     "Ubuntu 24.04 LTS"),
    ({"ID": "debian", "VERSION_ID": "11", "PRETTY_NAME": "Debian GNU/Linux 11 (bullseye)"},
     "Debian GNU/Linux 11 (bullseye)"),
    ({"ID": "rhel", "VERSION_ID": "9.4"}, "rhel 9.4"),
    ({}, "unknown"),
])
def test_other_systems_are_refused_with_the_supported_list(release, shown):
    with pytest.raises(DbsafeError) as err:
        limits.check_os(release)
    assert err.value.code == "server.os_unsupported"
    assert shown in err.value.message
    assert "Debian 12 (bookworm)" in err.value.message


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
