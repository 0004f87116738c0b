"""Secrets hygiene. Every test's dbsafe output and files are searched for
registered secrets by tests/secrets_guard.py; this module feeds dbsafe secrets in the wrong
places and in failing commands, where a careless error message would echo them."""

from __future__ import annotations

from pathlib import Path

import secrets_guard
from conftest import Pg, Vault, run_cli
from servers.azurite import ACCOUNT_KEY

DB_PASSWORD = "Sup3r-Secret-Passw0rd-42"
S3_SECRET = "s3-Secret-Key-Value-0987654321"
SAS_SIGNATURE = "SasSignature0123456789abcdef"
secrets_guard.register(DB_PASSWORD, S3_SECRET, SAS_SIGNATURE, ACCOUNT_KEY)


def test_secrets_in_locations_are_refused_without_being_echoed(area: Path,
                                                               cli_env: dict[str, str]):
    vault = Vault(area / "vault", cli_env)
    for code, args in (
        ("catalog.password_in_dsn",
         ("--catalog", f"postgresql://backup:{DB_PASSWORD}@127.0.0.1:5999/dbsafe")),
        ("catalog.password_in_dsn",
         ("--catalog", f"host=127.0.0.1 port=5999 dbname=x user=u password={DB_PASSWORD}")),
        ("storage.secret_in_location",
         ("--repository", f"s3://AKIAEXAMPLE:{S3_SECRET}@bucket/vault")),
        ("storage.secret_in_location",
         ("--repository", f"azure://box/vault?account=acct&sig={SAS_SIGNATURE}")),
    ):
        out = vault.fail(code, "vault", "init", *args)
        assert "password" in out["error"]["message"] or "secret" in out["error"]["message"] \
            or "environment" in out["error"]["message"], out
    # nothing was written for the refused vaults, so nothing can hold the secrets
    assert not (area / "vault" / "client.json").exists()


def test_a_wrong_password_is_not_repeated(area: Path, cli_env: dict[str, str], source: Pg):
    vault = Vault(area / "vault", {**cli_env, "PGPASSWORD": DB_PASSWORD})
    vault.ok("vault", "init")
    res = run_cli(vault.env, "server", "add", "x", "--pgdata", source.pgdata, "--port",
                  "1", "--host", "127.0.0.1", "--json", vault=vault.path)
    assert res.returncode != 0 and DB_PASSWORD not in res.stdout + res.stderr
    vault.add_server("src", source)  # the socket connection ignores the password
    vault.backup("src", "--type", "copy-only")
    jobs = vault.jobs()
    assert jobs and all(DB_PASSWORD not in str(j) for j in jobs)


def test_the_guard_finds_what_it_looks_for(tmp_path: Path):
    """The search is not vacuous: a registered secret in a file is found, in a key file not."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dbsafe.log").write_text(f"connecting with {DB_PASSWORD}\n")
    (tmp_path / "vault.key").write_text(DB_PASSWORD)
    found = secrets_guard.scan_tree(tmp_path)
    assert found == [f"{tmp_path / 'sub' / 'dbsafe.log'}: {DB_PASSWORD!r}"]
    assert secrets_guard.leaks_in(f"error: {S3_SECRET}") == [S3_SECRET]
