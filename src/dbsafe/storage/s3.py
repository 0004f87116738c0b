"""A vault in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, moto ...), with boto3.

Names map to keys under an optional prefix. An S3 object is visible only once PutObject or
CompleteMultipartUpload returns, whole, and is durable then: exactly the guarantees the
``Storage`` interface asks for. Packs stream through a multipart upload whose parts upload
in parallel (``PartedWriter``); an object that fits in one part is a single PutObject.

Retries are botocore's "adaptive" mode with ``MAX_ATTEMPTS`` attempts: the "standard"
mode's exponential backoff with full jitter (capped at 20 s a wait; 1 s base for throttling,
503 SlowDown and 429, and 50 ms for other 5xx and connection errors) plus a client-wide rate
limiter that slows every thread down while the store throttles. The limiter is what lets a
restore with 16 reader threads ride out 20 s of SlowDown: without it each thread retries on
its own and the client-wide retry budget (about 100 throttled or 35 other retries, refilled
by successes) runs out. That budget still ends a sustained outage of plain 5xx errors early,
so a store that is down fails the job fast instead of stalling every thread for minutes.
Opening checks the bucket with a separate client that retries little, so a wrong endpoint
is reported in seconds, not after a minute of backoff.

One client is shared by all threads (boto3 clients are thread-safe; sessions are not, so
the session is used only here, at open). Credentials come from boto3's standard chain
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles), never the location.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import email.utils
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from dbsafe.core.errors import DbsafeError
from dbsafe.storage.location import Location
from dbsafe.storage.objectstore import ObjectStore, PastEnd
from dbsafe.storage.parts import PartedWriter

if TYPE_CHECKING:  # boto3-stubs[s3], installed with the test tools
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ListObjectsV2OutputTypeDef

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB          # S3's minimum for every part but the last
MAX_ATTEMPTS = 15
STALE_UPLOAD_AGE = dt.timedelta(hours=24)
CREDENTIAL_VARIABLES = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
           "InvalidToken", "403", "Forbidden"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
# A store out of room: Ceph RGW's bucket or user quota, MinIO's full drives, a 507 from any
# S3-compatible server (AWS S3 itself has no quota to meet).
_FULL = {"QuotaExceeded", "XMinioStorageFull", "InsufficientStorage", "507"}
_OBJECT_READS = {"get", "size"}


class _S3Writer(PartedWriter):
    def __init__(self, storage: S3Storage, name: str) -> None:
        super().__init__(storage.pool, storage.part_size, storage.parts_in_flight)
        self._s3 = storage
        self._name = name
        self._key = storage.key(name)
        self._upload_id: str | None = None

    def _put_whole(self, data: bytes) -> None:
        self._s3.put(self._name, data)

    def _start_parts(self) -> None:
        with self._s3.errors("start upload", self._name):
            self._upload_id = self._s3.client.create_multipart_upload(
                Bucket=self._s3.bucket, Key=self._key)["UploadId"]

    @property
    def _started(self) -> str:
        """The multipart upload's id (``_start_parts`` runs before any part)."""
        if self._upload_id is None:
            raise RuntimeError("no multipart upload started")
        return self._upload_id

    def _upload_part(self, number: int, data: bytes) -> object:
        with self._s3.errors("upload part", self._name, len(data)):
            reply = self._s3.client.upload_part(
                Bucket=self._s3.bucket, Key=self._key, UploadId=self._started,
                PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": reply["ETag"]}

    def _complete(self, parts: list[object]) -> None:
        with self._s3.errors("complete upload", self._name):
            self._s3.client.complete_multipart_upload(
                Bucket=self._s3.bucket, Key=self._key, UploadId=self._started,
                MultipartUpload={"Parts": cast("list[CompletedPartTypeDef]", parts)})

    def _drop(self) -> None:
        if self._upload_id is None:
            return
        with contextlib.suppress(ClientError, BotoCoreError):
            self._s3.client.abort_multipart_upload(
                Bucket=self._s3.bucket, Key=self._key, UploadId=self._upload_id)


class S3Storage(ObjectStore):
    """Named bytes in ``bucket`` under ``prefix``. ``create`` makes a missing bucket."""

    def __init__(self, location: Location, *, create: bool = False,
                 env: Mapping[str, str] | None = None, part_size: int = 8 * MiB,
                 parts_in_flight: int = 4, upload_threads: int = 8,
                 max_connections: int = 32) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts are at least {MIN_PART_SIZE} bytes")
        self.location = location
        self.bucket = location.container
        self.prefix = location.prefix
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        endpoint = location.options.get("endpoint")
        region = location.options.get("region")
        session = boto3.session.Session(**_credentials(env), region_name=region)
        # an explicit endpoint is an S3-compatible server: path-style addressing works with
        # every one of them (virtual hosts need DNS names per bucket), and many reject the
        # CRC checksums botocore now adds by default (the vault hashes every object itself)
        common: dict[str, Any] = {"s3": {"addressing_style": "path"},
                  "request_checksum_calculation": "when_required",
                  "response_checksum_validation": "when_required"} if endpoint else {}
        self.client = session.client("s3", endpoint_url=endpoint, config=Config(
            retries={"mode": "adaptive", "max_attempts": MAX_ATTEMPTS},
            max_pool_connections=max_connections, **common))
        probe = session.client("s3", endpoint_url=endpoint, config=Config(
            retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5,
            read_timeout=20, **common))
        try:
            self._check_bucket(probe, create, region)
        except BaseException:
            self.client.close()
            raise
        finally:
            probe.close()
        self.pool = ThreadPoolExecutor(max_workers=upload_threads, thread_name_prefix="s3-put")

    def _check_bucket(self, probe: S3Client, create: bool, region: str | None) -> None:
        with self.errors("open", ""):
            try:
                try:
                    probe.head_bucket(Bucket=self.bucket)
                except ClientError as exc:
                    if not _busy(exc):
                        raise
                    # the store answers but is throttling or failing for now: it gets the
                    # patience of every other request (the probe's few quick retries are
                    # for endpoints that do not answer at all)
                    self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchBucket", "NotFound") or not create:
                    raise
            args: dict[str, Any] = {}
            if region and region != "us-east-1":
                args["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                probe.create_bucket(Bucket=self.bucket, **args)
            except ClientError as exc:  # made by another agent meanwhile: fine
                if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    @contextlib.contextmanager
    def errors(self, operation: str, name: str, size: int = 0) -> Iterator[None]:
        """Turn botocore failures into DbsafeErrors that name the location (no secret); a
        missing object is FileNotFoundError, a range past its end ``PastEnd``, a store out
        of room ``vault.full`` (``size``: the bytes of the refused write)."""
        where = self.location.display()
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING_KEY and name and operation in _OBJECT_READS:
                raise FileNotFoundError(name) from None
            if code in ("InvalidRange", "416"):
                raise PastEnd from None
            reason = f"{code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
            if code in _FULL or _status(exc) == 507:
                raise DbsafeError("vault.full", path=where, free=0, need=size,
                                  what=f"writing {name} (the store answered {reason})") \
                    from None
            if code in _DENIED:
                raise DbsafeError("storage.access_denied", location=where, reason=reason,
                                  variables=CREDENTIAL_VARIABLES) from None
            if code == "NoSuchBucket" or (code in _MISSING_KEY and operation == "open"):
                raise DbsafeError("storage.container_missing", location=where, what="bucket",
                                  container=self.bucket) from None
            raise DbsafeError("storage.request_failed", operation=operation, name=name,
                              location=where, reason=reason) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise DbsafeError("storage.credentials_missing", location=where,
                              variables=CREDENTIAL_VARIABLES) from None
        except BotoConnectionError as exc:
            raise DbsafeError("storage.unreachable", location=where,
                              reason=type(exc).__name__) from None
        except BotoCoreError as exc:
            raise DbsafeError("storage.request_failed", operation=operation, name=name,
                              location=where, reason=type(exc).__name__) from None

    # writing ---------------------------------------------------------------------------
    def put(self, name: str, data: bytes, durable: bool = True) -> None:  # always durable
        with self.errors("put", name, len(data)):
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=bytes(data))

    def writer(self, name: str) -> _S3Writer:
        return _S3Writer(self, name)

    # reading ---------------------------------------------------------------------------
    def get(self, name: str) -> bytes:
        with self.errors("get", name):
            return self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()

    def _read_range(self, name: str, offset: int, length: int) -> bytes:
        with self.errors("get", name):
            return self.client.get_object(Bucket=self.bucket, Key=self.key(name),
                                          Range=f"bytes={offset}-{offset + length - 1}")[
                "Body"].read()

    def size(self, name: str) -> int:
        with self.errors("size", name):
            return self.client.head_object(Bucket=self.bucket, Key=self.key(name))[
                "ContentLength"]

    def list(self, prefix: str) -> Iterator[str]:
        for page in self._pages(Prefix=self.folder_key(prefix)):
            for item in page.get("Contents", []):
                yield self.name_of(item["Key"])

    def names(self, folder: str) -> builtins.list[str]:
        start = self.folder_key(folder)
        return [item["Key"][len(start):]
                for page in self._pages(Prefix=start, Delimiter="/")
                for item in page.get("Contents", [])]

    def _pages(self, **args: Any) -> Iterator[ListObjectsV2OutputTypeDef]:
        with self.errors("list", args["Prefix"]):
            yield from self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, **args)

    # removing --------------------------------------------------------------------------
    def delete(self, name: str) -> None:
        with self.errors("delete", name):  # S3 deletes are idempotent: 204 when missing too
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))

    def cleanup(self) -> int:
        """Abort the multipart uploads under the prefix whose writers died more than 24 h
        ago (their parts cost storage until aborted); returns how many.

        An upload is judged by its parts, not by its "Initiated" time: a slow writer may
        have started long ago, and some S3-compatible servers report a made-up one (moto
        answers 2010 for every upload, so judging by it aborted another agent's pack in
        flight). Times are the store's own (its ``Date`` header), so a client whose clock
        is a day off aborts nothing alive. An upload without parts costs nothing and is
        left: its writer may be about to send part 1 (a bucket lifecycle rule
        AbortIncompleteMultipartUpload sweeps those, docs/storage.md)."""
        aborted = 0
        with self.errors("cleanup", ""):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.folder_key(""))
            for page in pages:
                for upload in page.get("Uploads", []):
                    now, parts = self._part_times(upload["Key"], upload["UploadId"])
                    if upload_is_stale(upload["Initiated"], parts, now):
                        with contextlib.suppress(ClientError):
                            self.client.abort_multipart_upload(
                                Bucket=self.bucket, Key=upload["Key"],
                                UploadId=upload["UploadId"])
                            aborted += 1
        return aborted

    def _part_times(self, key: str, upload_id: str) -> tuple[dt.datetime,
                                                            builtins.list[dt.datetime]]:
        """The store's time now and when each part of one upload was stored (none when the
        upload is gone meanwhile: completed or aborted by its writer)."""
        now = dt.datetime.now(dt.UTC)
        times: builtins.list[dt.datetime] = []
        try:
            for page in self.client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=key, UploadId=upload_id):
                now = _store_time(page) or now
                times.extend(part["LastModified"] for part in page.get("Parts", []))
        except ClientError as exc:
            if _code(exc) not in ("NoSuchUpload", "404"):
                raise
        return now, times

    def describe(self) -> dict[str, str]:
        return {"backend": "s3", "location": self.location.display()}

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()


