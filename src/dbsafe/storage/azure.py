"""A vault in Azure Blob Storage (or Azurite), with azure-storage-blob's sync API.

Names map to block blobs under an optional prefix in one container. A streaming write
stages blocks in parallel (``PartedWriter``) and ``commit_block_list`` makes the blob
visible whole, in one call; staged blocks nobody commits are never visible and the service
drops them after a week, so an aborted or dead writer leaves nothing to clean. An object
that fits in one block is a single Put Blob.

Retries: the SDK's ExponentialRetry with ``RETRY_TOTAL`` retries, waiting 1 + 1.5**n s
(+-1 s of jitter): about 2.5, 3.3, 4.4, 6, 9, 12, 18, 27, 39, 59 s. 20 s of 503 ServerBusy
or 500/502/504 is ridden out by the fifth retry, a minute by the eighth, and a short burst
costs a few seconds; only after about 3 minutes does a request fail. (Azure throttles with
503, so 429 is not retried.)
Opening checks the container with few retries, so a wrong endpoint is reported fast.

Credentials come from the environment, never the location: AZURE_STORAGE_CONNECTION_STRING
(its account key or SAS), or AZURE_STORAGE_KEY with the location's ``account``.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobBlock, BlobServiceClient, ExponentialRetry

from dbsafe.core.errors import DbsafeError
from dbsafe.storage.location import Location
from dbsafe.storage.objectstore import ObjectStore, PastEnd
from dbsafe.storage.parts import PartedWriter

MiB = 1024 * 1024
RETRY_TOTAL = 10
CREDENTIAL_VARIABLES = "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_KEY"
_DENIED = {"AuthenticationFailed", "AuthorizationFailure", "AuthorizationPermissionMismatch",
           "InsufficientAccountPermissions"}


class _AzureWriter(PartedWriter):
    def __init__(self, storage: AzureStorage, name: str) -> None:
        super().__init__(storage.pool, storage.part_size, storage.parts_in_flight)
        self._azure = storage
        self._name = name
        self._blob = storage.container.get_blob_client(storage.key(name))

    def _put_whole(self, data: bytes) -> None:
        self._azure.put(self._name, data)

    def _upload_part(self, number: int, data: bytes) -> object:
        # block ids of one blob must all have the same length: a fixed-width counter
        block_id = base64.b64encode(f"{number:08d}".encode()).decode()
        with self._azure.errors("stage block", self._name):
            self._blob.stage_block(block_id, data, length=len(data))
        return BlobBlock(block_id=block_id)

    def _complete(self, parts: list[object]) -> None:
        with self._azure.errors("commit blocks", self._name):
            self._blob.commit_block_list(cast("list[BlobBlock]", parts))


class AzureStorage(ObjectStore):
    """Named bytes in ``container`` under ``prefix``. ``create`` makes a missing container."""

    def __init__(self, location: Location, *, create: bool = False,
                 env: Mapping[str, str] | None = None, part_size: int = 8 * MiB,
                 parts_in_flight: int = 4, upload_threads: int = 8,
                 max_connections: int = 32) -> None:
        self.location = location
        self.prefix = location.prefix
        self.part_size = part_size
        self.parts_in_flight = parts_in_flight
        env = os.environ if env is None else env
        # the SDK also caps retries per kind (3 by default): raise them to the total
        # increment_base: the SDK's annotation says int, its backoff (initial + base ** count) is
        # computed in floats
        retry = ExponentialRetry(initial_backoff=1,
                                 increment_base=1.5,  # type: ignore[arg-type]
                                 retry_total=RETRY_TOTAL,
                                 random_jitter_range=1, retry_status=RETRY_TOTAL,
                                 retry_read=RETRY_TOTAL, retry_connect=RETRY_TOTAL)
        self.service = _service_client(location, env, retry, max_connections)
        self.container = self.service.get_container_client(location.container)
        with self.errors("open", ""):
            try:
                self.container.get_container_properties(retry_total=2, retry_connect=1,
                                                        connection_timeout=5)
            except ResourceNotFoundError:
                if not create:
                    raise DbsafeError("storage.container_missing", location=location.display(),
                                      what="container", container=location.container) from None
                with contextlib.suppress(ResourceExistsError):  # another agent was first
                    self.container.create_container()
        self.pool = ThreadPoolExecutor(max_workers=upload_threads,
                                       thread_name_prefix="azure-put")

    @contextlib.contextmanager
    def errors(self, operation: str, name: str) -> Iterator[None]:
        """Turn SDK failures into DbsafeErrors naming the location (no secret); a missing
        blob is FileNotFoundError for the reads, ``PastEnd`` for a range past its end."""
        where = self.location.display()
        try:
            yield
        except ResourceNotFoundError as exc:
            if _error_code(exc) == "ContainerNotFound":
                raise DbsafeError("storage.container_missing", location=where,
                                  what="container", container=self.location.container) from None
            if operation in ("get", "size"):
                raise FileNotFoundError(name) from None
            raise DbsafeError("storage.request_failed", operation=operation, name=name,
                              location=where, reason=_reason(exc)) from None
        except ClientAuthenticationError as exc:
            raise DbsafeError("storage.access_denied", location=where, reason=_reason(exc),
                              variables=CREDENTIAL_VARIABLES) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise DbsafeError("storage.unreachable", location=where,
                              reason=type(exc).__name__) from None
        except HttpResponseError as exc:
            if exc.status_code == 416 or _error_code(exc) == "InvalidRange":
                raise PastEnd from None
            if _error_code(exc) in _DENIED or exc.status_code == 403:
                raise DbsafeError("storage.access_denied", location=where, reason=_reason(exc),
                                  variables=CREDENTIAL_VARIABLES) from None
            raise DbsafeError("storage.request_failed", operation=operation, name=name,
                              location=where, reason=_reason(exc)) from None

    # writing ---------------------------------------------------------------------------
    def put(self, name: str, data: bytes, durable: bool = True) -> None:  # always durable
        with self.errors("put", name):
            self.container.upload_blob(self.key(name), bytes(data), overwrite=True)

    def writer(self, name: str) -> _AzureWriter:
        return _AzureWriter(self, name)

    # reading ---------------------------------------------------------------------------
    def get(self, name: str) -> bytes:
        with self.errors("get", name):
            return self.container.download_blob(self.key(name)).readall()

    def _read_range(self, name: str, offset: int, length: int) -> bytes:
        with self.errors("get", name):
            return self.container.download_blob(self.key(name), offset=offset,
                                                length=length).readall()

    def size(self, name: str) -> int:
        with self.errors("size", name):
            return self.container.get_blob_client(self.key(name)).get_blob_properties().size

    def list(self, prefix: str) -> Iterator[str]:
        with self.errors("list", prefix):
            for key in self.container.list_blob_names(
                    name_starts_with=self.folder_key(prefix) or None):
                yield self.name_of(key)

    def names(self, folder: str) -> builtins.list[str]:
        start = self.folder_key(folder)
        with self.errors("list", folder):
            return [item.name[len(start):]
                    for item in self.container.walk_blobs(name_starts_with=start or None)
                    if not item.name.endswith("/")]  # a BlobPrefix: a sub-folder

    # removing --------------------------------------------------------------------------
    def delete(self, name: str) -> None:
        with self.errors("delete", name), contextlib.suppress(ResourceNotFoundError):
            self.container.delete_blob(self.key(name))

    def cleanup(self) -> int:
        """Nothing to do: uncommitted blocks of dead writers are never visible and expire."""
        return 0

    def describe(self) -> dict[str, str]:
        return {"backend": "azure", "location": self.location.display()}

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.service.close()


def _reason(exc: HttpResponseError) -> str:
    """The service's error code and status: never the request, whose headers are signed."""
    return f"{_error_code(exc) or 'error'} (HTTP {exc.status_code})"


