"""moto's S3-compatible server (``moto_server``), the real HTTP server a user could run."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from servers.processes import start_server, stop_server

# fake credentials: moto accepts any; distinct strings so a grep for leaked secrets finds them
S3_ENV = {"AWS_ACCESS_KEY_ID": "dbsafe-test-access-key-id",
          "AWS_SECRET_ACCESS_KEY": "dbsafe-test-s3-secret-access-key"}


@dataclass
class MotoServer:
    folder: Path
    port: int = 0
    proc: object = field(default=None, repr=False)
    host: str = "127.0.0.1"  # a fleet's tests serve it on their bridge (tests/fleet)

    def start(self) -> MotoServer:
        binary = Path(sys.executable).with_name("moto_server")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.proc, self.port = start_server(
            lambda port: [str(binary), "-H", self.host, "-p", str(port)],
            self.folder / "moto.log", env=env, host=self.host)
        return self

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def location(self, bucket: str, prefix: str = "", endpoint: str | None = None) -> str:
        path = f"/{prefix}" if prefix else ""
        return f"s3://{bucket}{path}?endpoint={endpoint or self.endpoint}&region=us-east-1"

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)
