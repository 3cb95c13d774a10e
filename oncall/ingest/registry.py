"""The importer registry: every format by name, detected from content, loaded lazily.

A format is a module in oncall/ingest/formats/ implementing `contracts.ImportFormat`:

    NAME: str                      # what --format takes
    DESCRIPTION: str               # one line for `oncall load --help` and error messages
    def sniff(head: Head) -> bool  # True if the file's head is in this format (content only)
    def read(path: Path, sink: Sink, options: LoadOptions) -> None   # contracts.Sink

`read` calls sink.add(row, line) for each canonical span row and sink.problem(line, kind, msg)
for each record it cannot use; it raises FormatError only when nothing in the file is usable.
Detection asks formats in ORDER; the first whose sniff() says yes wins, so specific formats come
before general ones (generic JSONL/CSV last).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, cast

from oncall.ingest.contracts import ImportFormat
from oncall.ingest.source import Head
from oncall.redact import redact_text


class FormatError(Exception):
    """A file cannot be imported as the chosen format; the message names file and reason.

    Messages can quote the file (DuckDB's reader errors name the offending line), so they are
    redacted before anyone prints or stores them."""

    def __init__(self, message: str = "") -> None:
        super().__init__(redact_text(str(message)) or "")


@dataclass
class LoadOptions:
    strict: bool = False
    column_map: dict[str, str] = field(default_factory=dict)  # --map canonical=source.path
    extra: dict[str, Any] = field(default_factory=dict)


# (module name under oncall.ingest.formats, format name). Order matters for detection.
ORDER: list[tuple[str, str]] = [
    ("otlp_protobuf", "otlp-protobuf"),  # binary: never claims a text file
    ("otlp", "otlp-json"),
    ("otlp_jsonl", "otlp-jsonl"),
    ("otel_console", "otel-console"),
    ("js_spans", "otel-js-spans"),
    ("openai_agents", "openai-agents"),
    ("mlflow_traces", "mlflow-traces"),
    ("opik", "opik"),
    ("braintrust", "braintrust"),
    ("logfire", "logfire"),
    ("phoenix", "phoenix"),
    ("langfuse", "langfuse-trace"),
    ("langfuse_export", "langfuse-export"),
    ("langsmith", "langsmith"),
    ("litellm", "litellm"),
    ("openai_batch", "openai-batch"),
    ("attributes", "span-attributes"),
    ("not_data", "not-data"),
    ("generic", "generic"),
]

# Modules that recognise files which are not trace data (JSON Schemas, golden files, prose):
# a directory load skips them with a note instead of reporting a problem.
NOT_DATA = "not-data"

_loaded: dict[str, ImportFormat] = {}


def _module(modname: str) -> ImportFormat | None:
    if modname in _loaded:
        return _loaded[modname]
    try:
        mod = importlib.import_module(f"oncall.ingest.formats.{modname}")
    except ModuleNotFoundError as exc:
        if exc.name == f"oncall.ingest.formats.{modname}":
            return None  # format not built yet
        raise
    fmt = cast(ImportFormat, mod)  # a module is the format (contracts.ImportFormat; PEP 544)
    _loaded[modname] = fmt
    return fmt


def available() -> list[tuple[str, str]]:
    """(name, description) of every importable format, in detection order."""
    out = []
    for modname, name in ORDER:
        mod = _module(modname)
        if mod is not None and name != NOT_DATA:
            out.append((mod.NAME, mod.DESCRIPTION))
    return out


def names() -> list[str]:
    return [n for n, _ in available()]


def get(name: str) -> ImportFormat:
    for modname, fname in ORDER:
        if fname == name:
            mod = _module(modname)
            if mod is not None:
                return mod
    raise FormatError(f"unknown format {name!r}; supported: {', '.join(names())}")


def detect(head: Head) -> ImportFormat | None:
    for modname, _ in ORDER:
        mod = _module(modname)
        if mod is None:
            continue
        try:
            if mod.sniff(head):
                return mod
        except Exception:  # a sniffer must never break detection of the others
            continue
    return None
