"""Files that are not trace data: specs, golden files, batch inputs, prose. A directory load skips them.

Export directories and fixture folders carry JSON Schemas (the GenAI message schemas), expected-output
("golden") files such as Langfuse's ChatML adapter results, OpenAI Batch *input* files (requests
with no responses), READMEs and licences. Reporting those as load problems would bury real ones,
so detection asks this module before the generic importer and the loader skips the file with the
reason `describe()` gives. It is deliberately conservative: anything that might be data is not
claimed here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from oncall.ingest.contracts import Sink
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head

NAME = "not-data"
DESCRIPTION = "not trace data (JSON Schema, golden/expected-output file, batch input, prose)"

_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_PROSE_START = re.compile(r"^(#|\*\*|[A-Z][A-Za-z0-9 .,:;'()/-]{2,80}$)")
_CHATML_HEAD = re.compile(r'^\{\s*"[0-9a-f]{16}"\s*:\s*\{\s*"(input|output)"\s*:\s*\{\s*"success"\s*:')


def _json_schema(doc: Any) -> bool:
    return isinstance(doc, dict) and ("$schema" in doc or "$defs" in doc or "definitions" in doc) and (
        "properties" in doc or "$defs" in doc or "type" in doc or "items" in doc)


def _chatml_golden(doc: Any) -> bool:
    """Langfuse ChatML adapter expectations: {span_id: {input|output: {success, data}}}."""
    if not isinstance(doc, dict) or not doc:
        return False
    return all(_HEX16.match(str(k)) and isinstance(v, dict) and v and all(
        isinstance(x, dict) and "success" in x for x in v.values()) for k, v in doc.items())


def _batch_input(obj: Any) -> bool:
    return isinstance(obj, dict) and "custom_id" in obj and "body" in obj and "url" in obj and "response" not in obj


def _prose(head: Head) -> bool:
    text = head.text
    if text is None:
        return False
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped or stripped[0] in "{[":
        return False
    first = stripped.split("\n", 1)[0].strip()
    lines = [ln for ln in stripped.split("\n")[:40] if ln.strip()]
    # CSV headers and log lines have delimiters on every line; prose has sentences.
    delimited = sum(1 for ln in lines if ln.count(",") >= 2 or ln.count("\t") >= 2 or ln.count("|") >= 3)
    words = sum(1 for ln in lines if len(ln.split()) >= 4)
    return bool(_PROSE_START.match(first)) and delimited < len(lines) / 2 and words >= max(1, len(lines) // 3)


def classify(head: Head) -> str | None:
    if head.is_parquet:
        return None
    if head.data[8:12] == b"DUCK":
        return "a DuckDB database file (an incident database?), not an export"
    doc = head.doc
    if _json_schema(doc):
        return "a JSON Schema (a spec)"
    if _chatml_golden(doc) or (doc is None and _CHATML_HEAD.match((head.text or "").lstrip("\ufeff"))):
        return "expected-output (golden) file of Langfuse's ChatML adapter tests"
    if _batch_input(head.first_line_obj) or (isinstance(doc, list) and doc and _batch_input(doc[0])):
        return ("an OpenAI Batch input file (requests only); load the batch output file, "
                "which reads this one for the prompts")
    if doc is None and head.first_line_obj is None and _prose(head):
        return "prose (README, licence or notes)"
    return None


def sniff(head: Head) -> bool:
    return classify(head) is not None


def describe(head: Head) -> str:
    return classify(head) or "not trace data"


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    raise FormatError(f"{path}: not trace data")
