"""Secrets of every kind, and records carrying them in every place, in every import format.

`SHAPED` secrets are recognisable by their form alone; `NAMED` values are opaque strings that are
secrets only because of the field that holds them. `needles()` is what must never be found again
(for a URL or a header, the password or token part). `build_files()` writes one small file per
import format (and per container of the generic importer) into a directory.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import random
import string
from pathlib import Path
from typing import Any

_rng = random.Random(20261201)


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


_UP = string.ascii_uppercase + string.digits
_HEX = "0123456789abcdef"

PEM_BODY = "\n".join(_rand(64, string.ascii_letters + string.digits + "+/") for _ in range(4))
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\n"
PEM_PKCS8 = ("-----BEGIN PRIVATE KEY-----\n" + _rand(64, string.ascii_letters + "+/") + "\n"
             + _rand(40, string.ascii_letters + string.digits) + "==\n-----END PRIVATE KEY-----")
BASIC_USERPASS = f"svc-user:{_rand(14)}"
BASIC = base64.b64encode(BASIC_USERPASS.encode()).decode()
JWT = (base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=") + "."
       + base64.urlsafe_b64encode(b'{"sub":"1234567890","name":"Jane","iat":1516239022}').decode().rstrip("=")
       + "." + _rand(43, string.ascii_letters + string.digits + "-_"))
URL_PASSWORD = "Pg" + _rand(16)
# issue 23's gaps: a password holding `/` and `#`, a key after an encoded space, a secret-named key in
# URL-encoded JSON, SendGrid, Slack webhooks, `?key=`, ODBC `PWD=`
URL_PASSWORD_SLASH = "Pw/" + _rand(8) + "#" + _rand(8)
PROJECT_KEY_ENCODED = "sk-proj-" + _rand(48)
ENCODED_JSON_SECRET = "ej" + _rand(24)
SLACK_HOOK_TOKEN = _rand(24)
KEY_PARAM = "kp" + _rand(30)
ODBC_PWD = "Od" + _rand(14)

# kind -> the secret as it would appear in text
SHAPED: dict[str, str] = {
    "openai": "sk-" + _rand(48),
    "openai-project": "sk-proj-" + _rand(40, string.ascii_letters + string.digits + "_-") + "T3BlbkFJ" + _rand(20),
    "openai-service-account": "sk-svcacct-" + _rand(60),
    "anthropic": "sk-ant-api03-" + _rand(86, string.ascii_letters + string.digits + "_-") + "AA",
    "google": "AIza" + _rand(35, string.ascii_letters + string.digits + "_-"),
    "aws-access-key-id": "AKIA" + _rand(16, _UP),
    "aws-session-key-id": "ASIA" + _rand(16, _UP),
    "github-pat": "ghp_" + _rand(36),
    "github-oauth": "gho_" + _rand(36),
    "github-server": "ghs_" + _rand(36),
    "github-fine-grained": "github_pat_" + _rand(22) + "_" + _rand(59),
    "slack-bot": "xoxb-" + _rand(12, string.digits) + "-" + _rand(13, string.digits) + "-" + _rand(24),
    "slack-user": "xoxp-" + _rand(12, string.digits) + "-" + _rand(24),
    "stripe": "sk_live_" + _rand(24),
    "stripe-restricted": "rk_test_" + _rand(24),
    "stripe-webhook": "whsec_" + _rand(32),
    "google-oauth": "ya29." + _rand(60, string.ascii_letters + string.digits + "_-"),
    "gitlab": "glpat-" + _rand(20),
    "slack-app": "xapp-1-" + _rand(11, _UP) + "-" + _rand(13, string.digits) + "-" + _rand(40, _HEX),
    "huggingface": "hf_" + _rand(34),
    "groq": "gsk_" + _rand(52),
    "npm": "npm_" + _rand(36),
    "langfuse-public": "pk-lf-" + "-".join(_rand(n, _HEX) for n in (8, 4, 4, 4, 12)),
    "langfuse-secret": "sk-lf-" + "-".join(_rand(n, _HEX) for n in (8, 4, 4, 4, 12)),
    "langsmith": "lsv2_pt_" + _rand(32, _HEX) + "_" + _rand(10, _HEX),
    "jwt": JWT,
    "bearer": "Bearer " + _rand(40, string.ascii_letters + string.digits + "-._~+/"),
    "bearer-lower": "bearer " + _rand(32),
    "basic": "Basic " + BASIC,
    "basic-upper": "BASIC " + base64.b64encode(b"root:" + _rand(10).encode()).decode(),
    "url-password": f"postgres://app:{URL_PASSWORD}@db.internal:5432/orders",
    "url-query": f"https://api.example.com/v1/x?api_key={_rand(24)}&token={_rand(20)}&sig={_rand(30)}",
    "url-access-token": f"https://hooks.example.com/cb?access_token={_rand(30)}&state=ok",
    "pem": PEM,
    "pem-pkcs8": PEM_PKCS8,
    "url-password-slash-hash": f"mysql://app:{URL_PASSWORD_SLASH}@db.internal:3306/orders",
    "url-encoded-space": f"https://api.example.com/v1/x?debug=key%20{PROJECT_KEY_ENCODED}&v=2",
    "url-encoded-json": f"https://api.example.com/v1/q?filter=%7B%22api_key%22%3A%22{ENCODED_JSON_SECRET}%22%7D",
    "sendgrid": "SG." + _rand(22, string.ascii_letters + string.digits + "_-") + "." + _rand(43),
    "url-slack-webhook": "https://hooks.slack.com/services/T" + _rand(8, _UP) + "/B" + _rand(10, _UP) + "/"
                         + SLACK_HOOK_TOKEN,
    "url-key-param": f"https://maps.example.com/maps/api/geocode/json?address=Lyon&key={KEY_PARAM}",
    "odbc-pwd": f"Driver={{ODBC Driver 18}};Server=db;UID=app;PWD={ODBC_PWD};Encrypt=yes",
}
# the pieces of those that must never appear again, where _parts cannot tell
_NEEDLES_OF = {"url-password-slash-hash": [URL_PASSWORD_SLASH], "url-encoded-space": [PROJECT_KEY_ENCODED],
               "url-encoded-json": [ENCODED_JSON_SECRET], "url-slack-webhook": [SLACK_HOOK_TOKEN],
               "url-key-param": [KEY_PARAM], "odbc-pwd": [ODBC_PWD]}

# field name -> an opaque value that is a secret only because of that name
NAMED: dict[str, str] = {
    "api-key": _rand(32, _HEX),                       # Azure OpenAI header
    "ocp-apim-subscription-key": _rand(32, _HEX),     # Azure API Management
    "x-api-key": "xk" + _rand(30),
    "aws_secret_access_key": _rand(40, string.ascii_letters + string.digits + "/+"),
    "password": "pw" + _rand(14),
    "client_secret": "cs" + _rand(30),
    "secret": "se" + _rand(20),
    "token": "tk" + _rand(24),
    "access_token": "at" + _rand(24),
    "apikey": "ak" + _rand(24),
    "private_key": PEM_PKCS8.replace("PRIVATE KEY", "EC PRIVATE KEY"),
    "cookie": f"sid={_rand(26)}; csrftoken={_rand(20)}",
    "set-cookie": f"session={_rand(30)}; Path=/; HttpOnly",
    "authorization": "Token " + _rand(30, string.ascii_lowercase),   # a scheme nobody lists
    "private_key_id": _rand(40, _HEX),                # a GCP service account key file
    "pass": "ps" + _rand(14),
}


def _parts(secret: str) -> list[str]:
    """The pieces of `secret` that must never appear again (long enough not to occur by chance)."""
    for kind, pieces in _NEEDLES_OF.items():
        if SHAPED[kind] == secret:
            return pieces
    if secret.startswith(("Bearer ", "bearer ", "Basic ", "BASIC ", "Token ")):
        return [secret.split(" ", 1)[1]]
    if secret.startswith("postgres://"):
        return [URL_PASSWORD]
    if "?" in secret:
        return [kv.split("=", 1)[1] for kv in secret.split("?", 1)[1].split("&") if kv.split("=")[0] != "state"]
    if "PRIVATE KEY" in secret:
        return [line for line in secret.splitlines() if line and not line.startswith("-----")]
    if "=" in secret and ";" in secret:  # cookies
        return [kv.split("=", 1)[1] for kv in secret.split("; ") if "=" in kv and kv.split("=")[0] not in ("Path",)]
    return [secret]


def needles() -> dict[str, str]:
    """needle -> what it is, for every piece of every secret."""
    out: dict[str, str] = {}
    for kind, s in SHAPED.items():
        for p in _parts(s):
            out[p] = kind
    for name, s in NAMED.items():
        for p in _parts(s):
            out[p] = f"field {name}"
    out[BASIC_USERPASS.split(":")[1]] = "basic password"  # never decoded anywhere either
    return out


def free_text() -> str:
    """A prompt or an output that pastes every shaped secret, each in a sentence."""
    return "\n".join(f"- the {kind} one is {s} (please rotate)" for kind, s in SHAPED.items())


def headers() -> dict[str, str]:
    """An HTTP headers map with every named secret and the shaped auth headers."""
    return {**{k: v for k, v in NAMED.items() if k not in ("password", "client_secret", "secret", "private_key")},
            "Proxy-Authorization": SHAPED["basic"], "X-Upstream-Authorization": SHAPED["bearer"],
            "content-type": "application/json"}


def metadata() -> dict[str, Any]:
    """Nested metadata: headers, credentials, JSON and Python reprs inside strings, URLs, counts."""
    return {
        "headers": headers(),
        "auth": {"password": NAMED["password"], "client_secret": NAMED["client_secret"], "nested": {
            "secret": NAMED["secret"], "private_key": NAMED["private_key"]}},
        "config_json": json.dumps({"api_key": NAMED["apikey"], "aws_secret_access_key": NAMED["aws_secret_access_key"],
                                   "db": SHAPED["url-password"], "inner": json.dumps({"password": NAMED["password"]})}),
        "config_repr": repr({"api_key": NAMED["apikey"], "token": NAMED["token"], "n": 3}),
        "urls": [SHAPED["url-query"], SHAPED["url-access-token"]],
        "db.connection_string": SHAPED["url-password"],
        "cli": f"curl -H 'Authorization: {SHAPED['basic']}' -H 'x-api-key: {NAMED['x-api-key']}' "
               f"-H 'Cookie: {NAMED['cookie']}'",
        "env": f"AWS_SECRET_ACCESS_KEY={NAMED['aws_secret_access_key']}\nPASSWORD={NAMED['password']}\n",
        "token": NAMED["token"], "access_token": NAMED["access_token"],
        # not secrets: must survive
        "max_tokens": 512, "prompt_tokens": 42, "token_count": 7, "finish_reason": "stop", "tokens": 99,
    }


def otel_attributes() -> dict[str, Any]:
    """Flat span attributes as OpenTelemetry instrumentations set them (header attributes are string[])."""
    return {
        "http.request.header.api-key": (NAMED["api-key"],),
        "http.request.header.ocp-apim-subscription-key": NAMED["ocp-apim-subscription-key"],
        "http.request.header.authorization": (SHAPED["basic"],),
        "http.request.header.x-api-key": NAMED["x-api-key"],
        "http.request.header.cookie": (NAMED["cookie"],),
        "http.response.header.set-cookie": (NAMED["set-cookie"],),
        "url.full": SHAPED["url-query"],
        "db.connection_string": SHAPED["url-password"],
        "app.password": NAMED["password"],
        "app.client_secret": NAMED["client_secret"],
        "app.config": json.dumps({"private_key": NAMED["private_key"], "token": NAMED["token"],
                                  "aws_secret_access_key": NAMED["aws_secret_access_key"]}),
        "app.config_repr": repr({"api_key": NAMED["apikey"], "access_token": NAMED["access_token"]}),
        "app.keys": " ".join(v for k, v in SHAPED.items() if not k.startswith(("pem", "url"))),
        "app.pem": SHAPED["pem"],
        "gen_ai.request.max_tokens": 512,
    }


def _otel_app(exporter: Any) -> None:
    """A tiny app under the real OpenTelemetry SDK, its spans full of secrets."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tp = TracerProvider(resource=Resource.create({"service.name": "support-bot",
                                                  "app.deploy_token": NAMED["token"]}))
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    t = tp.get_tracer("app")
    with t.start_as_current_span(f"GET {SHAPED['url-password']}", attributes={
            "tenant.id": "acme", "user.id": "u-42", "session.id": "sess-1", **otel_attributes()}):
        with t.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 42, "gen_ai.usage.output_tokens": 7,
                "gen_ai.request.max_tokens": 512,
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": free_text()}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                    {"type": "text", "content": free_text()}], "finish_reason": "stop"}]),
                **otel_attributes()}) as chat:
            chat.add_event("gen_ai.client.request", {"http.request.header.authorization": SHAPED["bearer"],
                                                     "body": json.dumps(metadata())})
        with t.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT,
                                     attributes={"gen_ai.request.model": "gpt-4o"}) as failing:
            failing.record_exception(RuntimeError(f"Error code: 401 - Incorrect API key provided: {SHAPED['openai']}"))
            failing.set_attribute("error.type", "AuthenticationError")
            failing.set_status(Status(StatusCode.ERROR, f"401 {SHAPED['bearer']} rejected; {SHAPED['url-password']}"))
    tp.shutdown()


