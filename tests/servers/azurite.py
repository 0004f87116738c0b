"""Azurite's Blob service (``azurite-blob`` from npm), with the well-known dev account."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from servers.processes import start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
AZURITE_BLOB = REPO / "tools" / "node" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# Azurite's documented development key (public, the same in every Azurite)
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


@dataclass
class Azurite:
    folder: Path
    port: int = 0
    proc: object = field(default=None, repr=False)

    def start(self) -> Azurite:
        if not AZURITE_BLOB.exists():
            raise RuntimeError(f"{AZURITE_BLOB} is missing: run scripts/install.sh --test")
        data = self.folder / "azurite"
        data.mkdir(exist_ok=True)
        self.proc, self.port = start_server(
            lambda port: [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                          "--location", str(data), "--silent", "--skipApiVersionCheck",
                          "--disableTelemetry", "--loose"],
            self.folder / "azurite.log", env=dict(os.environ))
        return self

    def endpoint(self, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}/{ACCOUNT}"

    def env(self) -> dict[str, str]:
        """Credentials as a user sets them: a connection string in the environment."""
        return {"AZURE_STORAGE_CONNECTION_STRING":
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.endpoint()};"}

    def location(self, container: str, prefix: str = "", port: int | None = None) -> str:
        path = f"/{prefix}" if prefix else ""
        return f"azure://{container}{path}?account={ACCOUNT}&endpoint={self.endpoint(port)}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)
