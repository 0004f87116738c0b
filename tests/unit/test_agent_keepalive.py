"""An agent never sends a call into a connection the control plane is closing: it stops
reusing an idle connection before the gateway stops keeping it. With uvicorn's default (5 s)
and httpcore's (reuse for ever), a scheduled backup failed with "Server disconnected
without sending a response" when its first call went out as the gateway closed the idle
connection (tests/integration/test_fleet_scale.py, once in a full run)."""

from __future__ import annotations

import ssl

from dbsafe.agent.control import IDLE_REUSE_SECONDS, ControlPlane
from dbsafe.api.fleet_gateway import IDLE_KEEP_SECONDS
from dbsafe.cli.commands import serve


def test_the_agent_lets_go_of_idle_connections_before_the_gateway_does():
    assert 0 < IDLE_REUSE_SECONDS < IDLE_KEEP_SECONDS - 5  # a margin for a slow call
    plane = ControlPlane("https://127.0.0.1:1", ssl.create_default_context())
    try:
        assert plane._http._keepalive_expiry == IDLE_REUSE_SECONDS
    finally:
        plane.close()


def test_the_gateway_is_served_with_that_keep_alive(tmp_path):
    config = serve.gateway_config(object(), "127.0.0.1", 1, tmp_path / "c", tmp_path / "k")
    assert config.timeout_keep_alive == IDLE_KEEP_SECONDS