def otlp_jsonl_text() -> str:
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter

    buf = io.StringIO()
    _otel_app(FileSpanExporter(stream=buf))
    return buf.getvalue()


def otlp_protobuf_body() -> bytes:
    """The app's spans as an OTLP/HTTP exporter POSTs them: the SDK's own protobuf encoder."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    _otel_app(mem)
    return encode_spans(mem.get_finished_spans()).SerializeToString()


def _plain(v: dict[str, Any]) -> Any:
    for k, x in v.items():
        if k == "arrayValue":
            return [_plain(e) for e in x.get("values") or []]
        if k == "kvlistValue":
            return bare_values(x.get("values") or [])
        if k == "intValue":
            return int(x)
        return x
    return None


def bare_values(doc: Any) -> Any:
    """OTLP/JSON with every attribute value written bare (`{"key": K, "value": ["…"]}`), as writers
    that skip AnyValue emit it; the OTLP reader takes both."""
    if isinstance(doc, list):
        return [bare_values(x) for x in doc]
    if isinstance(doc, dict):
        if doc.keys() == {"key", "value"} and isinstance(doc["value"], dict):
            return {"key": doc["key"], "value": _plain(doc["value"])}
        return {k: bare_values(v) for k, v in doc.items()}
    return doc


def console_text() -> str:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    buf = io.StringIO()
    _otel_app(ConsoleSpanExporter(out=buf))
    return buf.getvalue()


def _chat(content: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"You are a bot. Internal DSN {SHAPED['url-password']}"},
            {"role": "user", "content": content}]


def _completion(i: int) -> dict[str, Any]:
    return {"id": f"chatcmpl-sec{i}", "object": "chat.completion", "created": 1772359200 + i,
            "model": "gpt-4o-2024-11-20",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": free_text()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}}


def _bad_line() -> str:
    """A truncated record quoting a secret: its problem message must not echo it."""
    return '{"id": "broken", "password": "' + NAMED["password"] + '", "note": "' + SHAPED["openai"]


def build_files(d: Path) -> dict[str, Path]:
    """One file per import format (several for generic), each full of secrets. format -> path."""
    d.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(fmt: str, name: str, text: str) -> None:
        p = d / name
        p.write_text(text, encoding="utf-8")
        files[fmt] = p

    otlp = otlp_jsonl_text()
    put("otlp-jsonl", "otlp.jsonl", otlp + _bad_line() + "\n")
    first = json.loads(otlp.splitlines()[0])
    docs = [json.loads(line) for line in otlp.splitlines()]
    first["resourceSpans"] = [rs for doc in docs for rs in doc["resourceSpans"]]
    put("otlp-json", "otlp.json", json.dumps(first, indent=2))
    put("otlp-json:bare", "otlp-bare.json", json.dumps(bare_values(first)))
    put("otel-console", "console.txt", console_text())
    body = otlp_protobuf_body()
    (d / "request.pb").write_bytes(body)
    files["otlp-protobuf"] = d / "request.pb"
    # the Collector file exporter's `format: proto`: each message after its length (4 bytes, big-endian)
    half = len(body) // 2
    (d / "collector.binpb").write_bytes(len(body).to_bytes(4, "big") + body + half.to_bytes(4, "big") + body[:half])
    files["otlp-protobuf:framed"] = d / "collector.binpb"

    md = metadata()
    attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in otel_attributes().items()}
    js = [
        {"name": f"POST {SHAPED['url-query']}", "spanContext": {"traceId": "b" * 32, "spanId": "1" * 16}, "kind": 1,
         "status": {"code": 0}, "startTime": [1770131992, 0], "endTime": [1770131993, 500000000],
         "attributes": {"ai.telemetry.metadata.tenant": "umbrella", **attrs}, "events": []},
        {"name": "ai.generateText.doGenerate", "spanContext": {"traceId": "b" * 32, "spanId": "2" * 16},
         "parentSpanContext": {"traceId": "b" * 32, "spanId": "1" * 16}, "kind": 2,
         "status": {"code": 2, "message": f"401 Unauthorized for {SHAPED['anthropic']}"},
         "startTime": [1770131992, 1000], "endTime": [1770131993, 0],
         "attributes": {"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "gpt-4o",
                        "ai.prompt": json.dumps({"messages": _chat(free_text())}), "ai.response.text": free_text(),
                        "ai.request.headers.x-api-key": NAMED["x-api-key"],
                        "ai.request.headers.authorization": SHAPED["bearer"],
                        "ai.usage.promptTokens": 42, "ai.telemetry.metadata.config": json.dumps(md)},
         "events": []},
    ]
    # A span the importer rejects with a message quoting its name.
    js.append({**js[0], "name": f"GET {SHAPED['url-password']} {SHAPED['github-pat']}",
               "spanContext": {"traceId": "b" * 32, "spanId": ""}})
    put("otel-js-spans", "js-spans.jsonl", "\n".join(json.dumps(s) for s in js) + "\n" + _bad_line() + "\n")

    phoenix = {"name": "llm", "context": {"trace_id": "t-sec", "span_id": "a1"}, "span_kind": "LLM", "parent_id": None,
               "start_time": "2026-07-08T18:00:00Z", "end_time": "2026-07-08T18:00:01.5Z", "status_code": "ERROR",
               "status_message": f"Error code: 401 - key {SHAPED['openai-project']} invalid",
               "attributes": {"llm.input_messages": [{"message.role": "user", "message.content": free_text()}],
                              "llm.output_messages": [{"message.role": "assistant", "message.content": free_text()}],
                              "llm.model_name": "m1", "llm.token_count.prompt": 42,
                              "llm.invocation_parameters": json.dumps({"api_key": NAMED["apikey"], "max_tokens": 512}),
                              "metadata": json.dumps(md), **attrs}}
    put("phoenix", "phoenix.jsonl", json.dumps(phoenix) + "\n" + _bad_line() + "\n")
    # the spans dataframe saved as Parquet: one `attributes.KEY` column per attribute, nested lists kept
    frame = {"name": phoenix["name"], "span_kind": "LLM", "parent_id": None, "start_time": phoenix["start_time"],
             "end_time": phoenix["end_time"], "status_code": "ERROR", "status_message": phoenix["status_message"],
             "context.span_id": "a2", "context.trace_id": "t-sec-pq",
             **{f"attributes.{k}": v for k, v in phoenix["attributes"].items()}}
    _parquet(d / "phoenix-spans.parquet", [frame])
    files["phoenix:parquet"] = d / "phoenix-spans.parquet"
    # the REST API's OTLP form (/spans/otlpv1): snake_case OTLP spans, attributes as key/value lists
    otlp_attrs = {"openinference.span.kind": "LLM", "llm.model_name": "m1", "llm.token_count.prompt": 42,
                  "input.value": json.dumps({"messages": _chat(free_text())}), "output.value": free_text(),
                  "llm.invocation_parameters": json.dumps({"api_key": NAMED["apikey"], "max_tokens": 512}),
                  "metadata": json.dumps(md), **attrs}
    otlp_span = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_span_id": None, "name": "ChatCompletion",
                 "kind": None, "start_time_unix_nano": 1_700_000_000_000_000_000,
                 "end_time_unix_nano": 1_700_000_001_000_000_000,
                 "attributes": [{"key": k, "value": _any_value(v)} for k, v in otlp_attrs.items()],
                 "events": [{"name": "exception", "time_unix_nano": 1_700_000_000_500_000_000, "attributes": [
                     {"key": "exception.message", "value": _any_value(f"401 for {SHAPED['openai-project']}")},
                     {"key": "http.request.header.x-api-key", "value": _any_value(NAMED["x-api-key"])}]}],
                 "status": {"code": 2, "message": f"Error code: 401 - key {SHAPED['groq']} invalid"}}
    put("phoenix:otlpv1", "phoenix-spans-otlp.json", json.dumps({"data": [otlp_span], "next_cursor": None}))

    lf_meta = json.dumps({"attributes": {k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in attrs.items()},
                          "resourceAttributes": {"service.name": "lf-app", "app.password": NAMED["password"]}})
    trace = {"id": "dff173a675b759ce1b70e522b27d6840", "name": f"agent {SHAPED['github-pat']}",
             "timestamp": "2025-08-26T19:40:59.145Z", "environment": "default", "release": None, "version": "0.3.0",
             "userId": "u-7", "sessionId": "s-7", "input": free_text(), "output": None, "metadata": lf_meta,
             "tags": [SHAPED["slack-bot"]], "observations": []}
    obs = [{"id": "1b7200380e3316e0", "traceId": trace["id"], "startTime": "2025-08-26T19:40:59.145Z",
            "endTime": "2025-08-26T19:41:04.988Z", "parentObservationId": None, "type": "GENERATION",
            "name": "chat", "model": "gpt-4o", "input": _chat(free_text()), "output": {"role": "assistant",
                                                                                   "content": free_text()},
            "metadata": lf_meta, "level": "ERROR", "statusMessage": f"auth failed: {SHAPED['bearer']}",
            "usageDetails": {"input": 42, "output": 7, "total": 49}, "modelParameters": {"max_tokens": 512,
                                                                                       "api_key": NAMED["apikey"]}}]
    put("langfuse-trace", "langfuse.trace.json", json.dumps({"trace": trace, "observations": obs}, indent=2))

    lfx = {"id": "obs-sec", "traceId": "tr-sec", "type": "GENERATION", "name": "chat", "model": "gpt-4o",
           "startTime": "2025-06-06T11:31:33.978Z", "endTime": "2025-06-06T11:31:34.606Z",
           "input": json.dumps(_chat(free_text())), "output": json.dumps({"role": "assistant", "content": free_text()}),
           "level": "ERROR", "statusMessage": f"Error code: 401 - {SHAPED['openai']}", "parentObservationId": None,
           "promptName": "support", "promptVersion": 7, "usageDetails": {"input": "42", "output": 7, "total": 49},
           "costDetails": {"total": 0.0005}, "userId": "user_123", "traceName": "t", "metadata": json.dumps(md)}
    put("langfuse-export", "observations.jsonl", json.dumps(lfx) + "\n" + _bad_line() + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(lfx))
    w.writeheader()
    w.writerow({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in {**lfx, "id": "obs-sec-csv"}.items()})
    put("langfuse-export:csv", "observations.csv", buf.getvalue())
    # the blob-storage integration's Parquet: ClickHouse's snake_case columns, maps as JSON text
    blob = {"id": "obs-sec-pq", "trace_id": "tr-sec-pq", "type": "GENERATION", "name": "chat",
            "provided_model_name": "gpt-4o", "start_time": lfx["startTime"], "end_time": lfx["endTime"],
            "input": lfx["input"], "output": lfx["output"], "metadata": json.dumps(md), "level": "ERROR",
            "status_message": lfx["statusMessage"], "parent_observation_id": None,
            "model_parameters": json.dumps({"max_tokens": 512, "api_key": NAMED["apikey"]}),
            "usage_details": json.dumps({"input": 42, "output": 7, "total": 49}), "user_id": "user_123",
            "prompt_name": "support", "prompt_version": 7}
    _parquet(d / "observations.parquet", [blob])
    files["langfuse-export:parquet"] = d / "observations.parquet"

    root, child = "11111111-1111-4111-8111-111111111110", "22222222-2222-4222-8222-222222222220"
    ls = [
        {"id": root, "trace_id": root, "name": "agent", "run_type": "chain", "start_time": 1700000000000,
         "dotted_order": f"20231114T221320000000Z{root}",
         "extra": {"metadata": {"thread_id": "th-1", "user_id": "u-9", "tenant": "acme", **md}},
         "inputs": {"q": free_text(), "headers": headers()}},
        {"id": child, "trace_id": root, "name": "ChatOpenAI", "run_type": "llm", "start_time": "1700000000100",
         "dotted_order": f"20231114T221320000000Z{root}.20231114T221320100000Z{child}",
         "extra": {"metadata": {"ls_model_name": "gpt-4o", "ls_provider": "openai"},
                   "invocation_params": {"api_key": NAMED["apikey"], "openai_api_key": SHAPED["openai"],
                                         "max_tokens": 512}},
         "inputs": {"messages": _chat(free_text())}, "outputs": _completion(1), "total_cost": "0.0125"},
        {"id": child, "trace_id": root, "end_time": 1700000001100,
         "error": f"AuthenticationError: Incorrect API key provided: {SHAPED['openai-service-account']}"},
    ]
    put("langsmith", "runs.jsonl", "\n".join(json.dumps(x) for x in ls) + "\n" + _bad_line() + "\n")
    # the bulk export's Parquet: one merged row per run, nested fields as JSON text
    merged = [ls[0], {**ls[1], **ls[2]}]
    _parquet(d / "runs.parquet", [{k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                                   for k, v in {**r, "start_time": str(r["start_time"]),
                                                "end_time": r.get("end_time")}.items()}
                                  for r in merged])
    files["langsmith:parquet"] = d / "runs.parquet"

    lite = {"id": "lite-1", "call_type": "completion", "status": "failure", "custom_llm_provider": "azure",
            "startTime": 1737710446.5, "endTime": 1737710447.0, "model": "gpt-4o", "response_cost": 0,
            "messages": _chat(free_text()), "response": None,
            "error_str": f"litellm.AuthenticationError: AzureException - header api-key: {NAMED['api-key']} invalid; "
                         f"Authorization: {SHAPED['bearer']}",
            "error_information": {"error_code": "401", "error_class": "AuthenticationError"},
            "metadata": {"user_api_key_team_alias": "acme", "user_api_key": NAMED["apikey"],
                         "headers": headers(), "spend_logs_metadata": {"feature": "search"}, **md},
            "model_parameters": {"max_tokens": 512, "api_key": NAMED["apikey"]},
            "api_base": f"https://x.openai.azure.com/?api-key={NAMED['api-key']}"}
    rr = {"request_id": "req-sec", "timestamp": "2026-03-01T10:00:00Z", "latency_ms": 812,
          "metadata": {"tenant": "globex", "prompt_version": "v3", **md},
          "request": {"model": "gpt-4o", "messages": _chat(free_text()), "headers": headers()},
          "response": _completion(2)}
    put("litellm", "litellm.jsonl", json.dumps(lite) + "\n" + json.dumps(rr) + "\n" + _bad_line() + "\n")

    batch = [{"id": "batch_req_s1", "custom_id": f"r-{SHAPED['stripe']}", "response": {
                  "status_code": 200, "request_id": "abc", "body": _completion(3)}, "error": None},
             {"id": "batch_req_s2", "custom_id": "r2", "response": None,
              "error": {"code": "invalid_api_key", "message": f"Incorrect API key provided: {SHAPED['openai']}"}}]
    put("openai-batch", "batch-output.jsonl", "\n".join(json.dumps(x) for x in batch) + "\n" + _bad_line() + "\n")

    span_attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                  "gen_ai.usage.input_tokens": 42, "gen_ai.prompt": free_text(),
                  "gen_ai.completion": free_text(), **attrs}
    put("span-attributes", "span.attrs.json", json.dumps(span_attrs, indent=2))

    _new_formats(d, files, md, attrs)

    gen = {"request_id": "g-1", "timestamp": "2026-03-01T10:00:00Z", "model": "gpt-4o", "tenant": "acme",
           "user_id": f"svc {SHAPED['aws-access-key-id']}", "latency_ms": 300, "input_tokens": 42, "output_tokens": 7,
           "prompt": free_text(), "output": free_text(), "error": f"upstream said {SHAPED['basic']}",
           "headers": headers(), "meta": md, "max_tokens": 512}
    put("generic", "requests.jsonl", json.dumps(gen) + "\n" + _bad_line() + "\n")
    put("generic:array", "requests.json", json.dumps([{**gen, "request_id": "g-2"}], indent=1))
    buf = io.StringIO()
    # generic CSV is read one physical line per row: multi-line text goes in as a PEM file shows it
    # when pasted into one line (spaces), JSON cells are single-line anyway.
    row = {**{k: (v.replace("\n", " ") if isinstance(v, str) else v) for k, v in gen.items()
              if not isinstance(v, dict)}, "request_id": "g-3",
           "headers": json.dumps(headers()), "meta": json.dumps(md), "authorization": SHAPED["bearer"],
           "password": NAMED["password"], "conn": SHAPED["url-password"], "cfg": repr({"api_key": NAMED["apikey"]})}
    w = csv.DictWriter(buf, fieldnames=list(row))
    w.writeheader()
    w.writerow(row)
    put("generic:csv", "requests.csv", buf.getvalue())
    return files


def _any_value(v: Any) -> dict[str, Any]:
    """An OTLP AnyValue as Phoenix's /spans/otlpv1 writes it: snake_case, every oneof field, unset ones null."""
    out: dict[str, Any] = dict.fromkeys(("array_value", "bool_value", "bytes_value", "double_value", "int_value",
                                         "kvlist_value", "string_value"))
    if isinstance(v, bool):
        out["bool_value"] = v
    elif isinstance(v, int):
        out["int_value"] = v
    elif isinstance(v, float):
        out["double_value"] = v
    elif isinstance(v, (list, tuple)):
        out["array_value"] = {"values": [_any_value(x) for x in v]}
    else:
        out["string_value"] = str(v)
    return out


