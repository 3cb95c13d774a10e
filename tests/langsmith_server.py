"""A LangSmith-compatible ingest endpoint for tests: stdlib http.server in a thread on 127.0.0.1.

It answers what the `langsmith` SDK asks for when it traces, and keeps every run create and update
it was sent, in whichever transport the SDK chose:
- `GET /info` says which batch transport to use: `mode="batch"` (JSON `POST /runs/batch`),
  `"multipart"` (`POST /runs/multipart`, multipart/form-data with one part per run field group) or
  `"multipart-zstd"` (the same stream zstd-compressed, `Content-Encoding: zstd`);
- single-run `POST /runs` and `PATCH /runs/{id}` (the SDK's non-batch path,
  `Client(auto_batch_tracing=False)`).

`server.payloads` holds one `{"post": [...], "patch": [...]}` per request received, runs
reassembled exactly as sent (multipart parts `post.<id>.inputs` etc. put back under their keys).
`write_jsonl(path)` saves them as the export file oncall loads: one payload per line, in arrival
order, the on-disk shape README documents for captured LangSmith ingest traffic.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODES = ("runs", "batch", "multipart", "multipart-zstd")


def parse_multipart(content_type: str, body: bytes) -> dict[str, list[dict[str, Any]]]:
    """A `/runs/multipart` body as `{"post": [run…], "patch": [run…]}`.

    Part names are `<op>.<run id>` (the run minus its big fields) and `<op>.<run id>.<field>`
    (`inputs`, `outputs`, `events`, `extra`, `error`, `serialized`); `attachment.*` and
    `feedback.*` parts are not runs.
    """
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        op, _, rest = name.partition(".")
        if op not in ("post", "patch"):
            continue
        run_id, _, field = rest.partition(".")
        value = json.loads(part.get_payload(decode=True))
        run = runs.setdefault((op, run_id), {})
        if field:
            run[field] = value
        else:
            run.update(value)
    out: dict[str, list[dict[str, Any]]] = {"post": [], "patch": []}
    for (op, _), run in runs.items():
        out[op].append(run)
    return out


def _zstd_decompress(body: bytes) -> bytes:
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True) as reader:
        return reader.read()


class LangSmithServer:
    """Captures LangSmith run ingestion on 127.0.0.1:<free port>."""

    def __init__(self, mode: str = "batch") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.payloads: list[dict[str, list[dict[str, Any]]]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every ingest request
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> LangSmithServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="langsmith-test-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LangSmithServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def info(self) -> dict[str, Any]:
        multipart = self.mode.startswith("multipart")
        return {
            "version": "0.12.0",
            "instance_flags": {"zstd_compression_enabled": self.mode == "multipart-zstd"},
            "batch_ingest_config": {"use_multipart_endpoint": multipart, "scale_up_qsize_trigger": 1000,
                                    "scale_up_nthreads_limit": 16, "scale_down_nempty_trigger": 4,
                                    "size_limit": 100, "size_limit_bytes": 20_971_520},
        }

    def record(self, method: str, path: str, payload: dict[str, list[dict[str, Any]]]) -> None:
        with self._lock:
            self.requests.append((method, path))
            self.payloads.append(payload)

    def runs(self) -> list[tuple[str, dict[str, Any]]]:
        """(op, run) of every create and update received, in arrival order."""
        return [(op, r) for p in self.payloads for op in ("post", "patch") for r in p.get(op) or []]

    def write_jsonl(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for p in self.payloads:
                fh.write(json.dumps({k: v for k, v in p.items() if v}, ensure_ascii=False) + "\n")


class _Handler(BaseHTTPRequestHandler):
    owner: LangSmithServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if (self.headers.get("Content-Encoding") or "").lower() == "zstd":
            raw = _zstd_decompress(raw)
        return raw

    def do_GET(self) -> None:
        if self.path.split("?")[0].rstrip("/") == "/info":
            self._send(200, self.owner.info())
        else:
            self._send(404, {"detail": f"not found: {self.path}"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        body = self._body()
        if path == "/runs/batch":
            doc = json.loads(body)
            self.owner.record("POST", path, {"post": doc.get("post") or [], "patch": doc.get("patch") or []})
        elif path == "/runs/multipart":
            self.owner.record("POST", path, parse_multipart(self.headers.get("Content-Type") or "", body))
        elif path == "/runs":
            self.owner.record("POST", path, {"post": [json.loads(body)], "patch": []})
        else:
            self._send(404, {"detail": f"not found: {self.path}"})
            return
        self._send(202, {"message": "accepted"})

    def do_PATCH(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        body = self._body()
        if not path.startswith("/runs/"):
            self._send(404, {"detail": f"not found: {self.path}"})
            return
        run = json.loads(body)
        run.setdefault("id", path.rsplit("/", 1)[-1])
        self.owner.record("PATCH", path, {"post": [], "patch": [run]})
        self._send(202, {"message": "accepted"})
