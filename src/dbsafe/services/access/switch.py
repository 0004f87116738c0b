"""Instant recovery's switch: an instance's data directory, as its file system holds it once
the server stopped, made real on disk (docs/instant-access.md, *Instant recovery*).

While the instance serves, the command restores the instance's base point into the new data
directory in the background (an ordinary restore: every block, in parallel). At the switch
the server is stopped, and this module makes that copy equal to the file system's final
tree: it writes the pages the instance changed (its local pages), the files it made, cuts
what it truncated, and removes what it deleted; a file it renamed is written whole. That is
a few megabytes for an instance that served minutes, so the server is down for seconds,
not for the hours a full copy of a large instance takes.

Everything is written through descriptors of folders held open, without following links
(core/fdtree.py's rules: the data directory belongs to the cluster's OS user).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pyfuse3

from dbsafe.core.fdtree import O_DIR, Tree, open_dir
from dbsafe.services.access.cow import PAGE
from dbsafe.services.access.fusefs import Node, PointFS

CHUNK = 1 << 20


def walk(fs: PointFS) -> Iterator[tuple[str, Node]]:
    """Every (path, node) of the file system's tree, folders before what is in them."""
    stack = [("", fs.nodes[pyfuse3.ROOT_INODE])]
    while stack:
        rel, node = stack.pop()
        yield rel, node
        for name, ino in sorted((node.children or {}).items(), reverse=True):
            child = fs.nodes.get(ino)
            if child is not None:
                stack.append((f"{rel}/{os.fsdecode(name)}" if rel else os.fsdecode(name),
                              child))


def copy_out(fs: PointFS, target: Path, uid: int, gid: int) -> dict:
    """Make ``target`` (a restore of the file system's base point) equal to the file
    system's tree; ``pg_wal``, a link to the instance's local WAL folder, becomes a folder
    with its files. Returns what was written.

    ``target`` belongs to the cluster's OS user by now, who may have planted links in it:
    every folder is opened part by part without following one (``Tree.folder``), and every
    file by its name in its folder's descriptor with ``O_NOFOLLOW``."""
    stats = {"files_written": 0, "pages_written": 0, "bytes_written": 0, "removed": 0}
    keep: set[str] = set()
    tree = Tree(open_dir(target), target)
    try:
        for rel, node in walk(fs):
            keep.add(rel)
            if not rel:
                continue
            parent, _, name = rel.rpartition("/")
            where = tree.folder(parent)
            if node.children is not None:
                _folder(tree, rel, where, name, node, uid, gid)
            elif node.target is not None and rel == "pg_wal" and fs.wal_dir is not None:
                keep.update(_wal(where, fs.wal_dir, uid, gid, stats))
            elif node.target is not None:
                _unlink(where, name)
                os.symlink(node.target, name, dir_fd=where)
            else:
                _file(fs, where, name, rel, node, stats)
        stats["removed"] = _remove_others(tree.fd, "", keep)
        os.sync()
    finally:
        tree.close()
    return stats


def _unlink(where: int, name: str) -> None:
    """Remove what has ``name`` in folder ``where``: a file, a link, or a whole folder."""
    try:
        st = os.stat(name, dir_fd=where, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=where)
    else:
        os.unlink(name, dir_fd=where)


def _folder(tree: Tree, rel: str, where: int, name: str, node: Node, uid: int,
            gid: int) -> None:
    try:
        st = os.stat(name, dir_fd=where, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=where)
    except FileNotFoundError:
        pass
    fd = tree.folder(rel, stat.S_IMODE(node.mode))
    os.fchmod(fd, stat.S_IMODE(node.mode))
    os.fchown(fd, uid, gid)


