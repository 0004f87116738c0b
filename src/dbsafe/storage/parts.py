"""A streaming object write cut into parts that upload in parallel, with bounded memory.

Object stores take a large object as parts (S3 multipart upload parts, Azure staged blocks)
and make it visible in one final call. ``PartedWriter`` does the buffering and the
concurrency once for both: ``write`` fills a part buffer, each full part goes to the
backend's thread pool, and a writer never holds more than ``in_flight`` parts beyond the one
it is filling (``write`` waits for a slot), so a 64 MiB pack costs at most
``(in_flight + 1) * part_size`` of memory however fast the producer is.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait


class PartedWriter:
    """Subclasses say how to store one part, the whole object, and how to finish or drop."""

    def __init__(self, pool: ThreadPoolExecutor, part_size: int, in_flight: int) -> None:
        self._pool = pool
        self._part_size = part_size
        self._slots = threading.BoundedSemaphore(in_flight)
        self._buffer = bytearray()
        self._futures: list[Future[object]] = []
        self._size = 0
        self._state = "open"  # then "committed" or "aborted"

    # hooks -------------------------------------------------------------------------------
    def _put_whole(self, data: bytes) -> None:
        """Store the object in one request (it fitted in one part)."""
        raise NotImplementedError

    def _start_parts(self) -> None:
        """Called in the writer's thread before the first part is handed to the pool."""

    def _upload_part(self, number: int, data: bytes) -> object:
        """Store part ``number`` (1-based); the result is handed to ``_complete``."""
        raise NotImplementedError

    def _complete(self, parts: list[object]) -> None:
        """Make the object from its parts, in order: the one atomic, visible step."""
        raise NotImplementedError

    def _drop(self) -> None:
        """Forget the parts stored so far, if any (called once, after every upload ended)."""

    # the ObjectWriter interface ----------------------------------------------------------
    def write(self, data: bytes | memoryview) -> None:
        if self._state != "open":
            raise ValueError(f"write to an object writer already {self._state}")
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[:self._part_size])
            del self._buffer[:self._part_size]
            self._submit(part)

    def tell(self) -> int:
        return self._size

    def commit(self) -> None:
        if self._state != "open":
            raise ValueError(f"commit of an object writer already {self._state}")
        if not self._futures:
            self._put_whole(bytes(self._buffer))
        else:
            if self._buffer:
                self._submit(bytes(self._buffer))
            parts = [future.result() for future in self._futures]
            self._complete(parts)
        self._buffer = bytearray()
        self._state = "committed"

    def abort(self) -> None:
        """Drop the object: safe after a failed write or commit, a no-op after success."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._buffer = bytearray()
        for future in self._futures:
            future.cancel()
        wait(self._futures)
        self._futures = []
        self._drop()

    # ------------------------------------------------------------------------------------
    def _submit(self, part: bytes) -> None:
        for future in self._futures:  # fail early: a part that failed fails the object
            error = future.exception() if future.done() else None
            if error is not None:
                raise error
        if not self._futures:
            self._start_parts()
        self._slots.acquire()
        try:
            future = self._pool.submit(self._upload_part, len(self._futures) + 1, part)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _f: self._slots.release())
        self._futures.append(future)
