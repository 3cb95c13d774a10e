"""A loopback HTTP server that keeps every request body it is sent, for SDKs that export over HTTP.

Used by the format tests to capture what a real SDK puts on the wire (OTLP/HTTP protobuf bodies from
the Langfuse SDK, the OpenAI Agents SDK's trace ingest, Opik's and Braintrust's REST payloads) and
save it as the files a team would keep. Answers 200 with a body chosen per path (`responses`), so
each SDK sees the acknowledgement it expects; an OTLP path gets an empty ExportTraceServiceResponse.
"""

from __future__ import annotations

import gzip
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes  # as sent (Content-Encoding kept: gzip bodies stay gzip)

    def decoded(self) -> bytes:
        if self.headers.get("content-encoding", "").lower() == "gzip":
            return gzip.decompress(self.body)
        return self.body

    def json(self) -> Any:
        return json.loads(self.decoded())


class CaptureServer:
    def __init__(self, responses: dict[str, Any] | None = None) -> None:
        self.requests: list[Captured] = []
        self.responses = responses or {}
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                with outer._lock:
                    outer.requests.append(Captured(self.command, self.path,
                                                   {k.lower(): v for k, v in self.headers.items()}, body))
                path = self.path.split("?", 1)[0]
                resp = next((v for k, v in outer.responses.items() if path.endswith(k)), None)
                if callable(resp):
                    resp = resp(path, body)
                if path.endswith("/v1/traces") and resp is None:
                    data, ctype = b"", "application/x-protobuf"
                else:
                    data, ctype = json.dumps(resp if resp is not None else {}).encode(), "application/json"
                self.send_response(200)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_PATCH = do_GET = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> CaptureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def bodies(self, path_suffix: str) -> list[Captured]:
        return [r for r in self.requests if r.path.split("?", 1)[0].endswith(path_suffix)]