def _busy(exc: ClientError) -> bool:
    """Throttling or a server error: worth waiting for (not a full store: waiting does not
    make room)."""
    status = _status(exc)
    return (status >= 500 and status != 507) or status == 429 or \
        _code(exc) in ("SlowDown", "Throttling", "ThrottlingException")


def _status(exc: ClientError) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0


def upload_is_stale(initiated: dt.datetime, parts: list[dt.datetime],
                    now: dt.datetime) -> bool:
    """Whether a multipart upload's writer is gone: it has parts, and neither they nor
    its start are younger than ``STALE_UPLOAD_AGE`` at the store's ``now``."""
    cutoff = now - STALE_UPLOAD_AGE
    return bool(parts) and initiated < cutoff and max(parts) < cutoff


def _store_time(reply: Any) -> dt.datetime | None:
    """The store's clock: the ``Date`` header of one of its replies."""
    header = reply.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not header:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return email.utils.parsedate_to_datetime(header).astimezone(dt.UTC)
    return None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _credentials(env: Mapping[str, str] | None) -> dict[str, Any]:
    """Keys for the boto3 session from ``env`` when given; else boto3's own chain."""
    if env is None:
        return {}
    names = {"aws_access_key_id": "AWS_ACCESS_KEY_ID",
             "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
             "aws_session_token": "AWS_SESSION_TOKEN"}
    return {arg: env[var] for arg, var in names.items() if env.get(var)}
