"""LangSmith as a source: `langsmith://PROJECT` (the tracing project, by name).

    LANGSMITH_API_KEY=lsv2_… oncall load langsmith://support-bot --since -2h tenant=acme

The API is the one `langsmith.Client.list_runs` calls (SDK 0.15): `GET /sessions?name=PROJECT`
finds the project's id, then `POST /runs/query` with `{session: [id], start_time, filter, run_type,
select, limit, cursor}` pages through the runs (`{runs: [...], cursors: {next}}`); the next page is
the same body with `cursor` set. The server is `LANGSMITH_ENDPOINT` (the SDK's variable; also
`?endpoint=URL`), default https://api.smith.langchain.com; the key is `LANGSMITH_API_KEY` (or
`LANGCHAIN_API_KEY`, or `[sources.NAME] password_env`), sent as `X-API-Key`, never stored.

Pushed down: the window (`start_time` >= since, and `lt(start_time, "until")` in the filter
language), `run_type: "llm"` when only LLM calls are asked for with `kind=llm` (the mapping's kind is
the run type); by default (no `kind=`) the LLM calls and the retriever and embedding runs that fed
them (`or(eq(run_type, …), …)`: the load links each call to its retrieval), `eq(name, …)` for `name=`, `error: true` for `status=error`/`error=`. Every run goes through
the file importer's own mapping (`ingest.formats.langsmith.run_row`); the cohort keys an LLM run
lacks (tenant, user, session on the root run's metadata) come from its nearest ancestor run,
fetched by id (`id: [...]`) when the window or the run type left it out.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import replace
from typing import Any

from oncall.ingest.formats.langsmith import run_row
from oncall.query.filters import Filter
from oncall.sources.base import Progress, PullStats, SourceRef, SourceUsageError, SpanSink, Window
from oncall.sources.http import Api
from oncall.sources.inherit import Ancestry, Key
from oncall.sources.terms import equals, kinds, wants_errors_only

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
PAGE = 100  # runs per /runs/query page (the API's maximum)
RAG_RUN_TYPES = ("llm", "retriever", "embedding")  # pulled by default: the calls and what fed them
ID_BATCH = 100  # parent runs asked for by id in one query
# What list_runs selects by default, less what oncall never reads (feedback, attachments' URLs).
SELECT = ["completion_cost", "completion_tokens", "dotted_order", "end_time", "error", "events", "extra",
          "first_token_time", "id", "inputs", "name", "outputs", "parent_run_id", "prompt_cost", "prompt_tokens",
          "run_type", "session_id", "start_time", "status", "tags", "total_cost", "total_tokens", "trace_id"]


class LangSmithSource:
    format = "langsmith-api"
    slices = True  # pulled slice by slice, each its own import (pull.load_source): an interrupted pull resumes

    def __init__(self, ref: SourceRef, api: Api, project: str, project_id: str) -> None:
        self.ref = ref
        self.api = api
        self.project = project
        self.project_id = project_id

    def identity(self) -> str:
        return f"{self.ref.display}#{self.api.base}/sessions/{self.project_id}"

    def close(self) -> None:
        self.api.close()

    def pull(self, window: Window, flt: Filter, sink: SpanSink, *, limit: int | None = None,
             progress: Progress | None = None) -> PullStats:
        stats = PullStats()
        ancestry = Ancestry(self._parents)
        body = self._query(window, flt)
        while True:
            page = self.api.post("/runs/query", "querying runs", body)
            runs = page.get("runs") or [] if isinstance(page, dict) else []
            rows = [r for r in (self._row(run, sink) for run in runs) if r is not None]
            stats.rows += len(runs)
            ancestry.resolve(rows)
            for row in rows:
                sink.add(row, None)
            if progress:
                progress(stats.rows)
            cursor = ((page.get("cursors") or {}).get("next") if isinstance(page, dict) else None)
            if not runs or not cursor or getattr(sink, "full", False):
                break
            body = {**body, "cursor": cursor}
        return self.api.account(stats)

    def _query(self, window: Window, flt: Filter) -> dict[str, Any]:
        conds = [f'lt(start_time, "{_iso(window.until)}")']
        names = equals(flt, "name")
        if names:
            conds.append(_any_of("name", names))
        fed_by = kinds(flt) == frozenset({"llm"}) and "kind" not in flt.keys()
        if fed_by:  # the calls and the retrievals that fed them (pull.ExactFilter keeps those too)
            conds.append(_any_of("run_type", RAG_RUN_TYPES))
        body: dict[str, Any] = {"session": [self.project_id], "start_time": _iso(window.since),
                                "filter": conds[0] if len(conds) == 1 else f"and({', '.join(conds)})",
                                "select": SELECT, "limit": PAGE}
        if kinds(flt) == frozenset({"llm"}) and not fed_by:
            body["run_type"] = "llm"
        if wants_errors_only(flt):
            body["error"] = True
        return body

    def _row(self, run: Any, sink: SpanSink) -> dict[str, Any] | None:
        if not isinstance(run, dict) or not run.get("id"):
            sink.problem(None, "not-a-run", f"{self.ref.display}: a run without an id in the answer; skipped")
            return None
        try:
            row = run_row(run)
        except (TypeError, ValueError, AttributeError) as exc:
            sink.problem(None, "bad-run", f"run {run.get('id')!r} cannot be read: {exc}")
            return None
        if not row.get("trace_id") or not row.get("span_id"):
            sink.problem(None, "missing-id", f"run {run.get('id')!r} has no trace or run id; skipped")
            return None
        return row

    def _parents(self, keys: list[Key]) -> list[dict[str, Any]]:
        """The runs with these ids (any time: a root may have begun before the window)."""
        rows = []
        ids = sorted({_uuid(sid) for _, sid in keys})
        for i in range(0, len(ids), ID_BATCH):
            body: dict[str, Any] = {"session": [self.project_id], "id": ids[i:i + ID_BATCH], "select": SELECT,
                                    "limit": PAGE}
            while True:
                page = self.api.post("/runs/query", "reading parent runs", body)
                runs = page.get("runs") or [] if isinstance(page, dict) else []
                for run in runs:
                    if isinstance(run, dict) and run.get("id"):
                        try:
                            rows.append(run_row(run))
                        except (TypeError, ValueError, AttributeError):
                            continue  # reported when the run itself is pulled; here it only lends keys
                cursor = (page.get("cursors") or {}).get("next") if isinstance(page, dict) else None
                if not runs or not cursor:
                    break
                body = {**body, "cursor": cursor}
        return rows


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _any_of(field: str, values: tuple[str, ...]) -> str:
    eqs = [f"eq({field}, {json.dumps(v)})" for v in values]
    return eqs[0] if len(eqs) == 1 else f"or({', '.join(eqs)})"


def _uuid(span_id: str) -> str:
    """The run id as LangSmith spells it (the mapping keeps UUIDs as 32 hex digits)."""
    s = span_id.replace("-", "")
    if len(s) == 32:
        return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"
    return span_id


def endpoint_of(ref: SourceRef) -> str:
    url = ref.params.get("endpoint") or os.environ.get("LANGSMITH_ENDPOINT") or os.environ.get("LANGCHAIN_ENDPOINT")
    return (url or DEFAULT_ENDPOINT).rstrip("/")


def open_source(ref: SourceRef) -> LangSmithSource:
    project = ref.path
    if not project:
        raise SourceUsageError(f"{ref.display}: name the tracing project: langsmith://PROJECT")
    secret = ref.secret or os.environ.get("LANGCHAIN_API_KEY")
    if not secret:
        raise SourceUsageError(f"{ref.display}: no API key: set LANGSMITH_API_KEY (or password_env in "
                               "[sources.NAME] of oncall.toml)", kind="auth")
    ref_secret = ref if ref.secret else _with_secret(ref, secret)
    api = Api(ref_secret, endpoint_of(ref), headers={"X-API-Key": secret, "Accept": "application/json"},
              key_hint=f"the key in {ref.secret_from or '$LANGCHAIN_API_KEY'}")
    try:
        found = api.get("/sessions", f"finding project {project!r}", params={"name": project, "limit": 1})
        if isinstance(found, dict):
            found = [found]
        match = [s for s in found or [] if isinstance(s, dict) and s.get("name") == project and s.get("id")]
        if not match:
            raise SourceUsageError(f"{ref.display}: no tracing project named {project!r} at {api.base}; check the "
                                   "name (langsmith://PROJECT is case-sensitive) and LANGSMITH_ENDPOINT",
                                   kind="missing")
        return LangSmithSource(ref_secret, api, project, str(match[0]["id"]))
    except BaseException:
        api.close()
        raise


def _with_secret(ref: SourceRef, secret: str) -> SourceRef:
    return replace(ref, secret=secret, secret_from="$LANGCHAIN_API_KEY")


__all__ = ["LangSmithSource", "open_source"]