def _parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = list(dict.fromkeys(k for r in rows for k in r))  # every row's columns (from_pylist takes the first's)
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), path)


def _new_formats(d: Path, files: dict[str, Path], md: dict[str, Any], attrs: dict[str, Any]) -> None:
    """Opik, Braintrust, the OpenAI Agents SDK, MLflow and Logfire: secrets wherever each carries text."""

    def put(fmt: str, name: str, text: str) -> None:
        (d / name).write_text(text, encoding="utf-8")
        files[fmt] = d / name

    completion = _completion(5)
    # -- Opik: an `opik export` trace file, then the SDK's spans batch (a start and its update) ---------------
    tid = "0193c9a4-7e1f-7c2e-9a51-5e2c1d7b0a01"
    trace = {"id": tid, "project_name": "support", "name": f"agent {SHAPED['github-pat']}",
             "start_time": "2026-03-01T10:00:00Z", "end_time": "2026-03-01T10:00:02Z",
             "input": {"messages": _chat(free_text())}, "output": {"answer": free_text()},
             "metadata": {"tenant": "acme", **md}, "tags": [SHAPED["slack-bot"]], "thread_id": "th-sec",
             "error_info": {"exception_type": "AuthenticationError", "message": f"key {SHAPED['openai']} rejected",
                            "traceback": f"Traceback ...\nopenai.AuthenticationError: {SHAPED['bearer']}"}}
    llm = {"id": "0193c9a4-7e1f-7c2e-9a51-5e2c1d7b0a02", "trace_id": tid, "parent_span_id": None,
           "project_name": "support", "name": "chat_completion_create", "type": "llm",
           "start_time": "2026-03-01T10:00:00.100Z", "end_time": "2026-03-01T10:00:01.900Z",
           "input": {"messages": _chat(free_text()), "api_key": NAMED["apikey"], "extra_headers": headers()},
           "output": {"choices": completion["choices"]},
           "metadata": {"model": "gpt-4o", "usage": completion["usage"], "created_from": "openai", **md},
           "model": "gpt-4o", "provider": "openai", "usage": completion["usage"], "tags": [SHAPED["stripe"]]}
    tool = {"id": "0193c9a4-7e1f-7c2e-9a51-5e2c1d7b0a03", "trace_id": tid, "parent_span_id": None,
            "project_name": "support", "name": "lookup", "type": "tool", "start_time": "2026-03-01T10:00:01.950Z",
            "input": {"query": free_text(), "password": NAMED["password"]}}
    tool_end = {**tool, "end_time": "2026-03-01T10:00:01.990Z", "output": {"result": free_text()},
                "error_info": {"exception_type": "PermissionError",
                               "message": f"denied for {SHAPED['aws-access-key-id']}",
                               "traceback": f"token={NAMED['token']}"}}
    put("opik", "opik-trace.jsonl", json.dumps({"trace": trace, "spans": [llm], "attachments": [],
                                                "downloaded_at": "2026-03-01T11:00:00Z", "project_name": "support"})
        + "\n" + json.dumps({"spans": [tool]}) + "\n" + json.dumps({"spans": [tool_end]}) + "\n" + _bad_line() + "\n")

    # -- Braintrust: /logs3 rows (a start, then a merge row) and a fetched row -----------------------------------
    root = {"id": "bt-root", "span_id": "bt-root", "root_span_id": "bt-root", "span_parents": None,
            "span_attributes": {"name": "support-request", "type": "task"}, "input": free_text(),
            "output": free_text(), "metadata": {"tenant": "acme", **md}, "tags": [SHAPED["huggingface"]],
            "metrics": {"start": 1772359200.0, "end": 1772359202.0}, "created": "2026-03-01T10:00:00Z"}
    call = {"id": "bt-llm", "span_id": "bt-llm", "root_span_id": "bt-root", "span_parents": ["bt-root"],
            "span_attributes": {"name": "Chat Completion", "type": "llm"}, "input": _chat(free_text()),
            "metadata": {"model": "gpt-4o", "api_key": NAMED["apikey"], "headers": headers(), "max_tokens": 512},
            "metrics": {"start": 1772359200.1}, "created": "2026-03-01T10:00:00Z"}
    merge = {"id": "bt-llm", "span_id": "bt-llm", "root_span_id": "bt-root", "_is_merge": True,
             "output": completion["choices"],
             "metrics": {"end": 1772359201.9, "prompt_tokens": 42, "completion_tokens": 7, "tokens": 49}}
    failed = {"id": "bt-llm2", "span_id": "bt-llm2", "root_span_id": "bt-root", "span_parents": ["bt-root"],
              "span_attributes": {"name": "Chat Completion", "type": "llm"}, "input": _chat(free_text()),
              "metadata": {"model": "gpt-4o"}, "error": f"AuthenticationError: Incorrect API key provided: "
                                                         f"{SHAPED['openai-service-account']}",
              "metrics": {"start": 1772359201.0, "end": 1772359201.5}}
    put("braintrust", "braintrust-logs.jsonl", json.dumps({"rows": [root, call]}) + "\n" + json.dumps(
        {"rows": [merge]}) + "\n" + json.dumps(failed) + "\n" + _bad_line() + "\n")

    # -- OpenAI Agents SDK: /v1/traces/ingest bodies ----------------------------------------------------------
    atid = "trace_" + "5" * 32
    items = [
        {"object": "trace", "id": atid, "workflow_name": f"Support {SHAPED['gitlab']}", "group_id": "conv-sec",
         "metadata": {"tenant": "acme", "db": SHAPED["url-password"], "password": NAMED["password"]}},
        {"object": "trace.span", "id": "span_" + "a" * 24, "trace_id": atid, "parent_id": None,
         "started_at": "2026-03-01T10:00:00.000000+00:00", "ended_at": "2026-03-01T10:00:03.000000+00:00",
         "span_data": {"type": "agent", "name": "Support", "handoffs": [], "tools": ["lookup"], "output_type": "str"},
         "error": {"message": "Error in agent run", "data": {"error": f"401 {SHAPED['anthropic']}"}}},
        {"object": "trace.span", "id": "span_" + "b" * 24, "trace_id": atid, "parent_id": "span_" + "a" * 24,
         "started_at": "2026-03-01T10:00:00.100000+00:00", "ended_at": "2026-03-01T10:00:01.900000+00:00",
         "span_data": {"type": "generation", "input": _chat(free_text()),
                       "output": [{"role": "assistant", "content": free_text()}], "model": "gpt-4o",
                       "model_config": {"api_key": NAMED["apikey"], "extra_headers": headers(), "max_tokens": 512},
                       "usage": {"input_tokens": 42, "output_tokens": 7}}, "error": None},
        {"object": "trace.span", "id": "span_" + "c" * 24, "trace_id": atid, "parent_id": "span_" + "a" * 24,
         "started_at": "2026-03-01T10:00:02.000000+00:00", "ended_at": "2026-03-01T10:00:02.100000+00:00",
         "span_data": {"type": "function", "name": "lookup", "input": json.dumps({"password": NAMED["password"],
                                                                                   "q": free_text()}),
                       "output": free_text(), "mcp_data": None}, "error": None},
        {"object": "trace.span", "id": "span_" + "d" * 24, "trace_id": atid, "parent_id": "span_" + "a" * 24,
         "started_at": "2026-03-01T10:00:02.200000+00:00", "ended_at": "2026-03-01T10:00:02.900000+00:00",
         "span_data": {"type": "response", "response_id": "resp_sec", "input": [{"role": "user",
                                                                                "content": free_text()}]},
         "error": {"message": "Error getting response", "data": {"error": f"Incorrect API key {SHAPED['openai']}"}}},
    ]
    put("openai-agents", "agents-ingest.jsonl", json.dumps({"data": items}) + "\n" + _bad_line() + "\n")

    # -- MLflow: Trace.to_json() (schema 3), every span attribute JSON-encoded ------------------------------
    def b64(hexid: str) -> str:
        return base64.b64encode(bytes.fromhex(hexid)).decode()

    t_hex = "6" * 32
    mattrs = {"mlflow.spanType": "CHAT_MODEL", "mlflow.traceRequestId": "tr-" + t_hex,
              "mlflow.spanInputs": {"messages": _chat(free_text()), "api_key": NAMED["apikey"], "max_tokens": 512},
              "mlflow.spanOutputs": completion,
              "mlflow.chat.tokenUsage": {"input_tokens": 42, "output_tokens": 7, "total_tokens": 49},
              "gen_ai.request.model": "gpt-4o", **attrs}
    mspans = [
        {"trace_id": b64(t_hex), "span_id": b64("7" * 16), "parent_span_id": None, "name": f"agent {SHAPED['npm']}",
         "start_time_unix_nano": 1772359200000000000, "end_time_unix_nano": 1772359202000000000,
         "status": {"code": "STATUS_CODE_ERROR", "message": f"401 {SHAPED['bearer']}"},
         "events": [{"name": "exception", "time_unix_nano": 1772359201000000000, "attributes": {
             "exception.message": json.dumps(f"Incorrect API key provided: {SHAPED['openai']}"),
             "exception.stacktrace": json.dumps(f"password={NAMED['password']}")}}],
         "attributes": {"mlflow.spanType": json.dumps("AGENT"), "mlflow.traceRequestId": json.dumps("tr-" + t_hex),
                        "mlflow.spanInputs": json.dumps({"question": free_text(), "headers": headers()}),
                        "mlflow.spanOutputs": json.dumps(free_text())}},
        {"trace_id": b64(t_hex), "span_id": b64("8" * 16), "parent_span_id": b64("7" * 16), "name": "chat gpt-4o",
         "start_time_unix_nano": 1772359200100000000, "end_time_unix_nano": 1772359201900000000,
         "status": {"code": "STATUS_CODE_OK", "message": ""}, "events": [],
         "attributes": {k: json.dumps(v) for k, v in mattrs.items()}},
    ]
    info = {"trace_id": "tr-" + t_hex, "client_request_id": "req-sec", "request_time": "2026-03-01T10:00:00Z",
            "execution_duration_ms": 2000, "state": "ERROR", "request_preview": free_text()[:1000],
            "response_preview": free_text()[:1000],
            "trace_metadata": {"mlflow.trace.user": "u-7", "mlflow.trace.session": "s-7", "tenant": "acme",
                               "db": SHAPED["url-password"], "deploy_token": NAMED["token"],
                               "mlflow.trace.tokenUsage": json.dumps({"input_tokens": 42, "output_tokens": 7})},
            "tags": {"mlflow.traceName": "agent", "owner_key": SHAPED["sendgrid"], "feature": "support"}}
    put("mlflow-traces", "mlflow-traces.jsonl", json.dumps({"info": info, "data": {"spans": mspans}}) + "\n"
        + _bad_line() + "\n")

    # -- Logfire: rows of the records table (JSON Lines, CSV and Parquet as the query API hands them) ---------
    lattrs = {"gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
              "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 42,
              "gen_ai.usage.output_tokens": 7, "request_data": {"messages": _chat(free_text()),
                                                                "api_key": NAMED["apikey"]},
              "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": free_text()}]}],
              "gen_ai.output.messages": [{"role": "assistant", "parts": [{"type": "text", "content": free_text()}]}],
              **attrs}
    lrow = {"trace_id": "9" * 32, "span_id": "e" * 16, "parent_span_id": None, "kind": "span",
            "span_name": "Chat Completion with {request_data[model]!r}",
            "message": f"Chat Completion with 'gpt-4o' {SHAPED['google']}", "level": 17,
            "start_timestamp": "2026-03-01T10:00:00.000000Z", "end_timestamp": "2026-03-01T10:00:02.000000Z",
            "attributes": lattrs,
            "otel_events": [{"name": "exception", "timestamp": "2026-03-01T10:00:01Z", "attributes": {
                "exception.message": f"Incorrect API key provided: {SHAPED['openai']}",
                "exception.stacktrace": f"password={NAMED['password']}"}}],
            "otel_status_code": "ERROR", "otel_status_message": f"401 {SHAPED['bearer']}",
            "exception_type": "openai.AuthenticationError", "exception_message": f"key {SHAPED['openai-project']}",
            "is_exception": True, "otel_resource_attributes": {"service.name": "lf-app",
                                                                "app.deploy_token": NAMED["token"]},
            "otel_scope_name": "logfire.openai", "tags": [SHAPED["slack-bot"]]}
    put("logfire", "logfire-records.jsonl", json.dumps(lrow) + "\n" + _bad_line() + "\n")
    flat_row = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in lrow.items()}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(flat_row))
    w.writeheader()
    w.writerow({**flat_row, "span_id": "f" * 16})
    put("logfire:csv", "logfire-records.csv", buf.getvalue())
    _parquet(d / "logfire-records.parquet", [{**flat_row, "span_id": "1" * 16}])
    files["logfire:parquet"] = d / "logfire-records.parquet"
