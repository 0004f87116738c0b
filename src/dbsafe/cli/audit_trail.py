"""The CLI's changes go into the audit log too (the API's gate writes the API's and the
portal's): who (``cli:<OS user>``), what (the command line — secrets never appear on it:
passphrases and passwords come from the environment or a prompt), when, from where
(``cli@<host>``) and the outcome (``ok`` or the error code).

A command is a change unless it only reads: listings, ``show``, ``status``, ``points``,
``jobs``, ``plan``, ``verify``, ``serve`` (whose own changes are audited by the API)."""

from __future__ import annotations

import socket

GROUPS = {"vault", "key", "server", "agent", "policy", "replicaset", "job", "alerts", "drill",
          "token", "user"}
READS = {"items", "points", "verify", "jobs", "serve", "drills", "plan", "audit", "list", "show",
         "status", "info", "region", "check", "test"}
GLOBAL_OPTIONS_WITH_VALUE = {"--vault"}


def command_of(argv: list[str]) -> list[str]:
    """The command's words (``["server", "add"]``), global options skipped."""
    words: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
        elif arg.startswith("-"):
            if not words:
                continue
            break
        else:
            words.append(arg)
            if len(words) == 2 or words[0] not in GROUPS:
                break
    return words


def is_change(argv: list[str]) -> bool:
    words = command_of(argv)
    return bool(words) and words[-1] not in READS and "--help" not in argv


def record(argv: list[str], outcome: str) -> None:
    """Write the audit line; never fails the command (no vault yet: nothing to record in)."""
    from dbsafe.cli.context import open_vault
    from dbsafe.services import operations

    try:
        vault = open_vault()
        operations.audit(vault.catalog, operations.cli_principal(), f"cli@{socket.gethostname()}",
                     " ".join(command_of(argv)), None, outcome, {"argv": argv})
        vault.catalog.close()
    except Exception:  # noqa: BLE001 - the command's own result stands either way
        pass
