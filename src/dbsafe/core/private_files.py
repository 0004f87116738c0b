"""Small files only their owner reads (a client's settings, an agent's credential and
outbox, a private key), written so that a crash leaves the old file or the new one whole,
never a mix: written beside it under a random name (O_EXCL, O_NOFOLLOW: never through a
link someone planted), fsynced, then renamed over it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MODE = 0o600


def write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_folder(path: Path) -> None:
    """Make the names in ``path`` durable (a file created or renamed there survives a power
    loss only once its folder is fsynced too)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
