"""Calling the target: `AsyncOpenAI(max_retries=0)` and oncall's own policy (issue 11 item 3).

- Bounded concurrency: a fixed pool of workers pulls items from an iterator, so memory does not
  grow with the number of requests and results are handed on (and written) as they arrive.
- Retries: 429 rate limits, 5xx, timeouts and dropped connections are retried honouring
  `Retry-After`/`retry-after-ms`, with full-jitter exponential backoff otherwise, at most
  `max_attempts` per call and `retry_budget` for the whole run. A 429 with Retry-After pauses
  every worker until then (the limit is the account's, not the request's).
- Fail fast: quota (`insufficient_quota`), auth (401/403) and 404 (model not found, or a wrong
  base_url) stop the run with a message that says which — retrying cannot fix them.
- Explicit timeouts: `httpx.Timeout(connect=…, read=…)` from the target.
- Streaming targets are read as streams; TTFT is the first content or tool-call delta.
- Spend caps: every HTTP attempt reserves its estimated cost first; an attempt that would pass
  `--max-requests` or `--max-cost` is not sent, and the run stops at the cap.
- Agent conversations: tool calls are answered with the recorded results while the model calls the
  same tools with the same arguments; the first different call stops that replay as diverged.
The API key is passed in by the caller (read from the environment) and never stored or printed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from oncall.display import format_cost
from oncall.ingest.messages import messages_text
from oncall.redact import redact_text
from oncall.replay.conversation import Conversation, Step
from oncall.replay.suite import Target


class FatalError(Exception):
    """The run cannot go on (quota, auth, model not found); `kind` says which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class CallError(Exception):
    """One call failed for good (retries exhausted or not retryable)."""

    def __init__(self, kind: str, message: str, attempts: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.attempts = attempts


class CapReached(Exception):
    """A spend cap stops the run before this call is sent."""


MAX_ANSWER_CHARS = 4_000_000  # an answer longer than this is cut, with a mark (one runaway answer is not kept whole)


def cut_answer(text: str | None, limit: int = MAX_ANSWER_CHARS, total: int | None = None) -> str | None:
    """`text` cut at `limit` characters with a mark saying so (`total`: the answer's full length)."""
    if text is None or (len(text) <= limit and total is None):
        return text
    full = total if total is not None else len(text)
    return text[:limit] + f"\n[oncall: answer cut at {limit:,} of {full:,} characters]"


class BadAnswer(Exception):
    """The target answered 200 with something that is not a chat completion (an HTML page from a
    proxy, JSON of another shape, a body cut short): that request's error, retried within the budget."""


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text[:120] + ("…" if len(text) > 120 else "")


def check_completion(resp: Any) -> None:
    """Raise BadAnswer unless `resp` reads as a chat.completion (the SDK returns whatever the body was)."""
    from openai.types.chat import ChatCompletion

    if not isinstance(resp, ChatCompletion):
        raise BadAnswer(f"the target answered 200 with {type(resp).__name__} content, not a chat completion: "
                        f"{_excerpt(resp)!r}")
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices or any(
            getattr(c, "message", None) is None or not hasattr(c.message, "content") for c in choices):
        raise BadAnswer(f"the target answered 200 with JSON that is not a chat completion (choices: "
                        f"{_excerpt(choices)}): {_excerpt(resp.model_dump(exclude_none=True))!r}")


@dataclass
class Policy:
    max_answer_chars: int = MAX_ANSWER_CHARS
    max_attempts: int = 5
    retry_budget: int = 50
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After fails the call rather than stall the run


@dataclass
class Counters:
    planned: int = 0
    done: int = 0
    failed: int = 0
    diverged: int = 0
    unreplayable: int = 0  # requests (each stands for `repeat` items of `planned`)
    repeat: int = 1
    retried: int = 0
    requests: int = 0  # HTTP attempts sent
    spent: float = 0.0
    reserved: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("started", "reserved")}


