"""pytest fixtures for object storage: real servers per xdist worker, and locations to use.

``storage_location`` is parametrised over "local", "s3" and "azure": a test (or a fixture)
that takes it runs once per backend, each run with its own empty bucket or container.
``faulty_location`` gives an S3 or Azure location reached through a ``FaultProxy``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from servers.azurite import Azurite
from servers.faults import FaultProxy
from servers.moto import S3_ENV, MotoServer

BACKENDS = ["local", "s3", "azure"]


class StorageLocation(NamedTuple):
    kind: str               # "local" | "s3" | "azure"
    location: str           # what `open_storage` (and --vault) takes; never a secret
    env: dict[str, str]     # the credentials, as environment variables


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory) -> Iterator[Azurite]:
    server = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield server
    server.stop()


def _unique() -> str:
    return f"dbsafe-{secrets.token_hex(6)}"


def make_location(kind: str, request, tmp_path, proxy_port: int | None = None
                  ) -> StorageLocation:
    """A fresh location of ``kind`` (its server started on first use)."""
    if kind == "local":
        return StorageLocation("local", str(tmp_path / "vault"), {})
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        endpoint = f"http://127.0.0.1:{proxy_port}" if proxy_port else None
        return StorageLocation("s3", server.location(_unique(), "vault", endpoint),
                               dict(S3_ENV))
    server = request.getfixturevalue("azurite_server")
    return StorageLocation("azure", server.location(_unique(), "vault", proxy_port),
                           server.env())


@pytest.fixture(params=BACKENDS)
def storage_location(request, tmp_path) -> StorageLocation:
    return make_location(request.param, request, tmp_path)


@pytest.fixture(params=["s3", "azure"])
def faulty_location(request, tmp_path) -> Iterator[tuple[StorageLocation, FaultProxy]]:
    """An object store location whose every request passes a ``FaultProxy``."""
    server = request.getfixturevalue("s3_server" if request.param == "s3" else "azurite_server")
    proxy = FaultProxy(server.port, flavor=request.param).start()
    try:
        yield make_location(request.param, request, tmp_path, proxy.port), proxy
    finally:
        proxy.stop()
