"""Passphrases: from the environment (scripts, services) or a prompt (a person at a
terminal), never from a command-line argument (it would show in `ps` and shell history)."""

from __future__ import annotations

import getpass
import math
import os
import string
import sys

from dbsafe.core.errors import DbsafeError

PASSPHRASE_ENV = "DBSAFE_PASSPHRASE"
NEW_PASSPHRASE_ENV = "DBSAFE_NEW_PASSPHRASE"
MIN_LENGTH = 12
MIN_DISTINCT = 8
MIN_BITS = 60  # different characters x log2(alphabet of the classes used): a simple count


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


def passphrase_problem(value: str) -> str | None:
    """Why a new passphrase is too weak to protect a vault key, or None. A simple rule,
    not a password meter: at least 12 characters, 8 of them different, and 60 bits when
    each *different* character counts as a random one of the classes used (lower case,
    upper case, digits, others), so repeats add nothing: 13 different lower-case letters
    pass, "password1234" does not, four words with spaces do."""
    if len(value) < MIN_LENGTH:
        return f"{len(value)} characters"
    if len(set(value)) < MIN_DISTINCT:
        return f"only {len(set(value))} different characters"
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits]
    alphabet = sum(len(c) for c in classes if any(ch in c for ch in value))
    if any(not any(ch in c for c in classes) for ch in value):
        alphabet += 33  # signs, spaces, letters beyond ASCII
    bits = len(set(value)) * math.log2(alphabet)
    if bits < MIN_BITS:
        return f"about {bits:.0f} bits by a simple count, fewer than {MIN_BITS}"
    return None


def new_passphrase(purpose: str, env: str = PASSPHRASE_ENV, confirm: bool = True) -> str:
    """A passphrase that will protect a key: as ``passphrase``, refused when weak
    (``key.passphrase_weak``)."""
    value = passphrase(purpose, env, confirm)
    check_passphrase(value)
    return value


def check_passphrase(value: str) -> None:
    problem = passphrase_problem(value)
    if problem is not None:
        raise DbsafeError("key.passphrase_weak", reason=problem, minimum=MIN_LENGTH)
