"""Arize Phoenix as a source: `phoenix://host[:port]/PROJECT` (the project's name or id; `default`
when none is given).

    oncall load phoenix://localhost:6006/support-bot --since -1h model=gpt-4o

The endpoint is Phoenix's REST `GET /v1/projects/{project}/spans` (arize-phoenix 20.26:
`start_time` inclusive and `end_time` exclusive on the span's start, `limit` up to 1000,
`next_cursor` paging, `span_kind`, `name`, `span_id` filters), whose span JSON is what
`phoenix.client`'s `spans.get_spans` returns and what the phoenix file format reads: every span goes
through `ingest.formats.phoenix.add_record`, one mapping for a file and the API. With
`PHOENIX_API_KEY` set (a Phoenix with auth) it is sent as `Authorization: Bearer`.

Pushed down: the window, `span_kind=LLM` and `UNKNOWN` when only LLM calls are asked for (a span
Phoenix has no OpenInference kind for may still be a GenAI call), `name=`. The cohort keys the
LLM spans lack (OpenInference puts session, user and metadata on the application's root span)
come from their nearest ancestor, fetched by `span_id` when the pull left it out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from oncall.ingest.formats.phoenix import add_record
from oncall.query.filters import Filter
from oncall.sources.base import Progress, PullStats, SourceRef, SpanSink, Window
from oncall.sources.http import Api, base_url
from oncall.sources.inherit import Ancestry, Collect, Key
from oncall.sources.terms import equals, kinds

PAGE = 1000  # the endpoint's maximum
ID_BATCH = 50  # span ids per ancestor request (they travel in the query string)


class PhoenixSource:
    format = "phoenix-api"
    slices = True  # pulled slice by slice, each its own import (pull.load_source): an interrupted pull resumes

    def __init__(self, ref: SourceRef, api: Api, project: str) -> None:
        self.ref = ref
        self.api = api
        self.project = project
        self.spans_path = f"/v1/projects/{quote(project, safe='')}/spans"

    def identity(self) -> str:
        return f"{self.ref.display}#{self.api.base}{self.spans_path}"

    def close(self) -> None:
        self.api.close()

    def pull(self, window: Window, flt: Filter, sink: SpanSink, *, limit: int | None = None,
             progress: Progress | None = None) -> PullStats:
        stats = PullStats()
        ancestry = Ancestry(self._parents)
        params: list[tuple[str, Any]] = [("start_time", _iso(window.since)), ("end_time", _iso(window.until)),
                                         ("limit", PAGE), ("sort", "start_time"), ("order", "desc")]
        if kinds(flt) == frozenset({"llm"}):
            params += [("span_kind", "LLM"), ("span_kind", "UNKNOWN")]
        for name in equals(flt, "name") or ():
            params.append(("name", name))
        cursor = None
        while True:
            page = self._get(params + ([("cursor", cursor)] if cursor else []), "listing spans")
            records = page.get("data") or [] if isinstance(page, dict) else []
            stats.rows += len(records)
            collect = Collect(sink)
            for rec in records:
                add_record(rec, None, collect)
            ancestry.resolve(collect.rows)
            for row in collect.rows:
                sink.add(row, None)
            if progress:
                progress(stats.rows)
            cursor = page.get("next_cursor") if isinstance(page, dict) else None
            if not records or not cursor or getattr(sink, "full", False):
                break
        return self.api.account(stats)

    def _get(self, params: list[tuple[str, Any]], what: str) -> Any:
        return self.api.get(self.spans_path, what, params=params,
                            not_found=f"Phoenix has no project {self.project!r}; check the name in "
                                      "phoenix://HOST:PORT/PROJECT (the Projects page lists them)")

    def _parents(self, keys: list[Key]) -> list[dict[str, Any]]:
        """The spans with these ids, at any time (a root may have begun before the window)."""
        ids = sorted({sid for _, sid in keys})
        collect = Collect(None)  # an ancestor that cannot be read lends no keys: nothing to report
        for i in range(0, len(ids), ID_BATCH):
            params: list[tuple[str, Any]] = [("limit", PAGE)] + [("span_id", s) for s in ids[i:i + ID_BATCH]]
            cursor = None
            while True:
                page = self._get(params + ([("cursor", cursor)] if cursor else []), "reading parent spans")
                for rec in page.get("data") or [] if isinstance(page, dict) else []:
                    add_record(rec, None, collect)
                cursor = page.get("next_cursor") if isinstance(page, dict) else None
                if not cursor:
                    break
        return collect.rows


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


def open_source(ref: SourceRef) -> PhoenixSource:
    headers = {"Accept": "application/json"}
    if ref.secret:
        headers["Authorization"] = f"Bearer {ref.secret}"
    api = Api(ref, base_url(ref, default_port=None), headers=headers,
              key_hint=f"the key in {ref.secret_from or '$PHOENIX_API_KEY'} (Phoenix with auth enabled needs one)")
    return PhoenixSource(ref, api, ref.path.strip("/") or "default")


__all__ = ["PhoenixSource", "open_source"]