def _file(fs: PointFS, where: int, name: str, rel: str, node: Node, stats: dict) -> None:
    """One file: only its local pages when the copy holds its base at this path, else whole."""
    in_place = node.base is not None and node.base.path == rel
    if in_place:
        st = os.stat(name, dir_fd=where, follow_symlinks=False)
        in_place = stat.S_ISREG(st.st_mode)
    if not in_place:
        _unlink(where, name)
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if in_place else
                                                            os.O_CREAT | os.O_EXCL)
    fd = os.open(name, flags, 0o600, dir_fd=where)
    try:
        local = node.local
        if in_place:
            if local is None:
                return  # untouched: the restore wrote it
            os.ftruncate(fd, min(local.base_limit, node.size))  # what was cut reads zeros
            os.ftruncate(fd, node.size)
            for page in sorted(local.pages):
                n = max(0, min(PAGE, node.size - page * PAGE))
                if n:
                    os.pwrite(fd, local.read(page * PAGE, n), page * PAGE)
                    stats["pages_written"] += 1
                    stats["bytes_written"] += n
        else:
            for at in range(0, node.size, CHUNK):
                data = _node_bytes(fs, node, at, min(CHUNK, node.size - at))
                os.pwrite(fd, data, at)
                stats["bytes_written"] += len(data)
            stats["files_written"] += 1
        os.fchmod(fd, stat.S_IMODE(node.mode))
        os.fchown(fd, node.uid, node.gid)
    finally:
        os.close(fd)


def _node_bytes(fs: PointFS, node: Node, off: int, length: int) -> bytes:
    """What a read of the file system returns, read here directly (the server is down)."""
    if node.base is None:
        assert node.local is not None or node.size == 0
        return node.local.read(off, length) if node.local is not None else b""
    out = []
    for start, stop, local in fs.runs(node, off, off + length):
        if local:
            assert node.local is not None
            out.append(node.local.read(start, stop - start))
        else:
            limit = node.local.base_limit if node.local is not None else node.base.size
            have = max(0, min(stop, limit) - start)
            data = fs.view.read(node.base, start, have) if have else b""
            out.append(data + bytes(stop - start - len(data)))
    return b"".join(out)


def _wal(where: int, wal_dir: Path, uid: int, gid: int, stats: dict) -> set[str]:
    """``pg_wal`` (in folder ``where``) as a folder holding the instance's local WAL (its
    own files, made by the server that ran as the cluster's OS user: copied, never
    followed)."""
    try:
        st = os.stat("pg_wal", dir_fd=where, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink("pg_wal", dir_fd=where)
            os.mkdir("pg_wal", 0o700, dir_fd=where)
    except FileNotFoundError:
        os.mkdir("pg_wal", 0o700, dir_fd=where)
    target = os.open("pg_wal", O_DIR, dir_fd=where)
    source = open_dir(wal_dir)
    try:
        return {"pg_wal", *_copy_folder(source, target, "pg_wal", uid, gid, stats)}
    finally:
        os.close(target)
        os.close(source)


def _copy_folder(source: int, target: int, rel: str, uid: int, gid: int,
                 stats: dict) -> list[str]:
    """The regular files and folders of folder ``source`` copied into ``target``, folder
    by folder through descriptors, no link followed (the server's OS user writes the
    source); returns the paths copied, under ``rel``."""
    os.fchown(target, uid, gid)
    copied = []
    for name in sorted(os.listdir(source)):
        st = os.stat(name, dir_fd=source, follow_symlinks=False)
        path = f"{rel}/{name}"
        if stat.S_ISDIR(st.st_mode):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=target)
            sub_source, sub_target = open_dir(name, source), open_dir(name, target)
            try:
                copied += [path, *_copy_folder(sub_source, sub_target, path, uid, gid, stats)]
            finally:
                os.close(sub_source)
                os.close(sub_target)
        elif stat.S_ISREG(st.st_mode):
            _unlink(target, name)
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source)
            dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=target)
            try:
                with os.fdopen(src, "rb", closefd=False) as fin, \
                        os.fdopen(dst, "wb", closefd=False) as fout:
                    shutil.copyfileobj(fin, fout, CHUNK)
                os.fchown(dst, uid, gid)
            finally:
                os.close(src)
                os.close(dst)
            stats["bytes_written"] += st.st_size
            stats["files_written"] += 1
            copied.append(path)
    return copied


def _remove_others(fd: int, rel: str, keep: set[str]) -> int:
    """Remove what the copy holds and the final tree does not (the instance deleted it),
    folder by folder through descriptors (``fd`` is folder ``rel``'s)."""
    removed = 0
    for name in sorted(os.listdir(fd)):
        path = f"{rel}/{name}" if rel else name
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if path not in keep:
            _unlink(fd, name)
            removed += 1
        elif stat.S_ISDIR(st.st_mode):
            sub = open_dir(name, fd)
            try:
                removed += _remove_others(sub, path, keep)
            finally:
                os.close(sub)
    return removed
