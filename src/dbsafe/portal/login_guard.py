"""What stands between the login form and someone guessing passwords (docs/access.md,
*Logging in*).

**Throttle.** Failed logins are counted per key over a sliding ``WINDOW``; a key with
``LIMIT`` of them is held (429 ``auth.throttled``, ``Retry-After``) until its oldest failure
leaves the window. An attempt still being checked counts as a failure until it ends, so a
burst sent at once cannot overtake the count. The keys of an attempt:

- from a browser holding a device cookie given at an earlier login as the user it names:
  that device only. Failures sent from elsewhere never hold back a user at the browser they
  use, so the per-account limit cannot be turned into a lockout of the real user;
- otherwise its source address (an IPv6 address by its /64, which one attacker usually
  holds whole) and, when it names a user, that account (a guesser with many addresses
  still gets ``LIMIT`` guesses per account per window).

Counts live in this process (each ``dbsafe serve`` counts its own) and are lost at a
restart; the keys kept are capped (the least recently used go first).

**Hashing.** A password check is an argon2id hash of 64 MiB: checks run on a pool of their
own, ``HASH_WORKERS`` at a time with at most ``HASH_QUEUE`` waiting; beyond, 503
``auth.busy`` at once. The shared thread pool, which every other endpoint uses, never
hashes, so a burst of logins cannot starve them nor take more than
``HASH_WORKERS`` × 64 MiB.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from dbsafe.core.errors import DbsafeError

T = TypeVar("T")

LIMIT = 10                 # failures per key in a window
WINDOW = 300.0             # seconds
MAX_KEYS = 50_000
HASH_WORKERS = 2
HASH_QUEUE = 6
BUSY_RETRY = 2             # seconds a login refused as busy is told to wait
Key = tuple[str, str]
SCOPES = {"source": "from this address", "account": "for this user from a browser that "
          "has not logged in as it before", "device": "from this browser"}


def source_key(address: str) -> Key:
    """The throttle's key of a client address: an IPv6 address by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ("source", address[:64])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return ("source", str(ipaddress.ip_network(f"{ip}/64", strict=False)))
    return ("source", str(getattr(ip, "ipv4_mapped", None) or ip))


def held_text(key: Key) -> str:
    kind, value = key
    return {"source": f"from {value}", "account": f"as user {value} from browsers that have "
            "not logged in as it before", "device": "from one browser"}[kind]


def attempt_keys(source: str, account: str | None, device: str | None) -> list[Key]:
    """What an attempt is counted against (the module's docstring says why)."""
    if device is not None:
        return [("device", device)]
    keys = [source_key(source)]
    if account:
        keys.append(("account", account))
    return keys


class _Count:
    __slots__ = ("failures", "in_flight")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.in_flight = 0


class Throttle:
    def __init__(self, limit: int = LIMIT, window: float = WINDOW, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_keys, self.clock = limit, window, max_keys, clock
        self._counts: OrderedDict[Key, _Count] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, keys: Iterable[Key]) -> Attempt:
        """An attempt counted against ``keys``; ``auth.throttled`` when one is held."""
        keys = list(keys)
        with self._lock:
            now = self.clock()
            counts = [self._count(k, now) for k in keys]
            for key, count in zip(keys, counts, strict=True):
                if len(count.failures) + count.in_flight >= self.limit:
                    wait = (count.failures[0] + self.window - now
                            if len(count.failures) >= self.limit else 1)
                    raise DbsafeError("auth.throttled", scope=SCOPES[key[0]],
                                      retry_after=max(1, math.ceil(wait)))
            for count in counts:
                count.in_flight += 1
            self._evict()
        return Attempt(self, keys)

    def _count(self, key: Key, now: float) -> _Count:
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count()
        self._counts.move_to_end(key)
        while count.failures and count.failures[0] <= now - self.window:
            count.failures.popleft()
        return count

    def _evict(self) -> None:
        while len(self._counts) > self.max_keys:
            key, count = next(iter(self._counts.items()))
            if count.in_flight:
                break
            del self._counts[key]

    def _end(self, keys: list[Key], failed: bool) -> list[Key]:
        """The attempt is over; the keys its failure made held."""
        held = []
        with self._lock:
            now = self.clock()
            for key in keys:
                count = self._counts.get(key)
                if count is None:
                    continue
                count.in_flight -= 1
                if failed:
                    count.failures.append(now)
                    if len(count.failures) == self.limit:
                        held.append(key)
        return held


class Attempt:
    """One login attempt being checked: ``failed()`` counts it, ``end()`` ends it without
    counting (it succeeded, or the check never ran); only the first call counts."""

    def __init__(self, throttle: Throttle, keys: list[Key]) -> None:
        self._throttle = throttle
        self._keys: list[Key] | None = keys

    def _end(self, failed: bool) -> list[Key]:
        keys, self._keys = self._keys, None
        return self._throttle._end(keys, failed) if keys is not None else []

    def failed(self) -> list[str]:
        """Count the failure; what it made held, in words (for the log)."""
        return [held_text(key) for key in self._end(True)]

    def end(self) -> None:
        self._end(False)


class HashPool:
    """Password checks on their own threads, with a bounded queue."""

    def __init__(self, workers: int = HASH_WORKERS, queue: int = HASH_QUEUE) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="login-hash")
        self._limit = workers + queue
        self._pending = 0
        self._lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the pool; ``auth.busy`` when the pool's queue is full. A check
        stays counted until its thread is done with it, even if its caller went away."""
        with self._lock:
            if self._pending >= self._limit:
                raise DbsafeError("auth.busy", retry_after=BUSY_RETRY)
            self._pending += 1
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _future: Future | None) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class LoginGuard:
    """The throttle and the hash pool of one app."""

    def __init__(self, throttle: Throttle | None = None, hashes: HashPool | None = None
                 ) -> None:
        self.throttle = throttle or Throttle()
        self.hashes = hashes or HashPool()

    def shutdown(self) -> None:
        self.hashes.shutdown()
