"""The OTLP/HTTP endpoint: `POST /v1/traces`, answered as the OTLP/HTTP specification says.

- 200 with an `ExportTraceServiceResponse` (protobuf or JSON, as the request was), carrying
  `partial_success` when some spans were rejected; sent only once the part holding the spans is
  durable and registered (live.receiver).
- 400 for a body that does not parse (exporters drop it: retrying cannot help), 413 for a body over
  the limit (before or after gzip), 415 for another Content-Type, 401 without the bearer token.
- 429 with Retry-After when the backlog is full, 503 with Retry-After while stopping or when the
  incident cannot be written: exporters retry both after the delay.
Error bodies are a `google.rpc.Status`, as the specification asks.

Why the standard library's threaded server: an exporter sends batches (512 spans by default in the
OTel SDKs, up to 8192 from a Collector), so even 20,000 spans/s is tens of requests a second; the
cost is decoding and writing spans, not HTTP (bench/RESULTS.md, "Receive": the server's own share
measured). A thread per connection also lets each request simply wait for its part, with no event
loop to keep free. Connections are capped and each socket has a timeout, so slow or idle clients
cannot pile up threads.
"""

from __future__ import annotations

import hmac
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from oncall.ingest.otlp_proto import encode_response
from oncall.live.payload import JSON, PROTOBUF, PayloadError, decode_body, media_type
from oncall.live.receiver import Receiver

log = logging.getLogger("oncall.live")

TRACES_PATH = "/v1/traces"
DEFAULT_MAX_BODY = 32 * 1024 * 1024  # compressed or not; the Collector's own default is 20 MiB
DEFAULT_MAX_CONNECTIONS = 256
# Bodies read and decoded at once: each can be max_body bytes and several times that as rows, so
# this (not the connection count) is what bounds the memory of requests in flight.
DECODING_AT_ONCE = 4
SOCKET_TIMEOUT = 30.0  # seconds a client may take to send a request
ACK_TIMEOUT = 60.0  # a part that takes longer than this to write is answered 503 (the exporter retries)

# google.rpc.Code values for the Status body of error responses.
_RPC_CODE = {400: 3, 401: 16, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 429: 8, 503: 14}


def rpc_status(http_status: int, message: str) -> bytes:
    """A `google.rpc.Status{code, message}` in protobuf: two fields, encoded here rather than
    pulling in googleapis-common-protos for one message."""
    code = _RPC_CODE.get(http_status, 2)
    msg = message.encode("utf-8")[:4096]
    return bytes([0x08, code]) + bytes([0x12]) + _varint(len(msg)) + msg


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class OTLPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], receiver: Receiver, *, token: str | None = None,
                 max_body: int = DEFAULT_MAX_BODY, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        super().__init__(address, OTLPHandler)
        self.receiver = receiver
        self.token = token
        self.max_body = max_body
        self.max_connections = max_connections
        self.active = 0
        self._active_lock = threading.Lock()
        self.decoding = threading.BoundedSemaphore(DECODING_AT_ONCE)
        self.in_flight = 0  # requests being answered (not idle keep-alive connections)

    def track(self, delta: int) -> None:
        with self._active_lock:
            self.in_flight += delta

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            self.active += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self.active -= 1

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}{TRACES_PATH}"


class OTLPHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse their connection
    server: OTLPServer
    timeout = SOCKET_TIMEOUT
    server_version = "oncall-receive"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.address_string(), *args)

    # -- responses ---------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, *, retry_after: int | None = None,
              close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, *, retry_after: int | None = None, close: bool = False) -> None:
        if media_type(self.headers.get("Content-Type")) == JSON:
            body, ctype = orjson.dumps({"code": _RPC_CODE.get(status, 2), "message": message}), JSON
        else:
            body, ctype = rpc_status(status, message), PROTOBUF
        self._send(status, body, ctype, retry_after=retry_after, close=close)

    # -- routes --------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._error(405 if self.path.split("?")[0] == TRACES_PATH else 404,
                    f"oncall receives OTLP traces with POST {TRACES_PATH}", close=True)

    def do_POST(self) -> None:  # noqa: N802
        self.server.track(+1)
        try:
            self._post()
        finally:
            self.server.track(-1)

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        if path != TRACES_PATH:
            self._error(404, f"unknown path {path!r}; oncall receives traces at {TRACES_PATH} "
                             "(metrics and logs are not received)", close=True)
            return
        srv = self.server
        if srv.token is not None and not self._authorized(srv.token):
            self._error(401, "missing or wrong bearer token (Authorization: Bearer …)", close=True)
            return
        receiver = srv.receiver
        if receiver.stopping:
            self._error(503, "the receiver is stopping", retry_after=5, close=True)
            return
        if srv.active > srv.max_connections:
            self._error(503, "too many connections", retry_after=receiver.retry_after(), close=True)
            return
        if receiver.busy():
            receiver.stats.busy_responses += 1
            self._error(429, "the receiver is behind; retry later", retry_after=receiver.retry_after(), close=True)
            return
        with receiver.receiving():
            if not srv.decoding.acquire(timeout=SOCKET_TIMEOUT):
                self._error(503, "too many requests being decoded", retry_after=receiver.retry_after(), close=True)
                return
            try:
                body = self._read_body(srv.max_body)
                decoded = decode_body(body, self.headers.get("Content-Type"), self.headers.get("Content-Encoding"),
                                      max_bytes=srv.max_body, source=receiver.source)
            except PayloadError as exc:
                self._error(exc.status, str(exc), close=exc.status in (411, 413))
                return
            finally:
                srv.decoding.release()
            ticket = receiver.offer(decoded)
        if ticket is None:
            status, why = (503, "the receiver is stopping") if receiver.stopping else (
                429, "the receiver is behind; retry later")
            self._error(status, why, retry_after=receiver.retry_after())
            return
        if not ticket.wait(ACK_TIMEOUT):
            self._error(503, "writing the spans is taking too long; retry later", retry_after=receiver.retry_after())
            return
        if ticket.error is not None:
            self._error(503, f"the spans could not be written to the incident: {ticket.error}",
                        retry_after=receiver.retry_after())
            return
        self._ok(decoded.rejected, decoded.error_message())

    def _ok(self, rejected: int, message: str) -> None:
        if media_type(self.headers.get("Content-Type")) == JSON:
            doc: dict[str, Any] = {}
            if rejected:
                doc["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
            self._send(200, orjson.dumps(doc), JSON)
        else:
            self._send(200, encode_response(rejected, message), PROTOBUF)

    def _authorized(self, token: str) -> bool:
        got = self.headers.get("Authorization") or ""
        scheme, _, value = got.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            raise PayloadError(411, "Content-Length is required")
        try:
            n = int(length)
        except ValueError:
            raise PayloadError(400, f"bad Content-Length {length!r}") from None
        if n > limit:
            raise PayloadError(413, f"the request body is {n:,} bytes; the limit is {limit:,}")
        body = self.rfile.read(n)
        if len(body) < n:
            raise PayloadError(400, "the request body ended early")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise PayloadError(400, "bad chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                raise PayloadError(413, f"the request body is over the limit of {limit:,} bytes")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)
