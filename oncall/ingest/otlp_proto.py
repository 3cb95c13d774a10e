"""OTLP protobuf trace payloads as OTLP/JSON documents, decoded with the official generated classes.

`oncall receive` gets `ExportTraceServiceRequest` bodies over HTTP; an OTLP `.pb` file holds the
same message. Both are parsed by `opentelemetry-proto`'s classes (C upb underneath) and turned into
the OTLP/JSON form of the spec (hex ids, 64-bit integers as decimal strings, enums as numbers,
camelCase names, defaults left out), which the one OTLP mapping (ingest.formats.otlp) reads: a span
loaded from protobuf and the same span loaded from OTLP/JSON give the same row, and `raw` keeps the
span losslessly in the form a responder can read.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["ProtoDecodeError", "decode_request", "encode_response", "request_to_document"]


class ProtoDecodeError(ValueError):
    """The bytes are not an `ExportTraceServiceRequest`."""


def decode_request(body: bytes) -> dict[str, Any]:
    """An `ExportTraceServiceRequest` (protobuf bytes) as an OTLP/JSON `TracesData` document."""
    try:
        req = ExportTraceServiceRequest.FromString(body)
    except DecodeError as exc:
        raise ProtoDecodeError(f"not an OTLP ExportTraceServiceRequest (protobuf): {exc}") from None
    return request_to_document(req)


def request_to_document(req: ExportTraceServiceRequest) -> dict[str, Any]:
    return {"resourceSpans": [_resource_spans(rs) for rs in req.resource_spans]}


def encode_response(rejected: int = 0, message: str = "") -> bytes:
    """An `ExportTraceServiceResponse`, with `partial_success` only when something was rejected."""
    resp = ExportTraceServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    return resp.SerializeToString()


def _resource_spans(rs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"resource": {"attributes": _attributes(rs.resource.attributes)}}
    if rs.resource.dropped_attributes_count:
        out["resource"]["droppedAttributesCount"] = rs.resource.dropped_attributes_count
    out["scopeSpans"] = [_scope_spans(ss) for ss in rs.scope_spans]
    if rs.schema_url:
        out["schemaUrl"] = rs.schema_url
    return out


def _scope_spans(ss: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    if ss.scope.name:
        scope["name"] = ss.scope.name
    if ss.scope.version:
        scope["version"] = ss.scope.version
    if len(ss.scope.attributes):
        scope["attributes"] = _attributes(ss.scope.attributes)
    out: dict[str, Any] = {"scope": scope, "spans": [_span(s) for s in ss.spans]}
    if ss.schema_url:
        out["schemaUrl"] = ss.schema_url
    return out


def _span(s: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": s.trace_id.hex(), "spanId": s.span_id.hex()}
    if s.trace_state:
        out["traceState"] = s.trace_state
    if s.parent_span_id:
        out["parentSpanId"] = s.parent_span_id.hex()
    if s.flags:
        out["flags"] = s.flags
    out["name"] = s.name
    out["kind"] = s.kind
    out["startTimeUnixNano"] = str(s.start_time_unix_nano)
    out["endTimeUnixNano"] = str(s.end_time_unix_nano)
    out["attributes"] = _attributes(s.attributes)
    if s.dropped_attributes_count:
        out["droppedAttributesCount"] = s.dropped_attributes_count
    if len(s.events):
        out["events"] = [_event(e) for e in s.events]
    if s.dropped_events_count:
        out["droppedEventsCount"] = s.dropped_events_count
    if len(s.links):
        out["links"] = [_link(link) for link in s.links]
    if s.dropped_links_count:
        out["droppedLinksCount"] = s.dropped_links_count
    status: dict[str, Any] = {}
    if s.status.code:
        status["code"] = s.status.code
    if s.status.message:
        status["message"] = s.status.message
    out["status"] = status
    return out


def _event(e: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"timeUnixNano": str(e.time_unix_nano), "name": e.name,
                           "attributes": _attributes(e.attributes)}
    if e.dropped_attributes_count:
        out["droppedAttributesCount"] = e.dropped_attributes_count
    return out


def _link(link: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": link.trace_id.hex(), "spanId": link.span_id.hex(),
                           "attributes": _attributes(link.attributes)}
    if link.trace_state:
        out["traceState"] = link.trace_state
    if link.flags:
        out["flags"] = link.flags
    if link.dropped_attributes_count:
        out["droppedAttributesCount"] = link.dropped_attributes_count
    return out


def _attributes(kvs: Any) -> list[dict[str, Any]]:
    return [{"key": kv.key, "value": _any_value(kv.value)} for kv in kvs]


def _any_value(v: AnyValue) -> dict[str, Any]:
    which = v.WhichOneof("value")
    if which == "string_value":
        return {"stringValue": v.string_value}
    if which == "int_value":
        return {"intValue": str(v.int_value)}  # OTLP/JSON: 64-bit integers as decimal strings
    if which == "bool_value":
        return {"boolValue": v.bool_value}
    if which == "double_value":
        return {"doubleValue": v.double_value}
    if which == "array_value":
        return {"arrayValue": {"values": [_any_value(x) for x in v.array_value.values]}}
    if which == "kvlist_value":
        return {"kvlistValue": {"values": _attributes(v.kvlist_value.values)}}
    if which == "bytes_value":
        return {"bytesValue": base64.b64encode(v.bytes_value).decode("ascii")}
    return {}  # an empty AnyValue
