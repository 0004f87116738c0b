"""Pure parts of discovery and the limits: OS check, pg_lsclusters columns, which databases
are protectable, and the item limits an administrator sets (the per-server one lowered or
raised up to the per-vault one, the per-vault one only lowered)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

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


@pytest.fixture
def no_limit_settings(monkeypatch, caplog):
    """Neither variable set, no warning given yet in this process; warnings captured."""
    monkeypatch.delenv("DBSAFE_MAX_ITEMS_PER_SERVER", raising=False)
    monkeypatch.delenv("DBSAFE_MAX_ITEMS_PER_VAULT", raising=False)
    monkeypatch.setattr(limits, "_warned", set())
    caplog.set_level(logging.WARNING, logger="dbsafe.limits")
    return caplog


def test_default_item_limits(no_limit_settings, monkeypatch):
    """2,000 per server (the support matrix), ten times the matrix's 2,000 per vault."""
    assert limits.MAX_ITEMS_PER_SERVER == 2000 and limits.MAX_ITEMS_PER_VAULT == 20_000
    assert limits.max_items_per_server() == 2000
    assert limits.max_items_per_vault() == 20_000
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", " ")  # empty: unset
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_VAULT", "")
    assert (limits.max_items_per_server(), limits.max_items_per_vault()) == (2000, 20_000)
    assert not no_limit_settings.records


@pytest.mark.parametrize("value, limit", [("2500", 2500), ("5000", 5000),
                                          (" 20000 ", 20_000)])
def test_the_per_server_limit_can_be_raised_up_to_the_vault_limit(no_limit_settings,
                                                                  monkeypatch, value, limit):
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", value)
    assert limits.max_items_per_server() == limit
    assert limits.max_items_per_vault() == 20_000
    assert not no_limit_settings.records


def test_both_limits_can_be_lowered(no_limit_settings, monkeypatch):
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", "40")
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_VAULT", "52")
    assert (limits.max_items_per_server(), limits.max_items_per_vault()) == (40, 52)
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", "0")  # a freeze is a choice too
    assert limits.max_items_per_server() == 0
    assert not no_limit_settings.records


@pytest.mark.parametrize("variable, reader", [
    ("DBSAFE_MAX_ITEMS_PER_SERVER", limits.max_items_per_server),
    ("DBSAFE_MAX_ITEMS_PER_VAULT", limits.max_items_per_vault)])
def test_a_value_over_the_vault_limit_is_refused(no_limit_settings, monkeypatch, variable,
                                                 reader):
    """The highest allowed applies, and a warning says why (once per process and value:
    auto-protection reads the limits on every discovery)."""
    monkeypatch.setenv(variable, "20001")
    assert reader() == 20_000
    assert reader() == 20_000
    (record,) = no_limit_settings.records
    message = record.getMessage()
    assert variable in message and "'20001' is refused" in message
    assert "above 20,000" in message and "the limit is 20,000" in message
    monkeypatch.setenv(variable, "1000000")
    assert reader() == 20_000 and len(no_limit_settings.records) == 2


@pytest.mark.parametrize("value", ["lots", "5,000", "2e4", "-40", "40.5", "\u0664\u0660"])
def test_a_value_that_is_not_a_whole_number_is_refused(no_limit_settings, monkeypatch, value):
    """The default applies: what dbsafe held before anyone set anything."""
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", value)
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_VAULT", value)
    assert limits.max_items_per_server() == 2000
    assert limits.max_items_per_vault() == 20_000
    server, vault = (r.getMessage() for r in no_limit_settings.records)
    assert "DBSAFE_MAX_ITEMS_PER_SERVER" in server and "not a whole number" in server
    assert "the limit is 2,000" in server and "from 0 to 20,000" in server
    assert "DBSAFE_MAX_ITEMS_PER_VAULT" in vault and "the limit is 20,000" in vault


class _Catalog:
    """The catalog calls ``check_protect`` and ``room`` make: ``counts`` protected items
    per instance id (all active)."""

    def __init__(self, counts: dict[int, int]) -> None:
        self.counts = counts

    def count_items(self, instance_id: int | None = None) -> int:
        return sum(self.counts.values()) if instance_id is None else self.counts[instance_id]

    def list_items(self, instance_id: int) -> list[dict]:
        return [{"name": f"db{j}", "state": "protected"}
                for j in range(self.counts[instance_id])]

    def list_databases(self, instance_id: int) -> list[dict]:
        return []


def test_protection_follows_the_limits_as_set(no_limit_settings, monkeypatch):
    """A server of 2,000 is full by default; raised, it takes more until the vault holds
    20,000 (19,000 now: this server's 2,000 and another's 17,000); lowered, the vault
    refuses sooner."""
    server = {"name": "big", "instance_id": 1}
    vault = SimpleNamespace(catalog=_Catalog({1: 2000, 2: 17_000}))
    with pytest.raises(limits.DbsafeError) as refused:
        limits.check_protect(vault, server, ["new"], auto=False)
    assert refused.value.code == "limit.items_per_server"
    assert limits.room(vault, server) == 0
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_SERVER", "5000")
    assert limits.room(vault, server) == 1000  # 20,000 - 19,000 in the vault
    assert limits.check_protect(vault, server, [f"n{j}" for j in range(50)], auto=False) == []
    with pytest.raises(limits.DbsafeError) as refused:
        limits.check_protect(vault, server, [f"n{j}" for j in range(1001)], auto=True)
    assert refused.value.code == "limit.items_per_vault"
    assert "at most 20000" in refused.value.message
    monkeypatch.setenv("DBSAFE_MAX_ITEMS_PER_VAULT", "19010")
    assert limits.room(vault, server) == 10


def test_large_database_warning_names_the_database_and_the_limit():
    message = limits.large_database_warning("dwh", 3 * 1024**4)
    assert "'dwh' is 3.00 TiB" in message and "2 TiB" in message
