"""The agent's process (where it lives, starting, pinging, stopping it): in
``dbsafe.engines.postgres.agent_process``, below the services and the scheduler that start
it; re-exported here for the agent package and the CLI."""

from dbsafe.engines.postgres.agent_process import (
    CLIENT_PYTHON,
    CLUSTER_USER,
    START_TIMEOUT,
    AgentPaths,
    agent_paths,
    ensure_running,
    install_client,
    ping,
    running_pid,
    socket_group,
    stop,
)

__all__ = ["CLIENT_PYTHON", "CLUSTER_USER", "START_TIMEOUT", "AgentPaths", "agent_paths",
           "ensure_running", "install_client", "ping", "running_pid", "socket_group", "stop"]
