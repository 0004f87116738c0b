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

from dbsafe.core.fdtree import O_DIR, open_dir
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
    with its files. Returns what was written."""
    stats = {"files_written": 0, "pages_written": 0, "bytes_written": 0, "removed": 0}
    keep: set[str] = set()
    top = open_dir(target)
    try:
        for rel, node in walk(fs):
            keep.add(rel)
            if node.children is not None:
                if rel:
                    _folder(top, rel, node, uid, gid)
            elif node.target is not None and rel == "pg_wal" and fs.wal_dir is not None:
                keep.update(_wal(top, fs.wal_dir, uid, gid, stats))
            elif node.target is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(rel, dir_fd=top)
                os.symlink(node.target, rel, dir_fd=top)
            else:
                _file(fs, top, rel, node, stats)
        stats["removed"] = _remove_others(top, "", keep)
        os.sync()
    finally:
        os.close(top)
    return stats


def _folder(top: int, rel: str, node: Node, uid: int, gid: int) -> None:
    try:
        os.mkdir(rel, stat.S_IMODE(node.mode), dir_fd=top)
    except FileExistsError:
        st = os.stat(rel, dir_fd=top, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(rel, dir_fd=top)
            os.mkdir(rel, stat.S_IMODE(node.mode), dir_fd=top)
    fd = os.open(rel, O_DIR, dir_fd=top)
    try:
        os.fchmod(fd, stat.S_IMODE(node.mode))
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def _file(fs: PointFS, top: int, rel: str, node: Node, stats: dict) -> None:
    """One file: only its local pages when the copy holds its base at this path, else whole."""
    in_place = node.base is not None and node.base.path == rel
    if not in_place:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rel, dir_fd=top)
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if in_place else
                                                            os.O_CREAT | os.O_EXCL)
    fd = os.open(rel, flags, stat.S_IMODE(node.mode), dir_fd=top)
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


def _wal(top: int, wal_dir: Path, uid: int, gid: int, stats: dict) -> set[str]:
    """``pg_wal`` as a folder holding the instance's local WAL (its own files, made by the
    server that ran as the cluster's OS user: copied, never followed)."""
    st = os.stat("pg_wal", dir_fd=top, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink("pg_wal", dir_fd=top)
        os.mkdir("pg_wal", 0o700, dir_fd=top)
    kept = {"pg_wal"}
    target = os.open("pg_wal", O_DIR, dir_fd=top)
    source = open_dir(wal_dir)
    try:
        os.fchown(target, uid, gid)
        for rel in _files_below(source, ""):
            kept.add(f"pg_wal/{rel}")
            _copy_plain(source, target, rel, uid, gid, stats)
    finally:
        os.close(target)
        os.close(source)
    return kept


def _names(top: int, rel: str) -> list[str]:
    fd = os.open(rel, O_DIR, dir_fd=top) if rel else os.dup(top)
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def _files_below(fd: int, rel: str) -> Iterator[str]:
    for entry in _names(fd, rel):
        path = f"{rel}/{entry}" if rel else entry
        st = os.stat(path, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            yield path
            yield from _files_below(fd, path)
        elif stat.S_ISREG(st.st_mode):
            yield path


def _copy_plain(source: int, target: int, rel: str, uid: int, gid: int, stats: dict) -> None:
    st = os.stat(rel, dir_fd=source, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileExistsError):
            os.mkdir(rel, 0o700, dir_fd=target)
        os.chown(rel, uid, gid, dir_fd=target, follow_symlinks=False)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(rel, dir_fd=target)
    src = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source)
    dst = os.open(rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o600, dir_fd=target)
    try:
        with os.fdopen(src, "rb", closefd=False) as fin, \
                os.fdopen(dst, "wb", closefd=False) as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
        os.fchown(dst, uid, gid)
        stats["bytes_written"] += st.st_size
        stats["files_written"] += 1
    finally:
        os.close(src)
        os.close(dst)


def _remove_others(top: int, rel: str, keep: set[str]) -> int:
    """Remove what the copy holds and the final tree does not (the instance deleted it)."""
    removed = 0
    for name in _names(top, rel):
        path = f"{rel}/{name}" if rel else name
        st = os.stat(path, dir_fd=top, follow_symlinks=False)
        if path not in keep:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path, dir_fd=top)
            else:
                os.unlink(path, dir_fd=top)
            removed += 1
        elif stat.S_ISDIR(st.st_mode):
            removed += _remove_others(top, path, keep)
    return removed