def _error_code(exc: HttpResponseError) -> str | None:
    """The service's error code: the storage SDK sets it on every error it raises
    (azure-core's class does not declare it)."""
    code: str | None = exc.error_code  # type: ignore[attr-defined]  # set by the storage SDK
    return code


def _service_client(location: Location, env: Mapping[str, str], retry: ExponentialRetry,
                    max_connections: int) -> BlobServiceClient:
    """A client for the location's account, with credentials from ``env`` only."""
    where = location.display()
    endpoint = location.options.get("endpoint")
    account = location.options.get("account")
    connection_string = env.get("AZURE_STORAGE_CONNECTION_STRING")
    key = env.get("AZURE_STORAGE_KEY")
    credential: str | dict[str, str] | None = None
    if connection_string:
        fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
        account = account or fields.get("AccountName")
        key = key or fields.get("AccountKey")
        credential = fields.get("SharedAccessSignature")
        endpoint = endpoint or fields.get("BlobEndpoint")
        if not endpoint and account and fields.get("EndpointSuffix"):  # sovereign clouds
            scheme = fields.get("DefaultEndpointsProtocol", "https")
            endpoint = f"{scheme}://{account}.blob.{fields['EndpointSuffix']}"
    if not account:
        raise DbsafeError("storage.bad_location", location=where,
                          reason="say which storage account: azure://CONTAINER?account=NAME")
    if key:
        credential = {"account_name": account, "account_key": key}
    if credential is None:
        raise DbsafeError("storage.credentials_missing", location=where,
                          variables=CREDENTIAL_VARIABLES)
    session = requests.Session()  # sized for parallel range reads, like the S3 pool
    adapter = requests.adapters.HTTPAdapter(pool_connections=max_connections,
                                            pool_maxsize=max_connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return BlobServiceClient(
        account_url=endpoint or f"https://{account}.blob.core.windows.net",
        credential=credential, retry_policy=retry,
        transport=RequestsTransport(session=session, session_owner=True))
