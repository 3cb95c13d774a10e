"""Langfuse's public API as a source: `langfuse://[PUBLIC_KEY@]host[:port][/PREFIX]`.

    LANGFUSE_PUBLIC_KEY=pk-lf-… LANGFUSE_SECRET_KEY=sk-lf-… oncall load langfuse://cloud.langfuse.com --since -1h

Auth is HTTP Basic with the project's public key (the URL's user, else `$LANGFUSE_PUBLIC_KEY`) and
secret key (`$LANGFUSE_SECRET_KEY` or `[sources.NAME] password_env`); the keys scope the project.
`langfuse://` with no host takes `$LANGFUSE_BASE_URL`/`$LANGFUSE_HOST` (the SDK's variables).

Endpoints (Langfuse API reference, as langfuse-python 5.0.4's generated client calls them):
- observations: `GET /api/public/v2/observations` (cursor-paged, `fields=` groups,
  `expandMetadata=` so the OTel attributes kept in metadata are not cut at 200 characters); a server
  without it (404: self-hosted Langfuse before v3.1xx) is read through
  `GET /api/public/observations` (page-numbered, `meta.totalPages`). Pushed down: the window
  (`fromStartTime`/`toStartTime`), `type=GENERATION` when only LLM calls are asked for with
  `kind=llm` (the mapping's kind is the observation type; by default, no `kind=`, a pass each for
  RETRIEVER, EMBEDDING and GENERATION: the calls and the retrievals that fed them, linked at load),
  `name=`, `level=ERROR` for errors.
- traces, for the user, session, release, tags and metadata (tenant, feature) an observation
  inherits: `GET /api/public/traces` over the window (from an hour before it: a trace's timestamp
  is its start) when many are needed, `GET /api/public/traces/{id}` for the few others.
- parent observations a filtered pull left out: `GET /api/public/observations/{id}`.

Every record goes through the file importer's mapping (`ingest.formats.langfuse.observation_row`,
`trace_row`): a downloaded trace, a blob export, Langfuse's ClickHouse tables and this API give the
same rows. Observations hang under their trace's row, so cohort keys inherit as in a file load
(nearest ancestor first). Rate limits: 429 with Retry-After is waited out (sources.http).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any
from urllib.parse import quote

from oncall.ingest.decode import normalize_id
from oncall.ingest.formats.langfuse import KINDS, observation_row, trace_row
from oncall.query.filters import Filter
from oncall.sources.base import Progress, PullStats, SourceRef, SourceUsageError, SpanSink, Window
from oncall.sources.http import Api, base_url
from oncall.sources.inherit import Ancestry, Key
from oncall.sources.terms import equals, kinds, wants_errors_only

V2_PAGE = 500  # observations per v2 page (the API allows 1000)
V1_PAGE = 100  # per page of the page-numbered endpoints
# Pulled by default: the calls and what fed them. The retrievals first: a --limit counts calls and ends
# the pull once reached, so the calls' pass comes last (the capped calls still find their retrievals).
RAG_TYPES = ("RETRIEVER", "EMBEDDING", "GENERATION")
TRACE_LOOKBACK = dt.timedelta(hours=1)
BY_ID_MAX = 20  # traces fetched one by one before listing the window's traces instead
V2_FIELDS = "core,basic,time,io,metadata,model,usage,prompt,metrics"
EXPAND_METADATA = "attributes,resourceAttributes,scope"


class LangfuseSource:
    format = "langfuse-api"
    slices = True  # pulled slice by slice, each its own import (pull.load_source): an interrupted pull resumes

    def __init__(self, ref: SourceRef, api: Api, prefix: str) -> None:
        self.ref = ref
        self.api = api
        self.prefix = prefix
        self.traces: dict[str, dict[str, Any]] = {}
        self.missing_traces: set[str] = set()
        self.listed = False
        self.v2: bool | None = None  # decided by the first request

    def identity(self) -> str:
        return f"{self.ref.display}#{self.api.base}{self.prefix}"

    def close(self) -> None:
        self.api.close()

    def _path(self, path: str) -> str:
        return f"{self.prefix}{path}"

    # -- pull ---------------------------------------------------------------------------------------
    def pull(self, window: Window, flt: Filter, sink: SpanSink, *, limit: int | None = None,
             progress: Progress | None = None) -> PullStats:
        stats = PullStats()
        self.window = window
        want = kinds(flt)
        trace_rows = want is None or "trace" in want
        ancestry = Ancestry(self._parents)
        emitted_traces: set[str] = set()
        for page in self._observation_pages(window, flt):
            stats.rows += len(page)
            obs = [ob for ob in page if self._usable(ob, sink)]
            self._need_traces({str(ob["traceId"]) for ob in obs if ob.get("traceId")})
            rows = []
            for ob in obs:
                tr = self.traces.get(str(ob.get("traceId"))) or {"id": ob.get("traceId")}
                try:
                    rows.append(observation_row(ob, tr))
                except (TypeError, ValueError, AttributeError) as exc:
                    sink.problem(None, "bad-observation", f"observation {ob.get('id')!r} cannot be read: {exc}")
            for tid in {r["trace_id"] for r in rows if r.get("trace_id")}:
                trow = self._trace_row(tid)
                if trow is not None:
                    ancestry.remember(trow)
                    if trace_rows and tid not in emitted_traces and _in_window(trow, window):
                        emitted_traces.add(tid)
                        rows.append(trow)
            ancestry.resolve(rows)
            for row in rows:
                if row.get("trace_id") and row.get("span_id"):
                    sink.add(row, None)
                else:
                    sink.problem(None, "missing-id", f"observation {row.get('name')!r} has no id; skipped")
            if progress:
                progress(stats.rows)
            if getattr(sink, "full", False):
                break
        return self.api.account(stats)

    def _usable(self, ob: Any, sink: SpanSink) -> bool:
        if isinstance(ob, dict) and ob.get("id"):
            return True
        sink.problem(None, "bad-observation", f"{self.ref.display}: an observation without an id; skipped")
        return False

    def _keep_trace(self, tr: dict[str, Any]) -> None:
        """Known by the id the API uses and by the id the mapping normalises it to."""
        tr.pop("observations", None)  # the full ones come from the observations endpoint
        tid = str(tr["id"])
        self.traces.setdefault(tid, tr)
        self.traces.setdefault(normalize_id(tid, hex_len=32) or tid, tr)

    def _trace_row(self, trace_id: str) -> dict[str, Any] | None:
        tr = self.traces.get(trace_id)
        if tr is None:
            return None
        try:
            return trace_row(tr)
        except (TypeError, ValueError, AttributeError):
            return None

    # -- observations --------------------------------------------------------------------------------
    def _filters(self, window: Window, flt: Filter) -> dict[str, Any]:
        params: dict[str, Any] = {"fromStartTime": _iso(window.since), "toStartTime": _iso(window.until)}
        want = kinds(flt)
        if want is not None:
            types = sorted(t for t, k in KINDS.items() if k in want)
            if len(types) == 1 and len(want) == 1:
                params["type"] = types[0]
        names = equals(flt, "name")
        if names and len(names) == 1:
            params["name"] = names[0]
        if wants_errors_only(flt):
            params["level"] = "ERROR"
        return params

    def _observation_pages(self, window: Window, flt: Filter) -> Any:
        params = self._filters(window, flt)
        if kinds(flt) == frozenset({"llm"}) and "kind" not in flt.keys():
            # By default the calls and the retriever and embedding observations that fed them (linked
            # at load; pull.ExactFilter keeps those too): one pass per type, each pushed down.
            for t in RAG_TYPES:
                yield from self._pages({**params, "type": t})
            return
        yield from self._pages(params)

    def _pages(self, params: dict[str, Any]) -> Any:
        if self.v2 is not False:
            first = self._v2_page({**params, "limit": V2_PAGE, "fields": V2_FIELDS,
                                   "expandMetadata": EXPAND_METADATA})
            if first is not None:
                self.v2 = True
                page, cursor = first
                yield page
                while cursor and page:
                    page, cursor = self._v2_page({**params, "limit": V2_PAGE, "fields": V2_FIELDS,
                                                  "expandMetadata": EXPAND_METADATA, "cursor": cursor}) or ([], None)
                    yield page
                return
            self.v2 = False
        n = 1
        while True:
            doc = self.api.get(self._path("/api/public/observations"), "listing observations",
                               params={**params, "page": n, "limit": V1_PAGE})
            page = doc.get("data") or [] if isinstance(doc, dict) else []
            yield page
            total = ((doc.get("meta") or {}).get("totalPages") if isinstance(doc, dict) else None) or 0
            if not page or n >= total:
                return
            n += 1

    def _v2_page(self, params: dict[str, Any]) -> tuple[list[Any], str | None] | None:
        """One v2 page, or None when the server has no v2 endpoint (404)."""
        try:
            doc = self.api.get(self._path("/api/public/v2/observations"), "listing observations", params=params)
        except SourceUsageError as exc:
            if exc.kind == "missing" and self.v2 is None:
                return None
            raise
        page = doc.get("data") or [] if isinstance(doc, dict) else []
        cursor = (doc.get("meta") or {}).get("cursor") if isinstance(doc, dict) else None
        return page, cursor

    def _parents(self, keys: list[Key]) -> list[dict[str, Any]]:
        """Parent observations a filtered pull left out, by id (traces are known already)."""
        rows = []
        for tid, sid in keys:
            trow = self._trace_row(tid)
            if trow is not None and trow.get("span_id") == sid:
                rows.append(trow)
                continue
            try:
                ob = self.api.get(self._path(f"/api/public/observations/{quote(sid, safe='')}"),
                                  "reading a parent observation")
            except SourceUsageError as exc:
                if exc.kind == "missing":
                    continue
                raise
            if isinstance(ob, dict) and ob.get("id"):
                try:
                    rows.append(observation_row(ob, self.traces.get(str(ob.get("traceId"))) or {"id": tid}))
                except (TypeError, ValueError, AttributeError):
                    continue  # it only lends cohort keys; a parent that cannot be read lends none
        return rows

    # -- traces ---------------------------------------------------------------------------------------
    def _need_traces(self, ids: set[str]) -> None:
        unknown = ids - set(self.traces) - self.missing_traces
        if len(unknown) > BY_ID_MAX and not self.listed:
            self._list_traces()
            unknown -= set(self.traces)
        for tid in sorted(unknown):
            try:
                tr = self.api.get(self._path(f"/api/public/traces/{quote(tid, safe='')}"), "reading a trace")
            except SourceUsageError as exc:
                if exc.kind != "missing":
                    raise
                tr = None
            if isinstance(tr, dict) and tr.get("id"):
                self._keep_trace(tr)
            else:
                self.missing_traces.add(tid)

    def _list_traces(self) -> None:
        self.listed = True
        params = {"fromTimestamp": _iso(self.window.since - TRACE_LOOKBACK), "toTimestamp": _iso(self.window.until),
                  "limit": V1_PAGE, "fields": "core,io"}
        n = 1
        while True:
            doc = self.api.get(self._path("/api/public/traces"), "listing traces", params={**params, "page": n})
            page = doc.get("data") or [] if isinstance(doc, dict) else []
            for tr in page:
                if isinstance(tr, dict) and tr.get("id"):
                    self._keep_trace(tr)
            total = ((doc.get("meta") or {}).get("totalPages") if isinstance(doc, dict) else None) or 0
            if not page or n >= total:
                return
            n += 1


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _in_window(row: dict[str, Any], window: Window) -> bool:
    start = row.get("start_time")
    if start is None:
        return False
    t = dt.datetime.fromtimestamp(start / 1e6, dt.UTC)
    return window.since <= t < window.until


def open_source(ref: SourceRef) -> LangfuseSource:
    if not ref.host:
        env_url = os.environ.get("LANGFUSE_BASE_URL") or os.environ.get("LANGFUSE_HOST")
        if not env_url:
            raise SourceUsageError(f"{ref.display}: name the server: langfuse://HOST (or set LANGFUSE_BASE_URL)")
        base = env_url.rstrip("/")
    else:
        base = base_url(ref)
    public = ref.user or os.environ.get("LANGFUSE_PUBLIC_KEY")
    if not public:
        raise SourceUsageError(f"{ref.display}: no public key: langfuse://PUBLIC_KEY@host or set "
                               "LANGFUSE_PUBLIC_KEY", kind="auth")
    if not ref.secret:
        raise SourceUsageError(f"{ref.display}: no secret key: set LANGFUSE_SECRET_KEY (or password_env in "
                               "[sources.NAME] of oncall.toml)", kind="auth")
    api = Api(ref, base, auth=(public, ref.secret), headers={"Accept": "application/json"},
              key_hint=f"the public key and the secret key in {ref.secret_from or '$LANGFUSE_SECRET_KEY'}")
    prefix = "/" + ref.path.strip("/") if ref.path.strip("/") else ""
    return LangfuseSource(ref, api, prefix)


__all__ = ["LangfuseSource", "open_source"]
