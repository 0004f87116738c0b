"""A vault in a local (or mounted) folder.

Writes go to ``tmp/<scope>-<pid>-<random>`` and are renamed into place after fsync, and the
destination folder is fsynced, so a crash leaves either the whole object or none; a folder
made for an object is made durable in its parent, up to a folder that existed, before the
object counts as written. Readers use ``pread`` on cached descriptors: many threads read
one pack without seeking.

The folder may be a share others write (NFS, SMB): every name is reached from the root
folder one component at a time, never through a symbolic link (``O_NOFOLLOW``), and only
regular files count as objects. A link, a FIFO or a device planted under an object's name
reads as a missing object (``NotAFile``), so nobody can make dbsafe read, block on, write or
delete a file outside the vault.

Only the folder's owner may read it: folders are made 0700 and files 0600, and the vault's
own folder is set to 0700 when its owner opens it (``tighten``), whatever made it before.

A write the file system refuses for space (ENOSPC, or EDQUOT: a quota) raises ``vault.full``
naming the folder, the bytes of that write and the bytes free; the writer's caller drops
what it wrote (``abort``), as after any failed write.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from dbsafe.core.concurrency import pid_alive, pid_scope
from dbsafe.core.direct_writes import DirectAppender
from dbsafe.core.errors import NO_SPACE, DbsafeError
from dbsafe.core.private_files import fsync_folder

FILE_MODE = 0o600
DIR_MODE = 0o700
# A temporary file of another scope (a clone of this machine, a previous boot, an older
# dbsafe naming files by host) is removed once it has not been written for this long.
TMP_STALE_SECONDS = 24 * 3600.0
MAX_OBJECT = 2 << 30  # ``get`` reads whole objects: none dbsafe writes comes near this
FS_BLOCK = 4096  # what a refused write needs at least (a new name, a flush: one block)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_FOLLOWED = (errno.ELOOP, errno.ENOTDIR)


class NotAFile(FileNotFoundError):
    """An object's name holds something other than a regular file (a symbolic link, a FIFO,
    a device, a folder), is reached through one, or is no object name: read as missing."""


def tighten(path: Path) -> None:
    """Make a folder its owner's alone (0700) when this process owns it; a folder of
    another owner is left as it is."""
    with contextlib.suppress(FileNotFoundError):
        st = path.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(path, st.st_mode & 0o7700)


def _parts(name: str) -> list[str]:
    """The components of an object's or folder's name ("" is the root folder)."""
    if name == "":
        return []
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise NotAFile(errno.ENOENT, "not an object name", name)
    return parts


def _object(name: str) -> list[str]:
    parts = _parts(name)
    if not parts:
        raise NotAFile(errno.ENOENT, "not an object name", name)
    return parts


def _regular(st: os.stat_result, name: str) -> os.stat_result:
    if not stat.S_ISREG(st.st_mode):
        raise NotAFile(errno.ENOENT, "not a regular file", name)
    return st


class _LocalWriter:
    def __init__(self, storage: LocalStorage, name: str) -> None:
        self._storage = storage
        self._name = name
        self._tmp = storage.tmp_name()
        with storage.folder(["tmp"]) as tmp, storage.space(name, 0):  # no inode left
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, FILE_MODE, dir_fd=tmp)
        self._fd: int | None = fd  # closed in commit/abort
        self._out = DirectAppender(fd)  # a pack's chunks around the page cache
        self._size = 0

    def write(self, data: bytes | memoryview) -> None:
        with self._storage.space(self._name, len(data)):
            self._out.write(data)
        self._size += len(data)

    def tell(self) -> int:
        return self._size

    def commit(self, durable: bool = True) -> None:
        assert self._fd is not None, "committed or aborted already"
        with self._storage.space(self._name, 0):  # a file system may refuse at the flush
            self._out.finish()
            if durable:
                os.fsync(self._fd)
            fd, self._fd = self._fd, None
            os.close(fd)
        self._storage.publish(self._tmp, self._name, durable)

    def abort(self) -> None:
        self._out.release()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError), self._storage.folder(["tmp"]) as tmp:
            os.unlink(self._tmp, dir_fd=tmp)


class LocalStorage:
    RETIRE_GRACE = 60.0  # seconds: far longer than one block read

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        tighten(self.root)
        self._fds: dict[str, int] = {}
        self._retired: list[tuple[float, int]] = []
        self._fd_lock = threading.Lock()

    def free_space(self) -> int:
        """Bytes an unprivileged writer may still add to the folder's file system."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    @contextlib.contextmanager
    def space(self, name: str, need: int) -> Iterator[None]:
        """The file system refusing a write of ``need`` bytes to ``name`` for space, as
        ``vault.full``."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            try:
                free = self.free_space()
            except OSError:
                free = 0
            raise DbsafeError("vault.full", path=self.root, what=f"writing {name}",
                              need=max(need, FS_BLOCK), free=free) from exc

    @contextlib.contextmanager
    def folder(self, parts: list[str], create: bool = False,
               durable: bool = True) -> Iterator[int]:
        """A descriptor of the folder ``parts`` under the root, reached without following a
        link (the root itself is taken as configured). ``create`` makes the missing ones
        (0700), each fsynced into its parent when ``durable``. FileNotFoundError (NotAFile
        for a link or a file on the way) when it does not exist."""
        if create and not self.root.is_dir():  # its parents as they come; its own: 0700
            self.root.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                self.root.mkdir(mode=DIR_MODE)
                if durable:
                    fsync_folder(self.root.parent)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                try:
                    inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):  # or another writer made it
                        os.mkdir(part, DIR_MODE, dir_fd=fd)
                        if durable:
                            os.fsync(fd)
                    inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in _NOT_FOLLOWED:
                        raise NotAFile(errno.ENOENT, "a link or a file, not a folder",
                                       part) from None
                    raise
                os.close(fd)
                fd = inner
            yield fd
        finally:
            os.close(fd)

    def _open(self, name: str) -> int:
        """A read descriptor of the regular file ``name`` (never a link, FIFO or device)."""
        parts = _object(name)
        with self.folder(parts[:-1]) as parent:
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                             | os.O_CLOEXEC, dir_fd=parent)
            except OSError as exc:
                if exc.errno in _NOT_FOLLOWED:
                    raise NotAFile(errno.ENOENT, "a link", name) from None
                raise
        try:
            _regular(os.fstat(fd), name)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _stat(self, name: str) -> os.stat_result:
        parts = _object(name)
        with self.folder(parts[:-1]) as parent:
            return _regular(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False), name)

    # writing -------------------------------------------------------------------------
    def tmp_name(self) -> str:
        """A new name in ``tmp/`` (made if missing), for one write."""
        with self.space("tmp/", 0), self.folder(["tmp"], create=True, durable=False):
            pass
        return f"{pid_scope()}-{os.getpid()}-{secrets.token_hex(8)}"

    def publish(self, tmp: str, name: str, durable: bool = True) -> None:
        parts = _object(name)
        with self.space(name, 0), self.folder(["tmp"]) as tmp_fd, \
                self.folder(parts[:-1], create=True, durable=durable) as parent:
            os.replace(tmp, parts[-1], src_dir_fd=tmp_fd, dst_dir_fd=parent)
            if durable:
                os.fsync(parent)

    def put(self, name: str, data: bytes, durable: bool = True) -> None:
        writer = self.writer(name)
        try:
            writer.write(data)
            writer.commit(durable)
        except BaseException:
            writer.abort()
            raise

    def writer(self, name: str) -> _LocalWriter:
        _object(name)
        return _LocalWriter(self, name)

    # reading -------------------------------------------------------------------------
    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            with self._fd_lock:
                fd = self._fds.get(name)
                if fd is None:
                    fd = self._open(name)
                    self._fds[name] = fd
        return fd

    def get(self, name: str) -> bytes:
        fd = self._open(name)
        with open(fd, "rb") as f:
            if os.fstat(fd).st_size > MAX_OBJECT:
                raise NotAFile(errno.EFBIG, "larger than any object", name)
            return f.read()

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return os.pread(self._fd(name), length, offset)

    def exists(self, name: str) -> bool:
        try:
            self._stat(name)
        except FileNotFoundError:
            return False
        return True

    def size(self, name: str) -> int:
        return self._stat(name).st_size

    def list(self, prefix: str) -> Iterator[str]:
        try:
            with self.folder(_parts(prefix)) as fd:
                yield from self._walk(fd, prefix)
        except FileNotFoundError:
            return

    def _walk(self, fd: int, rel: str) -> Iterator[str]:
        with os.scandir(fd) as it:
            entries = list(it)
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_file(follow_symlinks=False):
                yield name
            elif entry.is_dir(follow_symlinks=False):
                try:
                    inner = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # gone, or swapped for a link meanwhile
                try:
                    yield from self._walk(inner, name)
                finally:
                    os.close(inner)

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

    def names(self, folder: str) -> builtins.list[str]:
        """Names of the objects directly in ``folder`` (not recursive; a fast listing)."""
        try:
            with self.folder(_parts(folder)) as fd, os.scandir(fd) as it:
                return [e.name for e in it if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return []

    def delete(self, name: str) -> None:
        with self._fd_lock:
            fd = self._fds.pop(name, None)
        if fd is not None:
            os.close(fd)
        parts = _object(name)
        with contextlib.suppress(FileNotFoundError), self.folder(parts[:-1]) as parent:
            os.unlink(parts[-1], dir_fd=parent)  # a link is removed, never followed

    def open_guard(self, name: str) -> int:
        """A descriptor of the file ``name`` (made, 0600) to hold an advisory lock on."""
        parts = _object(name)
        with self.space(name, 0), self.folder(parts[:-1], create=True, durable=False) as parent:
            try:
                return os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                               | os.O_CLOEXEC, FILE_MODE, dir_fd=parent)
            except OSError as exc:
                if exc.errno in _NOT_FOLLOWED:
                    raise NotAFile(errno.ENOENT, "a link", name) from None
                raise

    def describe(self) -> dict[str, str]:
        return {"backend": "local", "location": str(self.root)}

    def cleanup(self) -> int:
        """Remove temporary files whose writers are gone; returns how many. A writer in
        this process's scope (``pid_scope``) is gone when its pid is; any other file is
        removed once nothing wrote it for ``TMP_STALE_SECONDS`` (its pid means nothing
        here: a clone of this machine, a previous boot, an older dbsafe)."""
        removed = 0
        scope = pid_scope()
        try:
            with self.folder(["tmp"]) as tmp, os.scandir(tmp) as it:
                for entry in it:
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    parts = entry.name.split("-")
                    if len(parts) == 3 and parts[0] == scope and parts[1].isdigit():
                        if pid_alive(int(parts[1])):
                            continue
                    else:
                        try:
                            idle = time.time() - entry.stat(follow_symlinks=False).st_mtime
                        except FileNotFoundError:
                            continue
                        if idle < TMP_STALE_SECONDS:
                            continue
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=tmp)
                        removed += 1
        except FileNotFoundError:
            return 0
        return removed

    def close(self) -> None:
        with self._fd_lock:
            for fd in [*self._fds.values(), *(fd for _, fd in self._retired)]:
                os.close(fd)
            self._fds.clear()
            self._retired.clear()
