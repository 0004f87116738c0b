"""core/direct_writes.py: a restore's writes around the page cache, on this machine's
filesystem (ext4 under /var/tmp takes O_DIRECT), with the tails and refusals that must still
write every byte."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbsafe.core.direct_writes import ALIGN, CHUNK, O_DIRECT, DirectAppender, DirectWrites


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder on a disk filesystem (the test's tmp_path may be a tmpfs)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="dbsafe-direct-"))
    yield path
    for p in path.iterdir():
        p.unlink()
    path.rmdir()


def _opener(path: Path, seen: list[int]):
    def open_(flags: int) -> int:
        seen.append(flags)
        return os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    return open_


def test_blocks_and_odd_tails_are_written_whole(folder):
    path = folder / "f"
    writes = DirectWrites()
    seen: list[int] = []
    fd, direct = writes.open(_opener(path, seen))
    try:
        assert direct and seen == [O_DIRECT] and fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT
        block = os.urandom(1 << 20)
        tail = os.urandom(3 * ALIGN + 123)  # an aligned part and 123 bytes through the cache
        writes.pwrite(fd, block, 0)
        writes.pwrite(fd, memoryview(tail), 1 << 20)
        writes.pwrite(fd, b"x" * 10, (1 << 20) + len(tail) + 5)  # an unaligned offset
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT  # set again after the tail
    finally:
        os.close(fd)
    data = path.read_bytes()
    assert data[:1 << 20] == block
    assert data[1 << 20:(1 << 20) + len(tail)] == tail
    assert data[-10:] == b"x" * 10 and data[-15:-10] == bytes(5)
    assert writes.enabled


def test_threads_write_from_their_own_buffers(folder):
    writes = DirectWrites()
    blocks = {i: os.urandom(1 << 20) for i in range(8)}

    def write(i: int) -> None:
        fd, _ = writes.open(_opener(folder / f"t{i}", []))
        try:
            for n in range(4):
                writes.pwrite(fd, blocks[(i + n) % 8], n << 20)
        finally:
            os.close(fd)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        data = (folder / f"t{i}").read_bytes()
        assert [data[n << 20:(n + 1) << 20] for n in range(4)] == \
            [blocks[(i + n) % 8] for n in range(4)]


def test_a_filesystem_that_refuses_it_is_written_through_the_cache(folder):
    path = folder / "f"
    writes = DirectWrites()
    seen: list[int] = []

    def refusing(flags: int) -> int:
        seen.append(flags)
        if flags & O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)

    fd, direct = writes.open(refusing)
    writes.pwrite(fd, b"a" * ALIGN * 2, 0, direct)
    os.close(fd)
    assert seen == [O_DIRECT, 0] and not writes.enabled and not direct
    assert path.read_bytes() == b"a" * ALIGN * 2
    fd, _ = writes.open(refusing)  # not asked again
    os.close(fd)
    assert seen == [O_DIRECT, 0, 0]

    def failing(flags: int) -> int:
        raise OSError(errno.EACCES, "Permission denied")
    with pytest.raises(PermissionError):
        DirectWrites().open(failing)  # other errors are the caller's


def test_off_writes_through_the_cache(folder):
    writes = DirectWrites(enabled=False)
    seen: list[int] = []
    fd, direct = writes.open(_opener(folder / "f", seen))
    writes.pwrite(fd, b"z" * ALIGN, 0, direct)
    os.close(fd)
    assert seen == [0] and (folder / "f").read_bytes() == b"z" * ALIGN


# --- DirectAppender: the vault's packs ---------------------------------------------------

def _appended(path: Path, pieces: list[bytes]) -> tuple[bool, bool]:
    """Append ``pieces`` to a new file: (O_DIRECT set after the writes, after finish)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        out = DirectAppender(fd)
        for piece in pieces:
            out.write(piece)
        during = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT)
        out.finish()
        return during, bool(fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT)
    finally:
        os.close(fd)


def test_an_appender_writes_chunks_around_the_cache_and_the_tail_through_it(folder):
    pieces = [os.urandom(n) for n in (1000, CHUNK, 3 * CHUNK // 2 + 7, 5)]
    during, after = _appended(folder / "pack", pieces)
    assert during and after  # chunks went direct; the flag is set again after the tail
    assert (folder / "pack").read_bytes() == b"".join(pieces)


def test_a_small_file_is_written_at_the_end_through_the_cache(folder):
    during, after = _appended(folder / "small", [b"manifest", b"!"])
    assert not during and not after
    assert (folder / "small").read_bytes() == b"manifest!"


def test_an_appender_on_a_filesystem_that_refuses_it(folder, monkeypatch):
    real = fcntl.fcntl

    def refusing(fd, cmd, arg=0):
        if cmd == fcntl.F_SETFL and arg & O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    pieces = [os.urandom(CHUNK + 100), os.urandom(2 * CHUNK)]
    during, _ = _appended(folder / "pack", pieces)
    assert not during
    assert (folder / "pack").read_bytes() == b"".join(pieces)
