"""What an agent may ask of the catalog (services/fleet/scope.py), call by call, on a real
SQLite catalog: its own servers' rows, nothing of another host's, no column it names itself,
no method without a rule; every refusal audited."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from dbsafe.catalog.sqlite import SqliteCatalog
from dbsafe.core.errors import DbsafeError
from dbsafe.policy.model import DEFAULT_POLICY
from dbsafe.services.fleet import AgentIdentity, Scopes, call

INSTANCE = {"pgdata": "/srv/pg", "port": 5433, "bin_dir": "/usr/lib/postgresql/15/bin",
            "pg_version": 15, "system_identifier": "7001"}
A, B = AgentIdentity("aaaa", "host-a"), AgentIdentity("bbbb", "host-b")


@pytest.fixture
def vault(tmp_path):
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.add_server("main", "host-a", None, INSTANCE)
    catalog.update_server("main", agent_id=A.id)
    catalog.add_server("other", "host-b", None, {**INSTANCE, "pgdata": "/srv/other",
                                                 "system_identifier": "7002"})
    catalog.update_server("other", agent_id=B.id)
    yield SimpleNamespace(catalog=catalog)
    catalog.close()


def _refused(vault, agent, method, *args, **kwargs) -> str:
    with pytest.raises(DbsafeError) as caught:
        call(vault, Scopes(), agent, method, list(args), kwargs)
    assert caught.value.code == "agent.out_of_scope"
    return caught.value.message


def test_own_rows_only(vault):
    assert call(vault, Scopes(), A, "get_server", ["main"], {})["name"] == "main"
    assert [s["name"] for s in call(vault, Scopes(), A, "list_servers", [], {})] == ["main"]
    assert "server 'main'" in _refused(vault, B, "get_server", "main")
    iid = vault.catalog.get_server("main")["instance_id"]
    _refused(vault, B, "list_points", iid)
    _refused(vault, B, "add_wal_file", {"system_identifier": "7001", "name": "x"})
    _refused(vault, B, "create_job", "backup-x", "backup", "main", 1, "2026-12-06T00:00:00Z")
    audited = vault.catalog.list_audit(50)
    assert {r["actor"] for r in audited} == {"agent:bbbb"}
    assert {r["action"] for r in audited} == {"catalog.get_server", "catalog.list_points",
                                              "catalog.add_wal_file", "catalog.create_job"}


def test_no_method_without_a_rule_and_no_free_column(vault):
    _refused(vault, A, "list_tokens")
    _refused(vault, A, "add_user", "eve", "contributor", "x", "now")
    _refused(vault, A, "no_such_method")
    call(vault, Scopes(), A, "create_job", ["backup-1", "backup", "main", 1,
                                            "2026-12-06T00:00:00Z"], {})
    assert "column" in _refused(vault, A, "update_job", "backup-1",
                                **{"state = 'x' --": 1})
    assert "job state" in _refused(vault, A, "update_job", "backup-1", state="queued")
    # the job's host is the agent's, as registered, whatever it says
    assert vault.catalog.get_job("backup-1")["host"] == "host-a"


def test_only_the_shipped_policy_may_be_written(vault):
    body = json.dumps(DEFAULT_POLICY.to_dict())
    call(vault, Scopes(), A, "insert_policy", [DEFAULT_POLICY.name, body, "now"], {})
    _refused(vault, A, "insert_policy", "mine", body, "now")
    _refused(vault, A, "insert_policy", DEFAULT_POLICY.name,
             json.dumps({**DEFAULT_POLICY.to_dict(), "keep_log": 1}), "now")
