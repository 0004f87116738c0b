"""An agent's connection to its control plane: the agents' API over pinned HTTPS
(docs/fleet.md). Every answer that is an error comes back as the DbsafeError the control
plane raised (its code and message); a control plane that cannot be reached is
``agent.control_unreachable``, which the agent's loops wait out."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from dbsafe import __version__
from dbsafe.core.errors import DbsafeError

PREFIX = "/agent/v1"
CONNECT_TIMEOUT = 10.0
CALL_TIMEOUT = 60.0


class ControlPlane:
    def __init__(self, url: str, context: ssl.SSLContext, credential: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"User-Agent": f"dbsafe-agent/{__version__}"}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        self._http = httpx.Client(base_url=self.url, verify=context, headers=headers,
                                  timeout=httpx.Timeout(CALL_TIMEOUT, connect=CONNECT_TIMEOUT),
                                  trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, *, json: Any = None,
              params: dict | None = None, timeout: float | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, PREFIX + path, json=json, params=params,
                                          timeout=timeout or httpx.USE_CLIENT_DEFAULT)
        except httpx.TransportError as exc:
            raise DbsafeError("agent.control_unreachable", url=self.url,
                              reason=str(exc) or type(exc).__name__) from None
        if response.status_code >= 400:
            raise _error(self.url, response)
        return response

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


def _error(url: str, response: httpx.Response) -> DbsafeError:
    try:
        body = response.json()["error"]
        return DbsafeError.reported(str(body["code"]), str(body["message"]))
    except (ValueError, KeyError, TypeError):
        return DbsafeError("agent.control_refused", url=url, status=response.status_code,
                           message=response.text[:200])
