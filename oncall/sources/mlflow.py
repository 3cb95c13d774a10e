"""An MLflow tracking server as a source: `mlflow://host[:port]/EXPERIMENT` (its name, or its id).

    oncall load mlflow://mlflow.internal:5000/support-bot --since -1h tenant=acme

The endpoints are the ones `MlflowClient.search_traces` calls (mlflow 3.17): the experiment by
name (`GET /api/2.0/mlflow/experiments/get-by-name`, or `…/experiments/get` for an id), then
`POST /api/3.0/mlflow/traces/search` `{locations: [experiment], filter: "trace.timestamp_ms >= …
AND trace.timestamp_ms < …", max_results, order_by, page_token}` for the trace infos, page by page
(`next_page_token`), and `GET /api/3.0/mlflow/traces/batchGet?trace_ids=…` (ten traces a call, as the client
does) for their spans; traces whose spans live in the artifact store instead come from
`GET /ajax-api/2.0/mlflow/get-trace-artifact?request_id=`. Auth: `$MLFLOW_TRACKING_TOKEN` as a
bearer token, or `$MLFLOW_TRACKING_USERNAME` / `$MLFLOW_TRACKING_PASSWORD` (the client's variables).

A trace is one request: the search is on the trace's start (from ten minutes before --since, so
a request that began just before the window still brings its spans), and spans are kept when they
start inside the window, as every source's window is on span start. Every trace goes through the
file format's own mapping (`ingest.formats.mlflow_traces.add_trace`, which reads both the
`Trace.to_json` form and the server's proto form): the trace's user, session, tags and metadata
reach every span, an error recorded only on the trace reaches its calls.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from typing import Any

from oncall.ingest.formats.mlflow_traces import add_trace
from oncall.query.filters import Filter
from oncall.sources.base import Progress, PullStats, SourceRef, SourceUsageError, SpanSink, Window
from oncall.sources.http import Api, base_url
from oncall.sources.inherit import Ancestry, Collect

PAGE = 100  # trace infos per search page
BATCH = 10  # traces per batchGet (the client's _MLFLOW_SEARCH_TRACES_MAX_BATCH_SIZE)
LOOKBACK = dt.timedelta(minutes=10)


class MlflowSource:
    format = "mlflow-api"
    slices = True  # pulled slice by slice, each its own import (pull.load_source): an interrupted pull resumes

    def __init__(self, ref: SourceRef, api: Api, experiment_id: str, experiment: str) -> None:
        self.ref = ref
        self.api = api
        self.experiment_id = experiment_id
        self.experiment = experiment

    def identity(self) -> str:
        return f"{self.ref.display}#{self.api.base}/experiments/{self.experiment_id}"

    def close(self) -> None:
        self.api.close()

    def pull(self, window: Window, flt: Filter, sink: SpanSink, *, limit: int | None = None,
             progress: Progress | None = None) -> PullStats:
        stats = PullStats()
        since_us = int(window.since.timestamp() * 1e6)
        until_us = int(window.until.timestamp() * 1e6)
        lo = int((window.since - LOOKBACK).timestamp() * 1000)
        hi = int(window.until.timestamp() * 1000)
        body: dict[str, Any] = {
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": self.experiment_id}}],
            "filter": f"trace.timestamp_ms >= {lo} AND trace.timestamp_ms < {hi}",
            "max_results": PAGE, "order_by": ["timestamp_ms DESC"]}
        while True:
            page = self.api.post("/api/3.0/mlflow/traces/search", "searching traces", body)
            infos = page.get("traces") or [] if isinstance(page, dict) else []
            ids = [str(i["trace_id"]) for i in infos if isinstance(i, dict) and i.get("trace_id")]
            for i in range(0, len(ids), BATCH):
                for trace in self._traces(ids[i:i + BATCH]):
                    collect = Collect(sink)
                    add_trace(trace, collect, None)
                    stats.rows += len(collect.rows)
                    Ancestry(None).resolve(collect.rows)  # the whole trace is here
                    for row in collect.rows:
                        if since_us <= (row.get("start_time") or 0) < until_us:
                            sink.add(row, None)
                if progress:
                    progress(stats.rows)
                if getattr(sink, "full", False):
                    break
            token = page.get("next_page_token") if isinstance(page, dict) else None
            if not infos or not token or getattr(sink, "full", False):
                break
            body = {**body, "page_token": token}
        return self.api.account(stats)

    def _traces(self, ids: list[str]) -> list[dict[str, Any]]:
        """Complete traces (info and spans) for these ids: batchGet, else each trace's artifact."""
        got = self.api.get("/api/3.0/mlflow/traces/batchGet", "reading trace spans",
                           params=[("trace_ids", tid) for tid in ids])
        traces = [t for t in (got.get("traces") or [] if isinstance(got, dict) else [])
                  if isinstance(t, dict) and t.get("spans")]
        have = {str((t.get("trace_info") or {}).get("trace_id")) for t in traces}
        for tid in ids:
            if tid in have:
                continue
            info = self.api.get(f"/api/3.0/mlflow/traces/{tid}", "reading a trace's info")
            data = self.api.get("/ajax-api/2.0/mlflow/get-trace-artifact", "reading a trace's spans",
                                params={"request_id": tid})
            trace_info = info.get("trace", {}).get("trace_info") if isinstance(info, dict) else None
            if isinstance(trace_info, dict) and isinstance(data, dict):
                traces.append({"trace_info": trace_info, "spans": data.get("spans") or []})
        return traces


def open_source(ref: SourceRef) -> MlflowSource:
    experiment = ref.path.strip("/")
    if not experiment:
        raise SourceUsageError(f"{ref.display}: name the experiment: mlflow://HOST:PORT/EXPERIMENT")
    headers = {"Accept": "application/json"}
    auth = None
    if ref.secret:
        headers["Authorization"] = f"Bearer {ref.secret}"
    elif os.environ.get("MLFLOW_TRACKING_USERNAME") and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
        ref = _with_secret(ref, os.environ["MLFLOW_TRACKING_PASSWORD"])
    api = Api(ref, base_url(ref), headers=headers, auth=auth,
              key_hint=f"{ref.secret_from or '$MLFLOW_TRACKING_TOKEN or $MLFLOW_TRACKING_USERNAME/PASSWORD'}")
    try:
        missing = (f"the tracking server has no experiment {experiment!r}; check the name in "
                   "mlflow://HOST:PORT/EXPERIMENT (`mlflow experiments search` lists them)")
        if experiment.isdigit():
            doc = api.get("/api/2.0/mlflow/experiments/get", f"finding experiment {experiment}",
                          params={"experiment_id": experiment}, not_found=missing)
        else:
            doc = api.get("/api/2.0/mlflow/experiments/get-by-name", f"finding experiment {experiment!r}",
                          params={"experiment_name": experiment}, not_found=missing)
        exp = doc.get("experiment") if isinstance(doc, dict) else None
        if not isinstance(exp, dict) or not exp.get("experiment_id"):
            raise SourceUsageError(f"{ref.display}: {missing}", kind="missing")
        return MlflowSource(ref, api, str(exp["experiment_id"]), experiment)
    except BaseException:
        api.close()
        raise


def _with_secret(ref: SourceRef, secret: str) -> SourceRef:
    return replace(ref, secret=secret, secret_from="$MLFLOW_TRACKING_PASSWORD")


__all__ = ["MlflowSource", "open_source"]
