"""One contract suite for every storage backend: local folder, S3 (moto_server) and Azure Blob
(Azurite), each a real server on loopback. Every test runs once per backend through the
``storage_location`` fixture; what one backend must do, all must."""

from __future__ import annotations

import os
import random
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from dbsafe.core.errors import DbsafeError
from dbsafe.storage import open_storage

PART = 5 * 1024 * 1024  # S3's smallest part: the most parts for the bytes sent


@pytest.fixture
def store(storage_location):
    storage = open_storage(storage_location.location, create=True, env=storage_location.env,
                           part_size=PART)
    yield storage
    storage.close()


def _stream(storage, name: str, data: bytes, piece: int = 777_777):
    writer = storage.writer(name)
    for start in range(0, len(data), piece):
        writer.write(memoryview(data)[start:start + piece])
    assert writer.tell() == len(data)
    return writer


def test_put_get_size_and_ranges(store):
    data = bytes(range(256)) * 40
    store.put("manifests/p1", data)
    assert store.exists("manifests/p1")
    assert store.get("manifests/p1") == data
    assert store.size("manifests/p1") == len(data)
    assert store.get_range("manifests/p1", 100, 50) == data[100:150]
    assert store.get_range("manifests/p1", len(data) - 10, 50) == data[-10:]  # runs past end
    assert store.get_range("manifests/p1", len(data), 10) == b""
    assert store.get_range("manifests/p1", len(data) + 1000, 10) == b""
    store.put("manifests/empty", b"")
    assert store.get("manifests/empty") == b"" and store.size("manifests/empty") == 0


def test_missing_object(store):
    assert not store.exists("manifests/nope")
    for read in (lambda: store.get("manifests/nope"), lambda: store.size("manifests/nope"),
                 lambda: store.get_range("manifests/nope", 0, 10)):
        with pytest.raises(FileNotFoundError):
            read()


def test_names_are_one_folder_list_is_recursive(store):
    for name in ["index/a", "index/b", "index/sub/c", "indexes/x", "manifests/m"]:
        store.put(name, name.encode())
    names = store.names("index")
    assert {"a", "b"} <= set(names)
    assert "x" not in names and "sub/c" not in names and "m" not in names
    assert sorted(store.list("index")) == ["index/a", "index/b", "index/sub/c"]
    assert sorted(store.list("")) == ["index/a", "index/b", "index/sub/c", "indexes/x",
                                      "manifests/m"]
    assert store.names("nothing") == [] and list(store.list("nothing")) == []


def test_delete_is_idempotent(store):
    store.put("gc/1.tomb", b"t")
    store.delete("gc/1.tomb")
    assert not store.exists("gc/1.tomb")
    store.delete("gc/1.tomb")
    store.delete("gc/never-there")


def test_config_is_replaced_by_put(store):
    store.put("config", b"first version")
    store.put("config", b"second")
    assert store.get("config") == b"second"


def test_streaming_writer_many_parts(store):
    data = os.urandom(3 * PART + 12_345)
    writer = _stream(store, "data/ab/pack1", data)
    assert not store.exists("data/ab/pack1")  # nothing visible before commit
    writer.commit()
    assert store.size("data/ab/pack1") == len(data)
    assert store.get("data/ab/pack1") == data
    assert store.get_range("data/ab/pack1", PART - 100, 300) == data[PART - 100:PART + 200]
    writer.abort()  # after a commit: a no-op
    assert store.exists("data/ab/pack1")


def test_small_streaming_write(store):
    writer = _stream(store, "index/p", b"x" * 1000, piece=100)
    writer.commit()
    assert store.get("index/p") == b"x" * 1000


@pytest.mark.parametrize("size", [1000, 2 * PART + 5])
def test_uncommitted_or_aborted_writer_leaves_nothing(store, size):
    data = os.urandom(size)
    writer = _stream(store, "data/cd/pack2", data)
    assert not store.exists("data/cd/pack2")
    assert list(store.list("data")) == [] and store.names("data/cd") == []
    with pytest.raises(FileNotFoundError):
        store.get("data/cd/pack2")
    writer.abort()
    writer.abort()
    assert not store.exists("data/cd/pack2")
    assert list(store.list("")) == []  # no temporary file or pending upload either
    if hasattr(store, "client"):
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket)
        assert uploads.get("Uploads", []) == []


def test_parallel_range_reads(store):
    """Many threads read one pack at once, as a restore does."""
    data = os.urandom(3 * 1024 * 1024)
    store.put("data/ef/pack3", data)
    rng = random.Random(7)
    ranges = [(rng.randrange(len(data)), rng.randrange(1, 200_000)) for _ in range(200)]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda r: store.get_range("data/ef/pack3", *r), ranges))
    assert got == [data[o:o + n] for o, n in ranges]


def test_listing_more_than_one_page(store):
    names = [f"data/aa/{i:05d}" for i in range(1100)]  # S3 pages at 1000 keys
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.put(n, b"."), names))
    assert sorted(store.list("data")) == names
    assert sorted(store.names("data/aa")) == [n.rsplit("/", 1)[1] for n in names]


def test_describe_and_cleanup(store, storage_location):
    described = store.describe()
    assert described["backend"] == storage_location.kind
    text = str(described)
    assert all(secret not in text for secret in storage_location.env.values())
    assert store.cleanup() == 0  # nothing dead here


