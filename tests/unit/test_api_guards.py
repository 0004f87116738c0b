"""The API's guards on their own, with a fake clock where time matters: the login throttle
and hash pool (portal/login_guard.py), the host names served (api/hosts.py), the cap on job
event streams (api/streams.py) and how long the gate remembers a caller (api/gate.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dbsafe.api.gate import CallerCache
from dbsafe.api.hosts import AllowedHosts, host_name
from dbsafe.api.streams import StreamSlots
from dbsafe.core.errors import DbsafeError
from dbsafe.portal.login_guard import HashPool, Throttle, attempt_keys, source_key
from dbsafe.services.operations.access import Principal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(throttle: Throttle, keys) -> None:
    throttle.admit(keys).failed()


def test_failures_from_one_address_hold_it_and_no_other():
    clock = Clock()
    throttle = Throttle(limit=3, window=60, clock=clock)
    attacker = attempt_keys("203.0.113.9", "ana", None)
    for _ in range(2):
        _fail(throttle, attacker)
    clock.now += 10
    _fail(throttle, attempt_keys("203.0.113.9", "bob", None))
    with pytest.raises(DbsafeError) as exc:
        throttle.admit(attempt_keys("203.0.113.9", "carl", None))
    assert exc.value.code == "auth.throttled" and exc.value.spec.http_status == 429
    assert exc.value.details["retry_after"] == 50  # the oldest failure leaves in 50 s
    throttle.admit(attempt_keys("198.51.100.7", "bob", None)).end()  # another address
    clock.now += 50
    throttle.admit(attempt_keys("203.0.113.9", "carl", None)).end()  # the window moved on


def test_an_account_is_held_for_unknown_browsers_but_not_for_its_own():
    throttle = Throttle(limit=3, window=60, clock=Clock())
    for n in range(3):  # from three addresses: the account's count reaches the limit
        _fail(throttle, attempt_keys(f"203.0.113.{n}", "ana", None))
    with pytest.raises(DbsafeError, match="auth.throttled") as exc:
        throttle.admit(attempt_keys("198.51.100.7", "ana", None))
    assert "for this user" in exc.value.message
    # the browser ana logged in from before: only its own failures count
    throttle.admit(attempt_keys("198.51.100.7", "ana", "device-of-ana")).end()
    for _ in range(3):
        _fail(throttle, attempt_keys("198.51.100.7", "ana", "stolen-device"))
    with pytest.raises(DbsafeError, match="auth.throttled"):
        throttle.admit(attempt_keys("198.51.100.7", "ana", "stolen-device"))
    throttle.admit(attempt_keys("198.51.100.7", "ana", "device-of-ana")).end()


def test_attempts_in_flight_count_until_they_end():
    throttle = Throttle(limit=2, window=60, clock=Clock())
    keys = attempt_keys("203.0.113.9", None, None)
    first, second = throttle.admit(keys), throttle.admit(keys)
    with pytest.raises(DbsafeError, match="auth.throttled") as exc:
        throttle.admit(keys)
    assert exc.value.details["retry_after"] == 1
    first.end()
    second.failed()
    second.end()  # a second ending counts nothing more
    throttle.admit(keys).end()


def test_ipv6_addresses_share_their_64_and_keys_are_capped():
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:ffff::9")
    assert source_key("2001:db8:1:2::1") != source_key("2001:db8:1:3::1")
    assert source_key("::ffff:192.0.2.1") == source_key("192.0.2.1") == ("source", "192.0.2.1")
    throttle = Throttle(limit=1, window=60, clock=Clock(), max_keys=100)
    for n in range(1000):
        _fail(throttle, attempt_keys(f"10.0.{n // 256}.{n % 256}", None, None))
    assert len(throttle._counts) == 100


def test_the_hash_pool_refuses_beyond_its_queue():
    release = threading.Event()

    async def main() -> list:
        pool = HashPool(workers=1, queue=1)
        running = [asyncio.ensure_future(pool.run(release.wait, 30)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(DbsafeError) as exc:
            await pool.run(release.wait, 30)
        release.set()
        done = await asyncio.gather(*running)
        after = await pool.run(lambda: "again")
        pool.shutdown()
        return [exc.value.code, exc.value.spec.http_status, done, after]

    assert asyncio.run(main()) == ["auth.busy", 503, [True, True], "again"]


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1:8270", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:8270", "::1"),
    ("backup.example.com.", "backup.example.com"), ("[::1", None), ("a b", None),
    ("evil.example:x", None), ("", None), ("[not-an-address]", None)])
def test_host_names_are_read_strictly(header, name):
    assert host_name(header) == name


def test_only_the_names_served_are_answered():
    loopback = AllowedHosts.for_serving("127.0.0.1", ["backup.example.com"])
    for ok in ("127.0.0.1:8270", "localhost:8270", "[::1]:8270", "backup.example.com"):
        assert loopback.allows(ok), ok
    for refused in ("rebind.attacker.example", "127.0.0.1.nip.io", "10.0.0.5", None,
                    "backup.example.com.evil.example"):
        assert not loopback.allows(refused), refused
    everywhere = AllowedHosts.for_serving("0.0.0.0")
    assert everywhere.allows("10.0.0.5:8270") and everywhere.allows("[2001:db8::5]")
    assert not everywhere.allows("rebind.attacker.example")


def test_job_event_streams_are_capped_per_caller_and_in_all():
    slots = StreamSlots(per_caller=2, total=3)
    a1, _a2 = slots.take("token:a"), slots.take("token:a")
    with pytest.raises(DbsafeError) as exc:
        slots.take("token:a")
    assert exc.value.code == "request.too_many_streams" and exc.value.spec.http_status == 429
    slots.take("token:b")
    with pytest.raises(DbsafeError, match="3 in all"):
        slots.take("token:c")
    a1.release()
    a1.release()  # twice: freed once
    slots.take("token:c")
    assert sum(slots.open.values()) == 3


def test_the_gate_remembers_a_caller_for_its_ttl_only():
    clock = Clock()
    cache = CallerCache(clock=clock)
    cache.put("Bearer x", Principal("token:x", "reader"))
    clock.now += CallerCache.TTL - 0.01
    assert cache.get("Bearer x") is not None
    clock.now += 0.02
    assert cache.get("Bearer x") is None  # asked of the catalog again: revocations apply
