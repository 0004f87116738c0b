"""A vault in a local (or mounted) folder.

Writes go to ``tmp/<scope>-<pid>-<random>`` and are renamed into place after fsync, and the
destination folder is fsynced, so a crash leaves either the whole object or none; a folder
made for an object is made durable in its parent, up to a folder that existed, before the
object counts as written. Readers use ``pread`` on cached descriptors: many threads read
one pack without seeking.

Only the folder's owner may read it: folders are made 0700 and files 0600, and the vault's
own folder is set to 0700 when its owner opens it (``tighten``), whatever made it before.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from dbsafe.core.concurrency import pid_alive, pid_scope

FILE_MODE = 0o600
DIR_MODE = 0o700
# A temporary file of another scope (a clone of this machine, a previous boot, an older
# dbsafe naming files by host) is removed once it has not been written for this long.
TMP_STALE_SECONDS = 24 * 3600.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, durable: bool = True) -> None:
    """Create ``path`` and its missing parents (mode 0700); with ``durable``, fsync the
    parent of every folder created, from the top, so each new entry is on disk."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made by another writer meanwhile
        if durable:
            _fsync_dir(folder.parent)


def tighten(path: Path) -> None:
    """Make a folder its owner's alone (0700) when this process owns it; a folder of
    another owner is left as it is."""
    with contextlib.suppress(FileNotFoundError):
        st = path.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, st.st_mode & 0o7700)


class _LocalWriter:
    def __init__(self, storage: LocalStorage, name: str) -> None:
        self._storage = storage
        self._name = name
        self._tmp = storage.tmp_path()
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     FILE_MODE)
        self._file = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed in commit/abort
        self._size = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self._size += len(data)

    def tell(self) -> int:
        return self._size

    def commit(self, durable: bool = True) -> None:
        if durable:
            os.fsync(self._file.fileno())
        self._file.close()
        self._storage.publish(self._tmp, self._name, durable)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class LocalStorage:
    RETIRE_GRACE = 60.0  # seconds: far longer than one block read

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        tighten(self.root)
        self._fds: dict[str, int] = {}
        self._retired: list[tuple[float, int]] = []
        self._fd_lock = threading.Lock()
        self._known_dirs: set[Path] = set()

    # writing -------------------------------------------------------------------------
    def tmp_path(self) -> Path:
        tmp = self.root / "tmp"
        if tmp not in self._known_dirs:
            if not self.root.is_dir():  # its parents as they come; the vault's own: 0700
                self.root.parent.mkdir(parents=True, exist_ok=True)
                make_dirs(self.root)
            make_dirs(tmp, durable=False)
            self._known_dirs.add(tmp)
        return tmp / f"{pid_scope()}-{os.getpid()}-{secrets.token_hex(8)}"

    def publish(self, tmp: Path, name: str, durable: bool = True) -> None:
        dest = self.root / name
        parent = dest.parent
        if parent not in self._known_dirs:
            make_dirs(parent, durable)
            self._known_dirs.add(parent)
        os.replace(tmp, dest)
        if durable:
            _fsync_dir(parent)

    def put(self, name: str, data: bytes, durable: bool = True) -> None:
        writer = self.writer(name)
        try:
            writer.write(data)
            writer.commit(durable)
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

    def describe(self) -> dict:
        return {"backend": "local", "location": str(self.root)}

    def cleanup(self) -> int:
        """Remove temporary files whose writers are gone; returns how many. A writer in
        this process's scope (``pid_scope``) is gone when its pid is; any other file is
        removed once nothing wrote it for ``TMP_STALE_SECONDS`` (its pid means nothing
        here: a clone of this machine, a previous boot, an older dbsafe)."""
        tmp = self.root / "tmp"
        removed = 0
        if not tmp.is_dir():
            return 0
        scope = pid_scope()
        for entry in tmp.iterdir():
            parts = entry.name.split("-")
            if len(parts) == 3 and parts[0] == scope and parts[1].isdigit():
                if pid_alive(int(parts[1])):
                    continue
            else:
                try:
                    idle = time.time() - entry.stat().st_mtime
                except FileNotFoundError:
                    continue
                if idle < TMP_STALE_SECONDS:
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
