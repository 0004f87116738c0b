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


def _queued(vault, job_id: str, type: str, server: str, agent: AgentIdentity) -> None:
    vault.catalog.queue_job({"id": job_id, "type": type, "server": server, "state": "queued",
                             "start_time": "2026-12-06T00:00:00Z", "host": agent.host,
                             "agent_id": agent.id, "request": "{}"})


def test_a_drill_row_is_written_by_the_agent_running_its_drill_only(vault):
    drill = {"id": "drill-1", "server": "main", "point_id": "p1",
             "started": "2026-12-06T00:00:01Z", "state": "running"}
    _queued(vault, "drill-1", "drill", "main", A)
    assert "drill 'drill-1'" in _refused(vault, A, "add_drill", drill)  # queued, not running
    assert vault.catalog.claim_job(A.id, "2026-12-06T00:00:01Z")["id"] == "drill-1"
    call(vault, Scopes(), A, "add_drill", [drill], {})
    call(vault, Scopes(), A, "update_drill", ["drill-1"], {"state": "completed",
                                                           "rto_seconds": 1.5})
    assert vault.catalog.list_drills("main")[0]["rto_seconds"] == 1.5
    # another agent, another server's row under this job, a column it names itself
    _refused(vault, B, "add_drill", {**drill, "id": "drill-1"})
    _refused(vault, B, "update_drill", "drill-1", state="failed")
    _refused(vault, A, "add_drill", {**drill, "server": "other"})
    assert "column" in _refused(vault, A, "update_drill", "drill-1", server="other")
    # a job that is no drill of its own: another type, or queued for another agent
    _queued(vault, "backup-1", "backup", "main", A)
    vault.catalog.claim_job(A.id, "2026-12-06T00:00:02Z")
    _refused(vault, A, "add_drill", {**drill, "id": "backup-1"})
    _queued(vault, "drill-2", "drill", "other", B)
    vault.catalog.claim_job(B.id, "2026-12-06T00:00:03Z")
    _refused(vault, A, "update_drill", "drill-2", state="failed")
    vault.catalog.update_job("drill-1", state="completed")  # ended: its row is final
    _refused(vault, A, "update_drill", "drill-1", state="failed")
    assert vault.catalog.list_drills("main")[0]["state"] == "completed"
