"""The FUSE file system of instant access: a point's view (view.py) as a folder tree, read
only, or with every write kept in a local copy-on-write store (cow.py).

Why a file system of our own rather than overlayfs over a read-only view: overlayfs copies
a whole file up the first time PostgreSQL opens it for writing, which it does to read a
relation, and crash recovery touches nearly every one; here a write copies up one 8 KiB
page, so an instance started on a 2 TB point fetches and stores what it reads and writes,
not the instance (docs/instant-access.md).

The tree lives in memory: one ``Node`` per file, folder or link, made from the view when
mounted; names, sizes, modes and owners change only here. File contents come from the
view's blocks, a page at a time from the local store once written. Reads of the vault run
in worker threads (a fetch waits on storage and decompression); local reads and writes
run in the file system's own loop. Writes to one file are serialised (a copy-up is
a read of the vault followed by a write: two at once could lose one).

Nothing here writes to the vault or to the point's source: the view only reads, the store
is a folder of local files, removed with the mount.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from dbsafe.services.access.cow import PAGE, LocalPages
from dbsafe.services.access.view import PointView, ViewFile

ATTR_TIMEOUT = 5.0     # every change comes through here: the kernel may keep what it was told
READ_THREADS = 16      # vault reads at once


@dataclass
class Node:
    ino: int
    mode: int                       # the whole st_mode: type and permissions
    uid: int
    gid: int
    mtime_ns: int
    nlink: int = 1
    children: dict[bytes, int] | None = None   # a folder's entries
    target: bytes | None = None                # a link's
    size: int = 0
    base: ViewFile | None = None               # a file of the point, under its local pages
    local: LocalPages | None = None
    opened: int = 0
    lock: trio.Lock = field(default_factory=trio.Lock)


class PointFS(pyfuse3.Operations):
    """``view`` as a tree owned by ``uid``/``gid``; writable into ``store`` (a folder of
    local files) or, when ``store`` is None, read only (EROFS)."""

    supports_dot_lookup = False
    enable_writeback_cache = True   # the kernel gathers writes (and rewrites of a page)
    enable_acl = False

    def __init__(self, view: PointView, uid: int, gid: int, store: Path | None,
                 wal_dir: Path | None = None) -> None:
        super().__init__()
        self.view = view
        self.store = store
        self.wal_dir = wal_dir
        self.uid, self.gid = uid, gid
        self.nodes: dict[int, Node] = {}
        self._next = pyfuse3.ROOT_INODE
        self._limiter = trio.CapacityLimiter(READ_THREADS)
        self.local_bytes = 0
        self._build()

    # the tree ----------------------------------------------------------------------------
    def _new(self, mode: int, uid: int, gid: int, **kw: Any) -> Node:
        node = Node(self._next, mode, uid, gid, time.time_ns(), **kw)
        self.nodes[node.ino] = node
        self._next += 1
        return node

    def _build(self) -> None:
        """The view's tree; with ``wal_dir``, ``pg_wal`` is a link to that local folder
        instead: the WAL recovery restores and the WAL the server writes never pass
        through here (16 MiB a segment, written once, read once)."""
        inode_of: dict[str, int] = {}
        moved = self.wal_dir is not None
        for path in sorted(self.view.dirs, key=lambda p: (p.count("/"), p)):
            if moved and _in_wal(path):
                continue
            d = self.view.dirs[path]
            node = self._new(stat.S_IFDIR | d.mode, self.uid, self.gid, children={}, nlink=2)
            inode_of[path] = node.ino
            if path:
                self._attach(inode_of[path.rpartition("/")[0]], path.rpartition("/")[2], node)
        if moved:
            link = self._new(stat.S_IFLNK | 0o777, self.uid, self.gid,
                             target=os.fsencode(str(self.wal_dir)))
            self._attach(pyfuse3.ROOT_INODE, "pg_wal", link)
        for path, f in self.view.files.items():
            if moved and _in_wal(path):
                continue
            node = self._new(stat.S_IFREG | f.mode, self.uid, self.gid, size=f.size, base=f)
            node.mtime_ns = int(f.mtime * 1e9)
            self._attach(inode_of[path.rpartition("/")[0]], path.rpartition("/")[2], node)

    def _attach(self, parent_ino: int, name: str | bytes, node: Node) -> None:
        parent = self.nodes[parent_ino]
        assert parent.children is not None
        parent.children[os.fsencode(name) if isinstance(name, str) else name] = node.ino

    def _dir(self, ino: int) -> Node:
        node = self._node(ino)
        if node.children is None:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return node

    def _node(self, ino: int) -> Node:
        try:
            return self.nodes[ino]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _writable(self) -> Path:
        if self.store is None:
            raise pyfuse3.FUSEError(errno.EROFS)
        return self.store

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = ATTR_TIMEOUT
        a.attr_timeout = ATTR_TIMEOUT
        a.st_mode = node.mode
        a.st_nlink = node.nlink
        a.st_uid, a.st_gid = node.uid, node.gid
        a.st_rdev = 0
        a.st_size = len(node.target) if node.target is not None else node.size
        a.st_blksize = PAGE
        a.st_blocks = -(-a.st_size // 512)
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = node.mtime_ns
        return a

    # looking up --------------------------------------------------------------------------
    async def lookup(self, parent_inode, name, ctx=None):  # type: ignore[no-untyped-def]
        parent = self._dir(parent_inode)
        assert parent.children is not None
        ino = parent.children.get(name)
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(self.nodes[ino])

    async def getattr(self, inode, ctx=None):  # type: ignore[no-untyped-def]
        return self._attrs(self._node(inode))

    async def readlink(self, inode, ctx):  # type: ignore[no-untyped-def]
        node = self._node(inode)
        if node.target is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return node.target

    async def opendir(self, inode, ctx):  # type: ignore[no-untyped-def]
        self._dir(inode)
        return inode

    async def readdir(self, fh, start_id, token):  # type: ignore[no-untyped-def]
        node = self._dir(fh)
        assert node.children is not None
        entries = sorted(node.children.items())  # an order that holds between calls
        for i, (name, ino) in enumerate(entries[start_id:], start_id + 1):
            child = self.nodes.get(ino)
            if child is not None and not pyfuse3.readdir_reply(token, name,
                                                               self._attrs(child), i):
                return

    async def statfs(self, ctx):  # type: ignore[no-untyped-def]
        s = pyfuse3.StatvfsData()
        where = os.statvfs(self.store) if self.store is not None else None
        s.f_bsize = s.f_frsize = PAGE
        total = sum(n.size for n in self.nodes.values())
        free = where.f_bavail * where.f_frsize if where is not None else 0
        s.f_blocks = (total + free) // PAGE
        s.f_bfree = s.f_bavail = free // PAGE
        s.f_files = len(self.nodes) + 1_000_000
        s.f_ffree = s.f_favail = 1_000_000
        s.f_namemax = 255
        return s

    async def getxattr(self, inode, name, ctx):  # type: ignore[no-untyped-def]
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    async def listxattr(self, inode, ctx):  # type: ignore[no-untyped-def]
        return []

    # reading and writing -----------------------------------------------------------------
    async def open(self, inode, flags, ctx):  # type: ignore[no-untyped-def]
        node = self._node(inode)
        if node.children is not None:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC):
            self._writable()
        node.opened += 1
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)  # changed only through here

    async def release(self, fh):  # type: ignore[no-untyped-def]
        node = self.nodes.get(fh)
        if node is not None:
            node.opened -= 1
            self._forget_if_gone(node)

    async def flush(self, fh):  # type: ignore[no-untyped-def]
        return None

    async def fsync(self, fh, datasync):  # type: ignore[no-untyped-def]
        return None  # the store lives as long as the mount: nothing outlives a crash

    async def fsyncdir(self, fh, datasync):  # type: ignore[no-untyped-def]
        return None

    async def read(self, fh, off, size):  # type: ignore[no-untyped-def]
        node = self._node(fh)
        end = min(node.size, off + size)
        if off >= end:
            return b""
        pieces = []
        for start, stop, local in self.runs(node, off, end):
            if local:
                assert node.local is not None
                pieces.append(node.local.read(start, stop - start))
            else:
                pieces.append(await self._base(node, start, stop - start))
        return b"".join(pieces)

    def runs(self, node: Node, off: int, end: int) -> Iterator[tuple[int, int, bool]]:
        """[off, end) cut into runs read from the local store or from the point."""
        if node.base is None:
            yield off, end, True
            return
        local = node.local.pages if node.local is not None else ()
        start = off
        here = (off // PAGE) in local
        page = off // PAGE + 1
        while page * PAGE < end:
            now = page in local
            if now != here:
                yield start, page * PAGE, here
                start, here = page * PAGE, now
            page += 1
        yield start, end, here

    async def _base(self, node: Node, off: int, length: int) -> bytes:
        """The point's bytes of the file, zeros from where a truncation cut them."""
        assert node.base is not None
        limit = node.local.base_limit if node.local is not None else node.base.size
        have = max(0, min(length, limit - off))
        data: bytes | None = b""
        if have:
            data = self.view.read_cached(node.base, off, have) or \
                await trio.to_thread.run_sync(self.view.read, node.base, off, have,
                                              limiter=self._limiter)
        assert data is not None
        return data + bytes(length - len(data))

    def _local(self, node: Node) -> LocalPages:
        if node.local is None:
            node.local = LocalPages(self._writable() / str(node.ino), node.size,
                                    node.base.size if node.base is not None else 0)
        return node.local

    async def write(self, fh, off, buf):  # type: ignore[no-untyped-def]
        self._writable()
        node = self._node(fh)
        async with node.lock:
            local = self._local(node)
            if node.base is not None:
                for page in local.pages_to_copy_up(off, len(buf)):
                    local.put_page(page, await self._base(node, page * PAGE, PAGE))
            before = local.stored
            local.write(off, buf, track=node.base is not None)
            self.local_bytes += local.stored - before
            node.size = max(node.size, off + len(buf))
            node.mtime_ns = time.time_ns()
        return len(buf)

    async def setattr(self, inode, attr, fields, fh, ctx):  # type: ignore[no-untyped-def]
        node = self._node(inode)
        if fields.update_size or fields.update_mode or fields.update_uid or \
                fields.update_gid or fields.update_mtime:
            self._writable()
        if fields.update_size:
            async with node.lock:
                local = self._local(node)
                local.truncate(attr.st_size)
                node.size = attr.st_size
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            node.uid = attr.st_uid
        if fields.update_gid:
            node.gid = attr.st_gid
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        return self._attrs(node)

    # changing the tree -------------------------------------------------------------------
    def _add(self, parent_inode: int, name: bytes, mode: int, ctx: Any, **kw: Any) -> Node:
        self._writable()
        parent = self._dir(parent_inode)
        assert parent.children is not None
        if name in parent.children:
            raise pyfuse3.FUSEError(errno.EEXIST)
        node = self._new(mode, ctx.uid, ctx.gid, **kw)
        parent.children[name] = node.ino
        parent.mtime_ns = node.mtime_ns
        return node

    async def mkdir(self, parent_inode, name, mode, ctx):  # type: ignore[no-untyped-def]
        node = self._add(parent_inode, name, stat.S_IFDIR | (mode & ~ctx.umask & 0o7777), ctx,
                         children={}, nlink=2)
        return self._attrs(node)

    async def create(self, parent_inode, name, mode, flags, ctx):  # type: ignore[no-untyped-def]
        node = self._add(parent_inode, name, stat.S_IFREG | (mode & ~ctx.umask & 0o7777), ctx)
        node.opened = 1
        return pyfuse3.FileInfo(fh=node.ino, keep_cache=True), self._attrs(node)

    async def symlink(self, parent_inode, name, target, ctx):  # type: ignore[no-untyped-def]
        node = self._add(parent_inode, name, stat.S_IFLNK | 0o777, ctx, target=target)
        return self._attrs(node)

    async def link(self, inode, new_parent_inode, new_name, ctx):  # type: ignore[no-untyped-def]
        self._writable()
        node = self._node(inode)
        if node.children is not None:
            raise pyfuse3.FUSEError(errno.EPERM)
        parent = self._dir(new_parent_inode)
        assert parent.children is not None
        if new_name in parent.children:
            raise pyfuse3.FUSEError(errno.EEXIST)
        parent.children[new_name] = node.ino
        node.nlink += 1
        return self._attrs(node)

    async def unlink(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        self._writable()
        node = self._child(parent_inode, name)
        if node.children is not None:
            raise pyfuse3.FUSEError(errno.EISDIR)
        self._drop_entry(parent_inode, name, node)

    async def rmdir(self, parent_inode, name, ctx):  # type: ignore[no-untyped-def]
        self._writable()
        node = self._child(parent_inode, name)
        if node.children is None:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if node.children:
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        self._drop_entry(parent_inode, name, node)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new,  # type: ignore[no-untyped-def]
                     flags, ctx):
        self._writable()
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        node = self._child(parent_inode_old, name_old)
        new_parent = self._dir(parent_inode_new)
        assert new_parent.children is not None
        there = new_parent.children.get(name_new)
        if there == node.ino:
            return
        if there is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise pyfuse3.FUSEError(errno.EEXIST)
            old = self.nodes[there]
            if (old.children is None) != (node.children is None):
                raise pyfuse3.FUSEError(errno.EISDIR if old.children is not None
                                        else errno.ENOTDIR)
            if old.children:
                raise pyfuse3.FUSEError(errno.ENOTEMPTY)
            self._drop_entry(parent_inode_new, name_new, old)
        if node.children is not None and self._inside(parent_inode_new, node.ino):
            raise pyfuse3.FUSEError(errno.EINVAL)
        old_parent = self._dir(parent_inode_old)
        assert old_parent.children is not None
        del old_parent.children[name_old]
        new_parent.children[name_new] = node.ino
        old_parent.mtime_ns = new_parent.mtime_ns = time.time_ns()

    def _inside(self, ino: int, folder: int) -> bool:
        """Whether folder ``ino`` is ``folder`` or below it (a folder moved into itself)."""
        seen = {folder}
        stack = [folder]
        while stack:
            node = self.nodes[stack.pop()]
            for child in (node.children or {}).values():
                if child == ino:
                    return True
                if child not in seen and self.nodes[child].children is not None:
                    seen.add(child)
                    stack.append(child)
        return ino == folder

    def _child(self, parent_inode: int, name: bytes) -> Node:
        parent = self._dir(parent_inode)
        assert parent.children is not None
        ino = parent.children.get(name)
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.nodes[ino]

    def _drop_entry(self, parent_inode: int, name: bytes, node: Node) -> None:
        parent = self.nodes[parent_inode]
        assert parent.children is not None
        del parent.children[name]
        parent.mtime_ns = time.time_ns()
        node.nlink -= 2 if node.children is not None else 1
        self._forget_if_gone(node)

    def _forget_if_gone(self, node: Node) -> None:
        """A node no name and no open file leads to: its local pages go."""
        if node.nlink <= 0 and node.opened <= 0 and node.ino in self.nodes:
            if node.local is not None:
                self.local_bytes -= node.local.stored
                node.local.close(remove=True)
            del self.nodes[node.ino]

    def close(self) -> None:
        for node in self.nodes.values():
            if node.local is not None:
                node.local.close(remove=True)


def _in_wal(path: str) -> bool:
    return path == "pg_wal" or path.startswith("pg_wal/")