@dataclass
class Caps:
    max_requests: int | None = None
    max_cost: float | None = None
    hit: str | None = None  # which cap stopped the run

    def reserve(self, c: Counters, estimate: float) -> None:
        if self.max_requests is not None and c.requests >= self.max_requests:
            self.hit = self.hit or f"--max-requests {self.max_requests} reached"
            raise CapReached(self.hit)
        if self.max_cost is not None and c.spent + c.reserved + estimate > self.max_cost:
            self.hit = self.hit or f"--max-cost ${self.max_cost:g} reached (spent {format_cost(c.spent)})"
            raise CapReached(self.hit)
        c.requests += 1
        c.reserved += estimate


@dataclass
class CallResult:
    message: dict[str, Any]  # the assistant message as chat.completions returns it
    finish_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    served_model: str | None
    response_id: str | None
    latency_ms: float
    ttft_ms: float | None
    attempts: int
    cost: float | None


@dataclass
class Outcome:
    """What one replay of one conversation produced (one result row)."""

    status: str  # ok | error | diverged
    output_text: str | None = None
    output_message: dict[str, Any] | None = None
    finish_reason: str | None = None
    served_model: str | None = None
    response_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost: float | None = None
    attempts: int = 0
    steps: int = 0
    diverged: str | None = None
    error_kind: str | None = None
    error: str | None = None
    judge: dict[str, Any] | None = None


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return float(ra)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(ra).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _error_text(exc: Any, secret: str | None = None) -> str:
    """The server's error message, safe to store and print: credential patterns redacted, and the key
    itself removed whatever its shape (a gateway may echo it back in its 401 message)."""
    body = getattr(exc, "body", None)
    msg = str((body.get("message") if isinstance(body, dict) else None) or exc)
    if secret:
        msg = msg.replace(secret, "[REDACTED]")
    return redact_text(msg) or ""


def call_signature(call: dict[str, Any]) -> tuple[str, Any]:
    """(name, parsed arguments): two calls are the same call when these are equal."""
    fn = call.get("function") or call
    args = fn.get("arguments")
    try:
        parsed = json.loads(args) if isinstance(args, str) else args
    except ValueError:
        parsed = (args or "").strip()
    return str(fn.get("name")), parsed


def describe_calls(calls: list[dict[str, Any]]) -> str:
    if not calls:
        return "no tool"
    out = []
    for c in calls:
        fn = c.get("function") or c
        out.append(f"{fn.get('name')}({fn.get('arguments')})")
    return ", ".join(out)


