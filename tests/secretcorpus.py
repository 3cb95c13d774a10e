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
    put("otel-console", "console.txt", console_text())

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
