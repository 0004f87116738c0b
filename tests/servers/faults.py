"""A fault-injecting reverse proxy on loopback, in front of a real object storage server.

While a fault is armed (for some seconds, or for the next N requests) every request is
answered with 503 (or the status asked for) and the body the service itself would send
(S3: ``SlowDown``; Azure: ``ServerBusy``; ``InternalError`` for another 5xx); the request
body is read and dropped, as a throttling front end does. Otherwise each request is
forwarded as it came: headers unchanged (S3 signs the Host header), bodies streamed both
ways, Range headers and chunked transfers included. The proxy counts what it did, so a test
can assert that the client really met the faults it survived.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailer", "upgrade", "expect", "proxy-connection"}
# the error code each service sends for a throttling answer; other statuses: InternalError
_THROTTLE_CODE = {"s3": "SlowDown", "azure": "ServerBusy"}
_CHUNK = 64 * 1024


class FaultProxy:
    """``FaultProxy(upstream_port, flavor="s3"|"azure").start()``; ``.port`` is where to
    point clients; ``fail_for(seconds)`` / ``fail_next(count)`` arm a fault."""

    def __init__(self, upstream_port: int, flavor: str = "s3") -> None:
        self.upstream_port = upstream_port
        self.flavor = flavor
        self.faults_served = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self._fail_until = 0.0
        self._fail_count = 0
        self._status = 503
        self._code: str | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"fault-proxy-{self.port}")

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_for(self, seconds: float, status: int = 503) -> None:
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._status = status
            self._code = None

    def fail_next(self, count: int, status: int = 503, code: str | None = None) -> None:
        """The next ``count`` requests fail with ``status`` and the error ``code`` (default:
        the service's own for that status)."""
        with self._lock:
            self._fail_count = count
            self._status = status
            self._code = code

    def take_fault(self) -> tuple[int, str | None] | None:
        """The status (and error code) to fail this request with, or None to forward it."""
        with self._lock:
            if self._fail_count > 0:
                self._fail_count -= 1
            elif time.monotonic() >= self._fail_until:
                self.forwarded += 1
                return None
            self.faults_served += 1
            return self._status, self._code


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client dropping a kept-alive connection is normal (a pool closing); the rest
        is a bug in the proxy and is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as the clients expect

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet: tests read counters
        pass

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy
        body = self._request_body()
        fault = proxy.take_fault()
        if fault is not None:
            for _ in body:  # drain: the connection stays usable for the client's retry
                pass
            self._send_fault(proxy.flavor, *fault)
            return
        conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
        try:
            upstream = self._forward(conn, body)
        except OSError:
            conn.close()
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True
            return
        try:
            self._relay(upstream)
        finally:
            conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle

    def _request_body(self) -> Iterator[bytes]:
        """The request body as raw bytes to forward (chunked bodies stay chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline()
                yield line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, up to the blank line
                        trailer = self.rfile.readline()
                        yield trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            return
                yield self.rfile.read(size + 2)
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            data = self.rfile.read(min(_CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data

    def _send_fault(self, flavor: str, status: int, code: str | None = None) -> None:
        code = code or (_THROTTLE_CODE[flavor] if status in (429, 503) else "InternalError")
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>fault injected by the dbsafe test proxy</Message></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-ms-error-code" if flavor == "azure" else "x-amz-error-code", code)
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, conn: http.client.HTTPConnection,
                 body: Iterator[bytes]) -> http.client.HTTPResponse:
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                conn.putheader(name, value)
        conn.endheaders()
        for data in body:
            conn.send(data)
        return conn.getresponse()

    def _relay(self, upstream: http.client.HTTPResponse) -> None:
        self.send_response_only(upstream.status, upstream.reason)
        length = upstream.getheader("Content-Length")
        no_body = self.command == "HEAD" or upstream.status in (204, 304)
        for name, value in upstream.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "transfer-encoding":
                self.send_header(name, value)
        chunked = length is None and not no_body
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        while data := upstream.read(_CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
