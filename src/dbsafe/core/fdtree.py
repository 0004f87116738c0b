"""Writing a folder tree as root without following anyone's links: through descriptors.

A restore runs as root and writes where other users may have been first (the postgres OS
user owns data directories and may plant links; a restore root may be writable by
others). So a tree is written only below a folder this process created itself and holds
open: every folder and file is created by name relative to its parent's descriptor
(``mkdirat``, ``openat`` with ``O_CREAT | O_EXCL | O_NOFOLLOW``), never by a path walked
from ``/``; no link is followed and no existing file is opened for writing. The only links
made are the ones asked for (``symlink``), and files are reopened for writing only below
folders made here, where nobody else can write until ``chown`` hands the tree over.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
O_WRITE = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
FOLDERS_OPEN = 64  # descriptors of recently used folders kept open (one per database folder
#                    would pass the usual limit of 1,024 open files on a big instance)


def open_dir(name: str | Path, dir_fd: int | None = None) -> int:
    """A folder's descriptor; refuses a link (ELOOP) or anything that is not a folder."""
    return os.open(name, O_DIR, dir_fd=dir_fd)


def make_dir(name: str, dir_fd: int, mode: int) -> int:
    """Create folder ``name`` in ``dir_fd`` (FileExistsError if anything has the name) and
    return its descriptor, with exactly ``mode``."""
    os.mkdir(name, 0o700, dir_fd=dir_fd)
    fd = open_dir(name, dir_fd)
    os.fchmod(fd, mode)
    return fd


def make_path(path: Path, mode: int) -> None:
    """``mkdir -p``, each folder it makes given exactly ``mode`` (whatever the umask): for
    folders an administrator named (a restore root, a scratch root)."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, mode)
            os.chmod(folder, mode)


def write_new(dir_fd: int, name: str, data: bytes, mode: int = 0o600,
              owner: tuple[int, int] | None = None, sync: bool = False) -> None:
    """A new file ``name`` in ``dir_fd`` holding ``data`` (FileExistsError if the name is
    taken: nothing existing is opened), given to ``owner`` (uid, gid) through its
    descriptor."""
    fd = os.open(name, O_NEW, 0o600, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _open_plain(name: str | Path, dir_fd: int | None) -> tuple[int, os.stat_result]:
    """A read descriptor on a regular file with one name, opened without following a
    link or waiting on a FIFO (another user's file: a hard link to a file of someone else
    is refused)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                 dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise OSError(f"{name} is not a plain file")
    return fd, st


def read_regular(dir_fd: int, name: str, limit: int = 1 << 20) -> bytes | None:
    """The bytes of plain file ``name`` in ``dir_fd`` (None when absent); refused when it
    is a link, not a regular file, has other names or is over ``limit`` bytes."""
    try:
        fd, st = _open_plain(name, dir_fd)
    except FileNotFoundError:
        return None
    try:
        if st.st_size > limit:
            raise OSError(f"{name} is over {limit} bytes")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def read_tail(path: Path, limit: int) -> bytes:
    """The last ``limit`` bytes of plain file ``path`` (the rules of ``read_regular``)."""
    fd, st = _open_plain(path, None)
    try:
        os.lseek(fd, max(0, st.st_size - limit), os.SEEK_SET)
        return os.read(fd, limit)
    finally:
        os.close(fd)


def replace_file(dir_fd: int, name: str, data: bytes, mode: int,
                 owner: tuple[int, int] | None = None) -> None:
    """Put ``data`` at ``name`` in ``dir_fd`` by writing a new file and renaming it over
    the old name: whatever was there (a link someone planted included) is replaced, never
    written through."""
    tmp = f".{name}.dbsafe-{os.getpid()}-{threading.get_ident()}"
    write_new(dir_fd, tmp, data, mode, owner, sync=True)
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        os.unlink(tmp, dir_fd=dir_fd)
        raise


class Tree:
    """A folder this process created, held open, and written only through descriptors.

    ``path`` is for messages and for programs that need a path (pg_ctl); the tree itself
    is reached through ``fd``. Relative names are normalised paths (the manifest rules
    hold that before a tree is written). Folders and files are made by one thread;
    ``open_write``, ``fsync`` and ``set_mtime`` may run in many.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, Path(path)
        self._folders: OrderedDict[str, int] = OrderedDict()

    def close(self) -> None:
        for fd in self._folders.values():
            os.close(fd)
        self._folders.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def folder(self, rel: str, mode: int = 0o700) -> int:
        """The descriptor of folder ``rel`` (not to be closed by the caller), made with
        ``mode`` where missing, each part opened without following a link."""
        if not rel:
            return self.fd
        fd = self._folders.get(rel)
        if fd is not None:
            self._folders.move_to_end(rel)
            return fd
        parent, _, name = rel.rpartition("/")
        parent_fd = self.folder(parent, mode)
        try:
            fd = make_dir(name, parent_fd, mode)
        except FileExistsError:
            fd = open_dir(name, parent_fd)
        self._folders[rel] = fd
        while len(self._folders) > FOLDERS_OPEN:
            os.close(self._folders.popitem(last=False)[1])
        return fd

    def subtree(self, rel: str, mode: int = 0o700) -> Tree:
        """Folder ``rel`` (made with ``mode`` where missing) as a tree of its own."""
        return Tree(os.dup(self.folder(rel, mode)), self.path / rel)

    def mkdir(self, rel: str, mode: int) -> None:
        """Folder ``rel`` with exactly ``mode`` (made, or made earlier as a parent)."""
        os.fchmod(self.folder(rel), mode)

    def create(self, rel: str, mode: int, size: int = 0) -> None:
        """A new file ``rel`` of ``size`` bytes (a hole until written), with ``mode``."""
        parent, _, name = rel.rpartition("/")
        fd = os.open(name, O_NEW, 0o600, dir_fd=self.folder(parent))
        try:
            os.fchmod(fd, mode)
            if size:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def open_write(self, rel: str, flags: int = 0) -> int:
        """A descriptor to write file ``rel``, made by ``create``: every folder on the way
        was made here and nobody else can write in them, so no link can be on it.
        ``flags``: more open flags (``O_DIRECT``)."""
        return os.open(rel, O_WRITE | flags, dir_fd=self.fd)

    def fsync(self, rel: str) -> None:
        fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def set_mtime(self, rel: str, mtime: float) -> None:
        os.utime(rel, (mtime, mtime), dir_fd=self.fd, follow_symlinks=False)

    def symlink(self, target: str, rel: str) -> None:
        """A link ``rel`` to ``target`` (PostgreSQL's tablespace links)."""
        parent, _, name = rel.rpartition("/")
        os.symlink(target, name, dir_fd=self.folder(parent))

    def chown(self, uid: int, gid: int) -> None:
        """Give the whole tree to ``uid``:``gid``; links are changed, not followed."""
        os.fchown(self.fd, uid, gid)
        for _path, dirs, files, dir_fd in os.fwalk(".", dir_fd=self.fd, follow_symlinks=False):
            for name in dirs + files:
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
