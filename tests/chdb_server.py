"""A loopback server answering ClickHouse's HTTP interface from chDB (tests only).

ClickHouse itself cannot run here and chDB has no server mode; this lets the real clickhouse-connect
client take its real HTTP path (`clickhouse://127.0.0.1:PORT/...`) against the real engine, the
client none the wiser. It implements what the client uses (ClickHouse docs, "HTTP Interface"):
the query in the `query` URL parameter and/or the POST body, `param_NAME` bound parameters,
`database`, per-query settings as URL parameters, the user and password as `X-ClickHouse-User` /
`X-ClickHouse-Key` headers, URL parameters or Basic auth, `X-ClickHouse-Summary` /
`X-ClickHouse-Format` / `X-ClickHouse-Timezone` / `X-ClickHouse-Query-Id` response headers, and
errors as `Code: N. DB::Exception: …` with `X-ClickHouse-Exception-Code`. `/ping` answers `Ok.`.

Limits the client sends as settings (max_execution_time, max_result_rows, max_rows_to_read, …) are
applied to the chDB session for the query, so the server's own refusals are real engine errors.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_CONTROL = {"query", "database", "default_format", "session_id", "session_timeout", "session_check", "query_id",
            "user", "password", "compress", "decompress", "enable_http_compression", "wait_end_of_query",
            "buffer_size", "client_protocol_version", "quota_key", "role", "send_progress_in_http_headers",
            "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
            "http_response_buffer_size", "http_wait_end_of_query", "output_format_arrow_string_as_string"}
_SETTING_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")
_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE_RE = re.compile(r"Code:\s*(\d+)")


class ChdbHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, path: str, *, user: str = "default", password: str = "") -> None:
        from chdb import session

        self.session = session.Session(path)
        self.lock = threading.Lock()
        self.user, self.password = user, password
        self.requests: list[dict[str, Any]] = []  # what was asked, for tests that check pushdown
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        super().server_bind()
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> ChdbHTTPServer:
        threading.Thread(target=self.serve_forever, name="chdb-http", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # -- running one query ---------------------------------------------------------------------------
    def run(self, sql: str, params: dict[str, str], settings: dict[str, str], database: str | None,
            default_format: str) -> tuple[bytes, str, dict[str, Any]]:
        m = _FORMAT_RE.search(sql)
        fmt = m.group(1) if m else default_format
        with self.lock:
            saved = self._apply(settings, database)
            try:
                res = self.session.query(sql, fmt, params=params or None)
                out = bytes(res.bytes()) if res is not None else b""
                summary = {"read_rows": str(res.rows_read()) if res is not None else "0",
                           "read_bytes": str(res.bytes_read()) if res is not None else "0",
                           "written_rows": "0", "written_bytes": "0", "total_rows_to_read": "0",
                           "result_rows": "0", "result_bytes": str(len(out)),
                           "elapsed_ns": str(int((res.elapsed() if res is not None else 0) * 1e9))}
            finally:
                self._restore(saved)
        return out, fmt, summary

    def _apply(self, settings: dict[str, str], database: str | None) -> list[tuple[str, str]]:
        saved: list[tuple[str, str]] = []
        for k, v in settings.items():
            if not _SETTING_RE.match(k) or not _NUMBER_RE.match(v):
                continue  # only numeric limits matter here; nothing a client sends becomes SQL text
            row = self.session.query(f"SELECT value FROM system.settings WHERE name = '{k}'", "TabSeparated")
            old = bytes(row.bytes()).decode().strip()
            if old == "":
                continue
            saved.append((k, old))
            self.session.query(f"SET {k} = {v}")
        if database and re.match(r"^[A-Za-z0-9_]+$", database):
            self.session.query(f"USE {database}")
        return saved

    def _restore(self, saved: list[tuple[str, str]]) -> None:
        for k, old in saved:
            if _NUMBER_RE.match(old):
                self.session.query(f"SET {k} = {old}")
        self.session.query("USE default")


class _Handler(BaseHTTPRequestHandler):
    server: ChdbHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        if urlsplit(self.path).path.rstrip("/") in ("/ping", "/replicas_status"):
            self._send(200, b"Ok.\n", {})
            return
        self._query(b"")

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self._query(body)

    def _query(self, body: bytes) -> None:
        q = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        user, password = self._credentials(q)
        if user != self.server.user or password != self.server.password:
            msg = (f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, or there is "
                   "no user with such name. (AUTHENTICATION_FAILED)\n")
            self._send(403, msg.encode(), {"X-ClickHouse-Exception-Code": "516"})
            return
        sql = "\n".join(x for x in (q.get("query", ""), body.decode("utf-8", "replace")) if x).strip()
        params = {k[len("param_"):]: v for k, v in q.items() if k.startswith("param_")}
        settings = {k: v for k, v in q.items() if k not in _CONTROL and not k.startswith("param_")}
        self.server.requests.append({"sql": sql, "params": params, "settings": settings})
        try:
            out, fmt, summary = self.server.run(sql, params, settings, q.get("database"),
                                                q.get("default_format", "TabSeparated"))
        except Exception as exc:  # noqa: BLE001 - the engine's error, as ClickHouse reports it
            text = str(exc)
            m = _CODE_RE.search(text)
            code = m.group(1) if m else "1"
            self._send(500 if code not in ("60", "81") else 404, (text.strip() + "\n").encode(),
                       {"X-ClickHouse-Exception-Code": code})
            return
        self._send(200, out, {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
                              "X-ClickHouse-Summary": json.dumps(summary),
                              "X-ClickHouse-Query-Id": q.get("query_id") or str(uuid.uuid4()),
                              "X-ClickHouse-Server-Display-Name": "chdb-loopback",
                              "Content-Type": "application/octet-stream" if fmt not in ("JSON", "TabSeparated")
                              else "text/plain; charset=UTF-8"})

    def _credentials(self, q: dict[str, str]) -> tuple[str, str]:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            return user, pw
        return (self.headers.get("X-ClickHouse-User") or q.get("user") or "default",
                self.headers.get("X-ClickHouse-Key") or q.get("password") or "")

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
