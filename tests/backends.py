"""Vaults of every kind for the backend suites (tests/integration/test_vault_backends*.py):
a local folder, an S3-compatible server and Azurite on loopback, plain or encrypted. What
differs per kind is only how the vault is created; the tests are the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import secrets_guard
from conftest import Vault
from servers.moto import S3_ENV

PASS = "backend suite passphrase 314159"
secrets_guard.register(PASS, S3_ENV["AWS_SECRET_ACCESS_KEY"])

KINDS = ["local", "local-encrypted", "s3", "s3-encrypted", "azure"]


def new_vault(kind: str, request: pytest.FixtureRequest, area: Path,
              cli_env: dict[str, str], location: str | None = None,
              location_env: dict[str, str] | None = None) -> Vault:
    """A vault of ``kind`` whose client folder is ``area/vault``; its agent (WAL archiving)
    runs from ``area/run``. ``location`` overrides where an object store vault lives."""
    from servers.fixtures import make_location

    backend = kind.removesuffix("-encrypted")
    env = {**cli_env, "DBSAFE_PASSPHRASE": PASS, "DBSAFE_RUN_DIR": str(area / "run")}
    args = ["vault", "init"]
    if backend != "local":
        where = make_location(backend, request, area)
        location = location or where.location
        env.update(location_env or where.env)
        args += ["--repository", location]
    if kind.endswith("-encrypted"):
        args += ["--encryption", "on"]
    vault = Vault(area / "vault", env)
    info = vault.ok(*args)
    assert info["encrypted"] is kind.endswith("-encrypted")
    assert info["repository"]["backend"] == backend
    return vault
