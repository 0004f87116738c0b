"""A vault written by an older dbsafe stays readable: every later version MUST pass this test.

tests/fixtures/vault-v1/ holds the repository of a vault written by dbsafe as of the
format's baseline (docs/repository-format.md, *Changes*): a tiny PostgreSQL 15 cluster,
one full, one differential and one log backup, made by tests/fixtures/make_vault_fixture.py.
It is never rewritten: a change of the format adds a new fixture beside it (and a test
like this one for it), and this test keeps passing, unchanged, for as long as dbsafe
claims to read version-1 vaults. A copy is opened by a new client (`vault connect`, which
learns the server from the manifests), its points are listed and verified (the log point's
WAL records with them), and the full and the differential are restored into started
clusters and queried. (The log point is not restored: a server learnt from the manifests
has the SIMPLE recovery model on the new client, so point-in-time restore is refused.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import Vault, free_port, restored

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LEDGER_SQL = "SELECT count(*), md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM ledger"


@pytest.mark.parametrize("version", ["vault-v1"])
def test_an_old_vault_is_listed_verified_and_restored(area, cli_env, version):
    fixture = FIXTURES / version
    expected = json.loads((fixture / "expected.json").read_text())
    repository = area / "repository"
    shutil.copytree(fixture / "repository", repository)
    client = Vault(area / "client", cli_env)
    connected = client.ok("vault", "connect", "--repository", repository)
    assert connected["vault_id"] == json.loads((repository / "config").read_text())["vault_id"]

    name = expected["server"]
    points = {p["type"]: p for p in client.points(name)}
    assert {t: p["point_id"] for t, p in points.items()} == {
        t: p["point_id"] for t, p in expected["points"].items()}

    report = client.ok("verify", name)
    assert report["ok"] is True, report

    for kind in ("full", "diff"):
        point = expected["points"][kind]
        target = area / f"restored-{kind}"
        out = client.ok("restore", name, "--point", point["point_id"], "--to-pgdata", target,
                        "--port", free_port(), "--start")
        pg = restored(target, out["port"])
        try:
            assert list(pg.execute(LEDGER_SQL)[0]) == point["ledger"], kind
        finally:
            pg.stop()
