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

It also answers the read side `oncall load langsmith://PROJECT` uses, as `langsmith.Client` calls it
(SDK 0.15.1: `read_project`, `list_runs`; LangSmith API reference, `GET /api/v1/sessions` and
`POST /api/v1/runs/query`, whose body is the SDK's `body_query`):
- `GET /sessions?name=P&limit=1`: a list with the project (`TracerSessionResult` fields);
- `POST /runs/query` with `session`, `id`, `trace`, `run_type`, `start_time`, `error`, `is_root`,
  `filter` (the filter language's and/or/eq/neq/gt/gte/lt/lte/has), `select`, `limit` (page size,
  at most 100) and `cursor`; answers `{runs: [...], cursors: {next}}`, newest start_time first. Runs
  are every create with its updates applied, with the `status` the API derives.
- `api_key=`: requests without that `X-API-Key` get 401; `throttle(n, retry_after)`: the next n
  queries get 429 with Retry-After, as LangSmith's rate limiter answers.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.parser
import email.policy
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

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

    def __init__(self, mode: str = "batch", *, api_key: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.api_key = api_key
        self.payloads: list[dict[str, list[dict[str, Any]]]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every ingest request
        self.queries: list[dict[str, Any]] = []  # every /runs/query body received
        self.throttled = 0  # 429s answered
        self._throttle: tuple[int, str] = (0, "1")
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

    # -- the read API --------------------------------------------------------------------------------
    def throttle(self, n: int, retry_after: str = "1") -> None:
        self._throttle = (n, retry_after)

    def take_throttle(self) -> str | None:
        with self._lock:
            n, after = self._throttle
            if n <= 0:
                return None
            self._throttle = (n - 1, after)
            self.throttled += 1
            return after

    def stored_runs(self) -> dict[str, dict[str, Any]]:
        """Every run as the API hands it back: its create with its updates applied, and a status."""
        runs: dict[str, dict[str, Any]] = {}
        for _op, r in self.runs():
            run = runs.setdefault(str(r["id"]), {})
            for k, v in r.items():
                if k == "extra" and isinstance(v, dict) and isinstance(run.get("extra"), dict):
                    run["extra"] = {**run["extra"], **v,
                                    "metadata": {**(run["extra"].get("metadata") or {}), **(v.get("metadata") or {})}}
                elif v is not None or k not in run:
                    run[k] = v
        for run in runs.values():
            project = run.get("session_name") or "default"
            run["session_id"] = session_id(project)
            run["status"] = "error" if run.get("error") else "success" if run.get("end_time") else "pending"
            run.setdefault("parent_run_id", None)
        return runs

    def query(self, body: dict[str, Any]) -> dict[str, Any]:
        self.queries.append(body)
        runs = list(self.stored_runs().values())
        if body.get("session"):
            runs = [r for r in runs if r["session_id"] in set(body["session"])]
        if body.get("id"):
            runs = [r for r in runs if str(r["id"]) in {str(i) for i in body["id"]}]
        if body.get("trace"):
            runs = [r for r in runs if str(r.get("trace_id")) == str(body["trace"])]
        if body.get("run_type"):
            runs = [r for r in runs if r.get("run_type") == body["run_type"]]
        if body.get("start_time"):
            runs = [r for r in runs if _ts(r.get("start_time")) >= _ts(body["start_time"])]
        if body.get("error") is not None:
            runs = [r for r in runs if bool(r.get("error")) == bool(body["error"])]
        if body.get("is_root") is not None:
            runs = [r for r in runs if (r.get("parent_run_id") is None) == bool(body["is_root"])]
        if body.get("filter"):
            pred = parse_filter(body["filter"])
            runs = [r for r in runs if pred(r)]
        runs.sort(key=lambda r: (_ts(r.get("start_time")), str(r["id"])), reverse=True)
        size = min(int(body.get("limit") or 100), 100)
        offset = int(base64.b64decode(body["cursor"]).decode()) if body.get("cursor") else 0
        page = runs[offset:offset + size]
        select = body.get("select")
        if select:
            page = [{k: v for k, v in r.items() if k in select or k == "id"} for r in page]
        more = offset + size < len(runs)
        return {"runs": page, "cursors": {"next": base64.b64encode(str(offset + size).encode()).decode()
                                          if more else None}}

    def sessions(self, name: str | None) -> list[dict[str, Any]]:
        names = {r.get("session_name") or "default" for _, r in self.runs()}
        return [{"id": session_id(n), "name": n, "tenant_id": str(uuid.UUID(int=0)), "start_time":
                 "2026-01-01T00:00:00", "extra": {}, "reference_dataset_id": None}
                for n in sorted(names) if name is None or n == name]

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

    def _authorized(self) -> bool:
        key = self.owner.api_key
        if key is not None and self.headers.get("X-API-Key") != key:
            self._send(401, {"detail": "Invalid token"})
            return False
        return True

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path.rstrip("/") == "/info":
            self._send(200, self.owner.info())
        elif path.rstrip("/") == "/sessions":
            if self._authorized():
                self._send(200, self.owner.sessions((parse_qs(query).get("name") or [None])[0]))
        else:
            self._send(404, {"detail": f"not found: {self.path}"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        body = self._body()
        if path == "/runs/query":
            if not self._authorized():
                return
            after = self.owner.take_throttle()
            if after is not None:
                data = b'{"detail": "Too many requests"}'
                self.send_response(429)
                self.send_header("Retry-After", after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self._send(200, self.owner.query(json.loads(body)))
            return
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


def session_id(project: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"langsmith-test/{project}"))


def _ts(value: Any) -> str:
    """An ISO time as a sortable string (UTC, microseconds, no zone)."""
    t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t.isoformat(timespec="microseconds")


_CALL_RE = re.compile(r"\s*([a-z_]+)\(")


def parse_filter(text: str) -> Any:
    """A predicate for LangSmith's filter language: and(...), or(...), not(...), eq/neq/gt/gte/lt/lte
    (field, value), has(field, value) — the subset list_runs' examples use."""
    pos = 0

    def value() -> Any:
        nonlocal pos
        while text[pos] == " ":
            pos += 1
        if text[pos] == '"':
            end = pos + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            v = json.loads(text[pos:end + 1])
            pos = end + 1
            return v
        m = re.compile(r"[^,)\s]+").match(text, pos)
        pos = m.end()
        word = m.group(0)
        return {"true": True, "false": False, "null": None}.get(word, word)

    def expr() -> Any:
        nonlocal pos
        m = _CALL_RE.match(text, pos)
        if not m:
            raise ValueError(f"filter: expected a call at {pos}: {text!r}")
        name, pos = m.group(1), m.end()
        if name in ("and", "or", "not"):
            args = [expr()]
            while text[pos] == ",":
                pos += 1
                args.append(expr())
        else:
            field = value()
            assert text[pos] == ","
            pos += 1
            args = [field, value()]
        while text[pos] == " ":
            pos += 1
        assert text[pos] == ")", text[pos:]
        pos += 1
        return _predicate(name, args)

    pred = expr()
    return pred


def _predicate(name: str, args: list[Any]) -> Any:
    if name == "and":
        return lambda r: all(a(r) for a in args)
    if name == "or":
        return lambda r: any(a(r) for a in args)
    if name == "not":
        return lambda r: not args[0](r)
    field, want = args

    def get(r: dict[str, Any]) -> Any:
        v = r.get(field)
        if field in ("start_time", "end_time") and v is not None:
            return _ts(v)
        return v

    want_t = _ts(want) if field in ("start_time", "end_time") else want
    ops = {"eq": lambda v: v == want_t, "neq": lambda v: v != want_t,
           "gt": lambda v: v is not None and v > want_t, "gte": lambda v: v is not None and v >= want_t,
           "lt": lambda v: v is not None and v < want_t, "lte": lambda v: v is not None and v <= want_t,
           "has": lambda v: isinstance(v, list) and want_t in v}
    op = ops[name]
    return lambda r: op(get(r))
