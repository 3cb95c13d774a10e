"""A Langfuse-compatible public API for tests: stdlib http.server in a thread on 127.0.0.1.

Langfuse (Postgres + ClickHouse + Redis + its web and worker services) does not run here. This
serves the read endpoints of its public API as the Langfuse API reference documents them and
langfuse-python 5.0.4's generated client calls them, over traces it is seeded with in the API's own
shape (the `{trace, observations}` documents `GET /api/public/traces/{id}` answers, e.g. the real
Langfuse Cloud exports in ../shared/fixtures/langfuse):

- `GET /api/public/traces` (page, limit, fromTimestamp, toTimestamp, fields): `{data, meta: {page,
  limit, totalItems, totalPages}}`, newest first; `GET /api/public/traces/{id}`: the trace with its
  observations.
- `GET /api/public/observations` (page, limit, type, name, level, traceId, fromStartTime,
  toStartTime) and `GET /api/public/observations/{id}`.
- `GET /api/public/v2/observations` (limit <= 1000, cursor, fields, expandMetadata, the same
  filters): `{data, meta: {cursor}}`; only the field groups asked for (core and basic by default),
  input/output as raw strings, metadata values over 200 characters cut unless expanded.
  `v2=False` makes it answer 404, as a server from before the v2 endpoint.
- `fail_after = n`: after n observation listings every later one answers 500 (a server going down
  mid-pull).
- HTTP Basic auth with the keys given; 401 otherwise. `throttle(n, retry_after)`: the next n
  requests get 429 with Retry-After, as Langfuse's rate limiter answers.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# Field groups of GET /api/public/v2/observations (the client's docstring).
GROUPS = {
    "core": ["id", "traceId", "startTime", "endTime", "projectId", "parentObservationId", "type"],
    "basic": ["name", "level", "statusMessage", "version", "environment", "bookmarked", "public", "userId",
              "sessionId", "isRootObservation"],
    "time": ["completionStartTime", "createdAt", "updatedAt"],
    "io": ["input", "output"],
    "metadata": ["metadata"],
    "model": ["model", "internalModelId", "modelParameters"],
    "usage": ["usageDetails", "costDetails", "totalCost", "usagePricingTierName"],
    "prompt": ["promptId", "promptName", "promptVersion"],
    "metrics": ["latency", "timeToFirstToken"],
    "trace_context": ["tags", "release", "traceName"],
}
METADATA_CUT = 200


def _t(value: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class LangfuseServer:
    def __init__(self, docs: list[dict[str, Any]], *, public_key: str, secret_key: str, v2: bool = True) -> None:
        self.traces = {d["trace"]["id"]: {k: v for k, v in d["trace"].items() if k != "observations"} for d in docs}
        self.observations = [o for d in docs for o in d["observations"]]
        self.auth = "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self.v2 = v2
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.throttled = 0
        self._throttle: tuple[int, str] = (0, "1")
        self.fail_after: int | None = None  # observation listings answered before every later one fails (500)
        self.listings = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> LangfuseServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="langfuse-test-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LangfuseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        assert self._httpd is not None
        return f"127.0.0.1:{self._httpd.server_address[1]}"

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

    # -- answers --------------------------------------------------------------------------------------
    def answer(self, path: str, q: dict[str, list[str]]) -> tuple[int, Any]:
        one = {k: v[0] for k, v in q.items()}
        if path == "/api/public/traces":
            rows = [t for t in self.traces.values()
                    if ("fromTimestamp" not in one or _t(t["timestamp"]) >= _t(one["fromTimestamp"]))
                    and ("toTimestamp" not in one or _t(t["timestamp"]) < _t(one["toTimestamp"]))]
            rows.sort(key=lambda t: _t(t["timestamp"]), reverse=True)
            fields = set((one.get("fields") or "core,io,scores,observations,metrics").split(","))
            if "io" not in fields:
                rows = [{k: v for k, v in t.items() if k not in ("input", "output")} for t in rows]
            return 200, _paged(rows, one, 50, 100)
        if path.startswith("/api/public/traces/"):
            tid = unquote(path.rsplit("/", 1)[1])
            if tid not in self.traces:
                return 404, {"message": "Trace not found"}
            return 200, {**self.traces[tid], "observations": [o for o in self.observations if o["traceId"] == tid]}
        if path == "/api/public/observations":
            return 200, _paged(self._filtered(one), one, 50, 100)
        if path.startswith("/api/public/observations/"):
            oid = unquote(path.rsplit("/", 1)[1])
            found = [o for o in self.observations if o["id"] == oid]
            return (200, found[0]) if found else (404, {"message": "Observation not found"})
        if path == "/api/public/v2/observations" and self.v2:
            return 200, self._v2(one)
        return 404, {"message": f"not found: {path}"}

    def _filtered(self, one: dict[str, str]) -> list[dict[str, Any]]:
        rows = list(self.observations)
        for key in ("type", "name", "level", "traceId"):
            if key in one:
                rows = [o for o in rows if o.get(key) == one[key]]
        if "fromStartTime" in one:
            rows = [o for o in rows if _t(o["startTime"]) >= _t(one["fromStartTime"])]
        if "toStartTime" in one:
            rows = [o for o in rows if _t(o["startTime"]) < _t(one["toStartTime"])]
        rows.sort(key=lambda o: (_t(o["startTime"]), o["id"]), reverse=True)
        return rows

    def _v2(self, one: dict[str, str]) -> dict[str, Any]:
        rows = self._filtered(one)
        limit = min(int(one.get("limit") or 50), 1000)
        offset = int(base64.b64decode(one["cursor"]).decode()) if one.get("cursor") else 0
        page = rows[offset:offset + limit]
        groups = (one.get("fields") or "core,basic").split(",")
        keep = {f for g in ["core", *groups] for f in GROUPS.get(g, [])}
        expand = set((one.get("expandMetadata") or "").split(","))
        out = []
        for o in page:
            tr = self.traces.get(o["traceId"], {})
            full = {**o, "userId": tr.get("userId"), "sessionId": tr.get("sessionId"), "tags": tr.get("tags"),
                    "release": tr.get("release"), "traceName": tr.get("name"),
                    "isRootObservation": o.get("parentObservationId") is None}
            rec = {k: v for k, v in full.items() if k in keep}
            for k in ("input", "output"):
                if k in rec and rec[k] is not None and not isinstance(rec[k], str):
                    rec[k] = json.dumps(rec[k])  # "always returned as raw strings"
            if "metadata" in rec:
                md = rec["metadata"]
                md = json.loads(md) if isinstance(md, str) else (md or {})
                rec["metadata"] = {k: v if k in expand or len(v if isinstance(v, str) else json.dumps(v)) <= METADATA_CUT
                                   else (v if isinstance(v, str) else json.dumps(v))[:METADATA_CUT]
                                   for k, v in md.items()}
            out.append(rec)
        more = offset + limit < len(rows)
        return {"data": out, "meta": {"cursor": base64.b64encode(str(offset + limit).encode()).decode()
                                      if more else None}}


def _paged(rows: list[Any], one: dict[str, str], default: int, most: int) -> dict[str, Any]:
    limit = min(int(one.get("limit") or default), most)
    page = int(one.get("page") or 1)
    total = len(rows)
    return {"data": rows[(page - 1) * limit:page * limit],
            "meta": {"page": page, "limit": limit, "totalItems": total, "totalPages": -(-total // limit)}}


class _Handler(BaseHTTPRequestHandler):
    server_owner: LangfuseServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        owner = self.server_owner
        parts = urlsplit(self.path)
        q = parse_qs(parts.query)
        owner.requests.append((parts.path, q))
        if self.headers.get("Authorization") != owner.auth:
            self._send(401, {"message": "Invalid credentials. Confirm that you've configured the correct host."})
            return
        after = owner.take_throttle()
        if after is not None:
            self._send(429, {"message": "Rate limit exceeded"}, {"Retry-After": after})
            return
        if parts.path.rstrip("/").endswith("/observations"):
            owner.listings += 1
            if owner.fail_after is not None and owner.listings > owner.fail_after:
                self._send(500, {"message": "Internal Server Error"})
                return
        status, body = owner.answer(parts.path.rstrip("/"), q)
        self._send(status, body)
