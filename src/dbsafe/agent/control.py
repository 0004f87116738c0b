"""An agent's connection to its control plane: the agents' API over pinned HTTPS
(docs/fleet.md). Every answer that is an error comes back as the DbsafeError the control
plane raised (its code and message); a control plane that cannot be reached is
``agent.control_unreachable``, which the agent's loops wait out."""

from __future__ import annotations

import json as jsonlib
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpcore

from dbsafe import __version__
from dbsafe.core.errors import DbsafeError

PREFIX = "/agent/v1"
CONNECT_TIMEOUT = 10.0
CALL_TIMEOUT = 60.0
# An idle connection is reused this long, less than the gateway keeps one open
# (api/fleet_gateway.py IDLE_KEEP_SECONDS): never a call sent into the gateway's close.
IDLE_REUSE_SECONDS = 30.0
# what httpcore raises when the control plane cannot be reached or answers no HTTP
UNREACHABLE = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
               httpcore.UnsupportedProtocol)


class Answer:
    """The control plane's answer to one call: its status and body."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class ControlPlane:
    """Calls over one pool of kept-alive HTTPS connections: httpcore, httpx's own transport,
    used straight (an agent's backup makes a dozen catalog calls in a row, and httpx's
    request and cookie handling around each cost ~0.3 ms of the ~1.5 ms: bench/README.md)."""

    def __init__(self, url: str, context: ssl.SSLContext, credential: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._headers = [(b"Host", urlsplit(self.url).netloc.encode()),
                         (b"User-Agent", f"dbsafe-agent/{__version__}".encode()),
                         (b"Accept", b"application/json")]
        if credential:
            self._headers.append((b"Authorization", f"Bearer {credential}".encode()))
        self._http = httpcore.ConnectionPool(ssl_context=context, max_connections=16,
                                             keepalive_expiry=IDLE_REUSE_SECONDS)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, *, json: Any = None,
              params: dict | None = None, timeout: float | None = None) -> Answer:
        url = self.url + PREFIX + path + ("?" + urlencode(params) if params else "")
        body = b"" if json is None else jsonlib.dumps(json, default=str).encode()
        headers = [*self._headers, (b"Content-Length", str(len(body)).encode())]
        if json is not None:
            headers.append((b"Content-Type", b"application/json"))
        wait = timeout or CALL_TIMEOUT
        try:
            response = self._http.request(
                method, url, headers=headers, content=body,
                extensions={"timeout": {"connect": CONNECT_TIMEOUT, "read": wait,
                                        "write": wait, "pool": wait}})
        except UNREACHABLE as exc:
            raise DbsafeError("agent.control_unreachable", url=self.url,
                              reason=str(exc) or type(exc).__name__) from None
        answer = Answer(response.status, response.content)
        if answer.status_code >= 400:
            raise _error(self.url, answer)
        return answer

    def register(self, token: str, host: str) -> dict:
        return self._send("POST", "/register", json={"token": token, "host": host,
                                                     "version": __version__}).json()

    def hello(self) -> dict:
        return self._send("GET", "/hello").json()

    def next_job(self, wait: float) -> dict | None:
        """The next job claimed for this agent, or None after ``wait`` seconds."""
        response = self._send("GET", "/jobs/next", params={"wait": wait,
                                                            "version": __version__},
                              timeout=wait + CALL_TIMEOUT)
        return None if response.status_code == 204 else response.json()

    def report(self, job_id: str) -> dict:
        return self._send("POST", f"/jobs/{job_id}/report").json()

    def catalog(self, method: str, args: list, kwargs: dict) -> Any:
        return self._send("POST", f"/catalog/{method}",
                          json={"args": args, "kwargs": kwargs}).json()["result"]


def _error(url: str, response: Answer) -> DbsafeError:
    try:
        body = response.json()["error"]
        return DbsafeError.reported(str(body["code"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return DbsafeError("agent.control_refused", url=url, status=response.status_code,
                           message=response.text[:200])