def test_cleanup_leaves_a_writer_in_flight(store, storage_location):
    """Another agent's cleanup runs while this writer's parts are uploading: the writer is
    alive and must be able to commit (moto dates every upload 2010, which once made an S3
    cleanup abort a live upload: a backup beside another failed with 500s)."""
    other = open_storage(storage_location.location, env=storage_location.env, part_size=PART)
    try:
        data = os.urandom(2 * PART + 12345)
        writer = _stream(store, "data/cd/in-flight", data[:2 * PART + 1])
        for part in getattr(writer, "_futures", []):  # parts 1 and 2 stored (object stores)
            part.result()
        assert other.cleanup() == 0
        writer.write(data[2 * PART + 1:])
        writer.commit()
        assert store.get("data/cd/in-flight") == data
    finally:
        other.close()


# ------------------------------------------------------------------------------------------
# throttling and 5xx, through the fault proxy in front of the real server

def test_throttling_is_ridden_out(faulty_location):
    location, proxy = faulty_location
    store = open_storage(location.location, create=True, env=location.env, part_size=PART)
    try:
        data = os.urandom(3 * PART + 999)
        proxy.fail_for(3)  # every request answered 503 SlowDown / ServerBusy for 3 s
        _stream(store, "data/ab/throttled", data).commit()
        assert proxy.faults_served > 0
        served = proxy.faults_served
        proxy.fail_for(3)
        ranges = [(i * 1_000_003 % len(data), 100_000) for i in range(48)]
        with ThreadPoolExecutor(16) as pool:  # as many readers as a restore
            got = list(pool.map(lambda r: store.get_range("data/ab/throttled", *r), ranges))
        assert got == [data[o:o + n] for o, n in ranges]
        assert proxy.faults_served > served
        assert store.get("data/ab/throttled") == data
    finally:
        store.close()


def test_server_errors_are_retried(faulty_location):
    location, proxy = faulty_location
    store = open_storage(location.location, create=True, env=location.env, part_size=PART)
    try:
        proxy.fail_next(2, status=500)
        store.put("manifests/p", b"manifest")
        proxy.fail_next(2, status=502)
        assert store.get("manifests/p") == b"manifest"
        assert proxy.faults_served == 4
    finally:
        store.close()


def test_a_full_local_folder_is_vault_full(small_fs):
    """ENOSPC while writing: ``vault.full`` naming the folder, the refused write's bytes
    and what is free; nothing is left once the write is dropped."""
    folder = small_fs("full", "1m") / "vault"
    store = open_storage(str(folder), create=True)

    def said(error: DbsafeError) -> None:
        assert error.code == "vault.full", error
        assert error.details["path"] == folder and error.details["need"] > 0
        assert int(error.details["free"]) < 1 << 20

    try:
        with pytest.raises(DbsafeError) as full:
            store.put("data/ab/big", os.urandom(2 << 20))
        said(full.value)
        assert list((folder / "tmp").iterdir()) == [] and not store.exists("data/ab/big")
        writer = store.writer("data/ab/streamed")
        with pytest.raises(DbsafeError) as full:
            for _ in range(4):
                writer.write(os.urandom(1 << 20))
        said(full.value)
        writer.abort()
        assert list((folder / "tmp").iterdir()) == []
    finally:
        store.close()


@pytest.mark.parametrize("faulty_location", ["s3"], indirect=True)
@pytest.mark.parametrize("status, code", [(507, "XMinioStorageFull"), (403, "QuotaExceeded")])
def test_a_full_object_store_is_vault_full(faulty_location, status, code):
    """An S3-compatible store out of room (MinIO's full drives, Ceph RGW's quota) is
    ``vault.full`` at once, not retried and not an access or request failure. (Azure Blob
    has no such answer to map: a storage account's capacity is not a quota a write meets.)"""
    location, proxy = faulty_location
    store = open_storage(location.location, create=True, env=location.env, part_size=PART)
    try:
        proxy.fail_next(1, status=status, code=code)
        with pytest.raises(DbsafeError) as full:
            store.put("manifests/p", b"manifest")
        assert full.value.code == "vault.full" and code in full.value.message
        assert full.value.details["need"] == len(b"manifest")
        assert proxy.faults_served == 1  # refused once, not retried
    finally:
        store.close()


# ------------------------------------------------------------------------------------------
# opening: missing container, unreachable endpoint, bad credentials — clear errors

@pytest.fixture(params=["s3", "azure"])
def object_location(request, tmp_path):
    from servers.fixtures import make_location

    return make_location(request.param, request, tmp_path)


def test_missing_container_is_created_only_at_init(object_location):
    with pytest.raises(DbsafeError) as refused:
        open_storage(object_location.location, env=object_location.env)
    assert refused.value.code == "storage.container_missing"
    open_storage(object_location.location, create=True, env=object_location.env).close()
    open_storage(object_location.location, env=object_location.env).close()


def test_unreachable_endpoint(object_location):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    location = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", object_location.location)
    with pytest.raises(DbsafeError) as refused:
        open_storage(location, env=object_location.env)
    assert refused.value.code == "storage.unreachable"
    assert f"127.0.0.1:{port}" in refused.value.message


def test_azure_wrong_key_is_access_denied(azurite_server, tmp_path):
    location = azurite_server.location("dbsafe-wrong-key")
    wrong = "QUJD" * 22
    with pytest.raises(DbsafeError) as refused:
        open_storage(location, create=True, env={"AZURE_STORAGE_KEY": wrong})
    assert refused.value.code == "storage.access_denied"
    assert wrong not in refused.value.message


def test_azure_endpoint_and_account_from_the_connection_string(azurite_server):
    """A user with only AZURE_STORAGE_CONNECTION_STRING gives just the container."""
    storage = open_storage("azure://dbsafe-from-env/vault", create=True,
                           env=azurite_server.env())
    try:
        storage.put("config", b"c")
        assert storage.get("config") == b"c"
    finally:
        storage.close()
