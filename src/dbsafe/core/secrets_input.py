"""Passphrases: from the environment (scripts, services) or a prompt (a person at a
terminal), never from a command-line argument (it would show in `ps` and shell history)."""

from __future__ import annotations

import getpass
import os
import sys

from dbsafe.core.errors import DbsafeError

PASSPHRASE_ENV = "DBSAFE_PASSPHRASE"
NEW_PASSPHRASE_ENV = "DBSAFE_NEW_PASSPHRASE"


def passphrase(purpose: str, env: str = PASSPHRASE_ENV, confirm: bool = False) -> str:
    """The passphrase in ``env``, else asked at the terminal (twice when ``confirm``)."""
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise DbsafeError("key.passphrase_needed", purpose=purpose, env=env)
    value = getpass.getpass(f"passphrase {purpose}: ")
    if confirm and getpass.getpass("again: ") != value:
        raise DbsafeError("key.passphrase_mismatch")
    if not value:
        raise DbsafeError("key.passphrase_needed", purpose=purpose, env=env)
    return value
