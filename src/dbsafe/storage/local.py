"""A vault in a local (or mounted) folder.

Writes go to ``tmp/<host>-<pid>-<random>`` and are renamed into place after fsync, and the
destination folder is fsynced, so a crash leaves either the whole object or none. Readers
use ``pread`` on cached descriptors: many threads read one pack without seeking.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from dbsafe.core.concurrency import pid_alive

_HOST = socket.gethostname().replace("-", "_")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _LocalWriter:
    def __init__(self, storage: LocalStorage, name: str) -> None:
        self._storage = storage
        self._name = name
        self._tmp = storage.tmp_path()
        self._file = open(self._tmp, "wb", buffering=0)  # noqa: SIM115 - closed in commit/abort
        self._size = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self._size += len(data)

    def tell(self) -> int:
        return self._size

    def commit(self) -> None:
        os.fsync(self._file.fileno())
        self._file.close()
        self._storage.publish(self._tmp, self._name)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class LocalStorage:
    RETIRE_GRACE = 60.0  # seconds: far longer than one block read

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._fds: dict[str, int] = {}
        self._retired: list[tuple[float, int]] = []
        self._fd_lock = threading.Lock()
        self._known_dirs: set[Path] = set()

    # writing -------------------------------------------------------------------------
    def tmp_path(self) -> Path:
        tmp = self.root / "tmp"
        if tmp not in self._known_dirs:
            tmp.mkdir(parents=True, exist_ok=True)
            self._known_dirs.add(tmp)
        return tmp / f"{_HOST}-{os.getpid()}-{secrets.token_hex(8)}"

    def publish(self, tmp: Path, name: str) -> None:
        dest = self.root / name
        parent = dest.parent
        if parent not in self._known_dirs:
            if not parent.exists():
                parent.mkdir(parents=True, exist_ok=True)
                _fsync_dir(parent.parent)
            self._known_dirs.add(parent)
        os.replace(tmp, dest)
        _fsync_dir(parent)

    def put(self, name: str, data: bytes) -> None:
        writer = self.writer(name)
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def writer(self, name: str) -> _LocalWriter:
        return _LocalWriter(self, name)

    # reading -------------------------------------------------------------------------
    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            with self._fd_lock:
                fd = self._fds.get(name)
                if fd is None:
                    fd = os.open(self.root / name, os.O_RDONLY)
                    self._fds[name] = fd
        return fd

    def get(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return os.pread(self._fd(name), length, offset)

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root)
            for f in files:
                yield str(rel / f)

    def retire(self, names: Iterable[str]) -> None:
        """Stop using the descriptors kept open on ``names`` (deleted by another process:
        their space is freed only once nobody holds them open). Each is closed by a call
        at least ``RETIRE_GRACE`` seconds later, not now: a read another thread runs on it
        right now stays valid."""
        now = time.monotonic()
        with self._fd_lock:
            self._retired += [(now, self._fds.pop(n)) for n in names if n in self._fds]
            due = [fd for t, fd in self._retired if now - t >= self.RETIRE_GRACE]
            self._retired = [(t, fd) for t, fd in self._retired if now - t < self.RETIRE_GRACE]
        for fd in due:
            os.close(fd)

    def names(self, folder: str) -> list[str]:
        """Names of the objects directly in ``folder`` (not recursive; a fast listing)."""
        try:
            return os.listdir(self.root / folder)
        except FileNotFoundError:
            return []

    def delete(self, name: str) -> None:
        with self._fd_lock:
            fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / name)

    def remove_stale_tmp(self) -> int:
        """Remove temporary files this host's dead processes left behind; returns how many."""
        tmp = self.root / "tmp"
        removed = 0
        if not tmp.is_dir():
            return 0
        for entry in tmp.iterdir():
            host, _, rest = entry.name.partition("-")
            pid_text = rest.partition("-")[0]
            if host != _HOST or not pid_text.isdigit():
                continue
            if pid_alive(int(pid_text)):
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
        return removed

    def close(self) -> None:
        with self._fd_lock:
            for fd in [*self._fds.values(), *(fd for _, fd in self._retired)]:
                os.close(fd)
            self._fds.clear()
            self._retired.clear()

    # object storage additions (issue 7, storage) -----------------------------------------
    def cleanup(self) -> int:
        """The ``Storage`` name for ``remove_stale_tmp``."""
        return self.remove_stale_tmp()

    def describe(self) -> dict[str, str]:
        return {"backend": "local", "location": str(self.root)}
    # end of object storage additions -----------------------------------------------------
