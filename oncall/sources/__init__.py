"""Remote sources: the incident where the traces live (design §12).

    oncall load clickhouse://ch:8123/otel?table=otel_traces --since -6h tenant=acme
    oncall load @prod --since 01:00 --until 02:00

`registry` turns a URL or @NAME into a SourceRef (secrets from the environment or oncall.toml,
never the URL) and opens the module that reads it; `pull.load_source` writes one pull into the
incident through the file load path; `base` is the contract a new source implements.
"""

from oncall.sources.base import (
    PullStats,
    Source,
    SourceError,
    SourceRef,
    SourceUsageError,
    SpanSink,
    Window,
)
from oncall.sources.registry import SCHEMES, is_source_ref, open_source, parse_ref

__all__ = ["SCHEMES", "PullStats", "Source", "SourceError", "SourceRef", "SourceUsageError", "SpanSink", "Window",
           "is_source_ref", "open_source", "parse_ref"]