class Engine:
    def __init__(self, target: Target, api_key: str | None, *, concurrency: int, policy: Policy | None = None,
                 caps: Caps | None = None, counters: Counters | None = None, stream: bool | None = None) -> None:
        import httpx2
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        self.target = target
        self.concurrency = max(1, concurrency)
        self.policy = policy or Policy()
        self.caps = caps or Caps()
        self.c = counters or Counters()
        self.stream = target.stream if stream is None else stream
        timeout = httpx2.Timeout(connect=target.connect_timeout, read=target.read_timeout, write=30.0, pool=None)
        self._http = DefaultAsyncHttpxClient(
            timeout=timeout, limits=httpx2.Limits(max_connections=self.concurrency + 4,
                                                  max_keepalive_connections=self.concurrency))
        # No key (a local vLLM/Ollama): the client insists on one; send a placeholder, never a real secret.
        self.client = AsyncOpenAI(base_url=target.base_url, api_key=api_key or "no-key", max_retries=0,
                                  timeout=timeout, http_client=self._http,
                                  default_query=target.default_query or None)
        self._pause_until = 0.0
        self._retry_budget = self.policy.retry_budget
        self._secret = api_key if api_key and len(api_key) >= 6 else None

    async def aclose(self) -> None:
        await self.client.close()

    # -- one call, with the policy ------------------------------------------------------------------------
    async def call(self, messages: list[dict[str, Any]], params: dict[str, Any], *, model: str | None = None,
                   estimate: float = 0.0) -> CallResult:
        import httpx2
        import openai

        model = model or self.target.model
        attempts = 0
        while True:
            wait = self._pause_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self.caps.reserve(self.c, estimate)
            attempts += 1
            try:
                try:
                    res = await (self._stream(messages, params, model) if self.stream
                                 else self._once(messages, params, model))
                finally:
                    self.c.reserved -= estimate
                res.attempts = attempts
                res.cost = self.target.cost(res.input_tokens, res.output_tokens)
                if res.cost is not None:
                    self.c.spent += res.cost
                return res
            except openai.RateLimitError as exc:
                if "insufficient_quota" in (str(getattr(exc, "code", "")), str(getattr(exc, "type", ""))) or \
                        "insufficient_quota" in str(exc):
                    raise FatalError("quota", f"target {self.target.name}: out of quota (insufficient_quota): "
                                     f"{_error_text(exc, self._secret)}") from None
                kind, retry_after, text = "rate_limit", _retry_after(exc), _error_text(exc, self._secret)
            except openai.AuthenticationError as exc:
                raise FatalError("auth", f"target {self.target.name}: authentication failed (401) with the key from "
                                 f"${self.target.api_key_env or '(no api_key_env)'}: {_error_text(exc, self._secret)}") from None
            except openai.PermissionDeniedError as exc:
                raise FatalError("auth", f"target {self.target.name}: permission denied (403): "
                                 f"{_error_text(exc, self._secret)}") from None
            except openai.NotFoundError as exc:
                code = str(getattr(exc, "code", "") or "")
                if code == "model_not_found" or "model" in _error_text(exc, self._secret).lower():
                    raise FatalError("model_not_found", f"target {self.target.name}: model {model!r} not found at "
                                     f"{self.target.base_url} (404): {_error_text(exc, self._secret)}") from None
                raise FatalError("not_found", f"target {self.target.name}: {self.target.base_url} answered 404 "
                                 f"(is base_url right?): {_error_text(exc, self._secret)}") from None
            except openai.InternalServerError as exc:
                kind, retry_after, text = "server", _retry_after(exc), f"{exc.status_code}: {_error_text(exc, self._secret)}"
            except openai.APIStatusError as exc:  # 400, 409, 422: the request itself; retrying will not help
                raise CallError("client", f"{exc.status_code}: {_error_text(exc, self._secret)}", attempts) from None
            except openai.APITimeoutError:
                kind, retry_after, text = "timeout", None, "request timed out"
            except (openai.APIConnectionError, httpx2.TransportError, _StreamCut) as exc:
                kind, retry_after, text = "connection", None, _error_text(exc, self._secret) or type(exc).__name__
            except (BadAnswer, json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                text = str(exc) if isinstance(exc, BadAnswer) else f"the target answered 200 with a body that is " \
                    f"not valid JSON ({exc})"
                kind, retry_after, text = "bad_response", None, redact_text(text.replace(self._secret or "\0", "[REDACTED]"))
            if attempts >= self.policy.max_attempts or self._retry_budget <= 0:
                why = "retry budget spent" if self._retry_budget <= 0 else f"{attempts} attempts"
                raise CallError(kind, f"{text} ({why})", attempts)
            if retry_after is not None and retry_after > self.policy.max_retry_after:
                raise CallError(kind, f"{text} (Retry-After {retry_after:g} s is longer than "
                                f"{self.policy.max_retry_after:g} s)", attempts)
            self._retry_budget -= 1
            self.c.retried += 1
            if retry_after is not None:
                delay = retry_after + random.uniform(0, 0.1 * retry_after + 0.05)
                if kind == "rate_limit":
                    self._pause_until = max(self._pause_until, time.monotonic() + retry_after)
            else:
                delay = random.uniform(0, min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempts - 1)))
            await asyncio.sleep(delay)

    # The typed `chat.completions.create` runs every message through the SDK's TypedDict transforms:
    # 40 % of the client's CPU per request (measured: 1.5 vs 0.9 s for 500 calls), and replay's
    # messages are already canonical chat JSON. `client.post` is the same client (auth, timeouts,
    # max_retries=0, error classes, response and stream types) without that transform.
    async def _once(self, messages: list[dict[str, Any]], params: dict[str, Any], model: str) -> CallResult:
        from openai.types.chat import ChatCompletion

        t0 = time.monotonic()
        resp = await self.client.post("/chat/completions", cast_to=ChatCompletion,
                                      body={"model": model, "messages": messages, **params})
        latency = (time.monotonic() - t0) * 1000.0
        check_completion(resp)
        choice = resp.choices[0] if resp.choices else None
        msg: dict[str, Any] = {"role": "assistant", "content": None}
        if choice is not None:
            m = choice.message
            msg["content"] = cut_answer(m.content, self.policy.max_answer_chars) \
                if isinstance(m.content, str) else m.content
            if m.tool_calls:
                msg["tool_calls"] = [{"id": tc.id, "type": "function",
                                      "function": {"name": tc.function.name, "arguments": tc.function.arguments}}
                                     for tc in m.tool_calls]
        u = resp.usage
        return CallResult(message=msg, finish_reason=choice.finish_reason if choice else None,
                          input_tokens=u.prompt_tokens if u else None, output_tokens=u.completion_tokens if u else None,
                          served_model=resp.model, response_id=resp.id, latency_ms=latency, ttft_ms=None,
                          attempts=0, cost=None)

    async def _stream(self, messages: list[dict[str, Any]], params: dict[str, Any], model: str) -> CallResult:
        from openai import AsyncStream
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        t0 = time.monotonic()
        stream = await self.client.post(
            "/chat/completions", cast_to=ChatCompletion, stream=True, stream_cls=AsyncStream[ChatCompletionChunk],
            body={"model": model, "messages": messages, **params, "stream": True,
                  "stream_options": {"include_usage": True}})
        ttft = None
        content: list[str] = []
        kept = received = 0  # characters of content kept and received (past the limit, only counted)
        calls: dict[int, dict[str, Any]] = {}
        finish = served = rid = None
        usage = None
        try:
            async for chunk in stream:
                served = chunk.model or served
                rid = chunk.id or rid
                if chunk.usage is not None:
                    usage = chunk.usage
                for ch in chunk.choices or []:
                    d = ch.delta
                    if d is not None and (d.content or d.tool_calls) and ttft is None:
                        ttft = (time.monotonic() - t0) * 1000.0
                    if d is not None and d.content:
                        received += len(d.content)
                        if kept < self.policy.max_answer_chars:
                            piece = d.content[: self.policy.max_answer_chars - kept]
                            content.append(piece)
                            kept += len(piece)
                    for tc in (d.tool_calls or []) if d is not None else []:
                        slot = calls.setdefault(tc.index, {"id": None, "type": "function",
                                                           "function": {"name": "", "arguments": ""}})
                        if tc.id:
                            slot["id"] = tc.id
                        if tc.function is not None:
                            slot["function"]["name"] += tc.function.name or ""
                            slot["function"]["arguments"] += tc.function.arguments or ""
                    if ch.finish_reason:
                        finish = ch.finish_reason
        finally:
            await stream.close()
        if finish is None:
            raise _StreamCut("the stream ended before the answer finished (no finish_reason)")
        text = "".join(content) if content else None
        if received > kept:
            text = cut_answer(text, kept, total=received)
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            msg["tool_calls"] = [calls[i] for i in sorted(calls)]
        return CallResult(message=msg, finish_reason=finish,
                          input_tokens=usage.prompt_tokens if usage else None,
                          output_tokens=usage.completion_tokens if usage else None, served_model=served,
                          response_id=rid, latency_ms=(time.monotonic() - t0) * 1000.0, ttft_ms=ttft, attempts=0,
                          cost=None)

    # -- one conversation, with its recorded tool steps -------------------------------------------------
    async def replay(self, conv: Conversation, params: dict[str, Any], *, estimate: float = 0.0) -> Outcome:
        messages = [dict(m) for m in conv.prefix]
        out = Outcome(status="ok", input_tokens=0, output_tokens=0, cost=None, latency_ms=0.0)
        t0 = time.monotonic()
        per_call = estimate / (1 + len(conv.steps))
        for step_no in range(1, len(conv.steps) + 2):
            try:
                res = await self.call(messages, params, estimate=per_call)
            except CallError as exc:
                out.status, out.error_kind, out.error = "error", exc.kind, str(exc)
                out.attempts += exc.attempts
                out.steps = step_no
                break
            _add(out, res)
            out.steps = step_no
            calls = res.message.get("tool_calls") or []
            if step_no <= len(conv.steps):
                rec: Step = conv.steps[step_no - 1]
                if [call_signature(c) for c in calls] != [call_signature(c) for c in rec.calls]:
                    out.status = "diverged"
                    got = f"called {describe_calls(calls)}" if calls else "answered without a tool call"
                    out.diverged = f"diverged at step {step_no}: {got} where the recording called {describe_calls(rec.calls)}"
                    _final(out, res)
                    break
                messages.append(res.message)
                for c, r in zip(calls, rec.results, strict=True):  # the recorded result, under the new call id
                    messages.append({"role": "tool", "tool_call_id": c.get("id"), "content": r.get("content") or ""})
                continue
            _final(out, res)
            orig_calls = conv.original.tool_calls
            if orig_calls and [call_signature(c) for c in calls] != [call_signature(c) for c in orig_calls]:
                got = f"called {describe_calls(calls)}" if calls else "answered without a tool call"
                out.status = "diverged"
                out.diverged = f"diverged at step {step_no}: {got} where the recording called {describe_calls(orig_calls)}"
        out.latency_ms = (time.monotonic() - t0) * 1000.0
        return out

    # -- the pool ---------------------------------------------------------------------------------------------
    async def run_pool(self, items: Iterator[Any], work: Callable[[Any], Any]) -> None:
        """`concurrency` workers each take the next item and await `work(item)`; the first FatalError
        or CapReached stops every worker from taking more (in-flight work is cancelled on fatal)."""
        stop: list[BaseException] = []

        async def worker() -> None:
            while not stop:
                try:
                    item = next(items)
                except StopIteration:
                    return
                try:
                    await work(item)
                except (FatalError, CapReached) as exc:
                    stop.append(exc)
                    return
                except Exception as exc:  # noqa: BLE001 - `work` records per-request errors; this is the run's
                    stop.append(FatalError("internal", f"replay stopped on an error in oncall: "
                                                       f"{type(exc).__name__}: {exc}"))
                    return

        tasks = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(isinstance(e, FatalError) for e in stop):
                    for t in pending:
                        t.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        fatal = next((e for e in stop if isinstance(e, FatalError)), None)
        if fatal is not None:
            raise fatal
        if stop:
            raise stop[0]


class _StreamCut(Exception):
    pass


def _add(out: Outcome, res: CallResult) -> None:
    out.attempts += res.attempts
    if res.input_tokens is not None:
        out.input_tokens = (out.input_tokens or 0) + res.input_tokens
    if res.output_tokens is not None:
        out.output_tokens = (out.output_tokens or 0) + res.output_tokens
    if res.cost is not None:
        out.cost = (out.cost or 0.0) + res.cost
    if out.ttft_ms is None and res.ttft_ms is not None:
        out.ttft_ms = res.ttft_ms
    out.served_model = res.served_model
    out.response_id = res.response_id


def _final(out: Outcome, res: CallResult) -> None:
    out.output_message = res.message
    out.output_text = messages_text([res.message]) if (res.message.get("content") or res.message.get("tool_calls")) \
        else None
    out.finish_reason = res.finish_reason
