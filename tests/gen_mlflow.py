"""MLflow tracing (openai autolog) over the real `openai` client, then MLflow's own exports of the traces.

Run from .envs/fmt-mlflow (.ci/setup-formats.sh) by tests/test_real_formats.py:

    python tests/gen_mlflow.py --base-url http://127.0.0.1:PORT/v1 --out DIR

The tracking store is SQLite in DIR. Each call of the scenario (tests/instrumented_calls.py) is one
trace whose root `support_ticket` span carries the user and session as MLflow's standard trace
metadata (`mlflow.trace.user`, `mlflow.trace.session`) and tenant/feature/prompt version as tags,
as the MLflow docs show. Writes `trace-N.json` (`Trace.to_json()`) and, by the test, the
`mlflow traces search --output json` CLI's answer.
"""

from __future__ import annotations

import argparse
import os
import sys

import instrumented_calls as calls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.out}/mlflow.db"
    import mlflow
    import openai

    experiment = mlflow.set_experiment("support-bot")
    mlflow.openai.autolog()
    client = openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0)

    trace_ids: list[str] = []

    def traced(fn):
        @mlflow.trace(name="support_ticket", span_type="CHAIN")
        def run() -> None:
            mlflow.update_current_trace(
                metadata={"mlflow.trace.user": calls.USER_ID, "mlflow.trace.session": calls.SESSION_ID},
                tags={"tenant": calls.TENANT, "feature": calls.FEATURE, "prompt_version": calls.PROMPT_VERSION})
            fn()
        run()
        trace_ids.append(mlflow.get_last_active_trace_id())

    traced(lambda: client.chat.completions.create(
        model="gpt-4o-mini", temperature=0.2, max_tokens=64,
        messages=[{"role": "system", "content": calls.SYSTEM}, {"role": "user", "content": calls.QUESTION}]))
    messages = [{"role": "user", "content": calls.TOOL_QUESTION}]
    holder = {}
    traced(lambda: holder.update(first=client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=[calls.WEATHER_TOOL])))
    call = holder["first"].choices[0].message.tool_calls[0]
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": calls.TOOL_RESULT})
    traced(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[calls.WEATHER_TOOL]))

    def stream() -> None:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": calls.STREAM_QUESTION}])
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    traced(stream)

    def fail() -> None:
        try:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": calls.ERROR_QUESTION}],
                extra_headers={"X-Test-Fail": "429", "X-Test-Retry-After": "20"})
        except openai.RateLimitError:
            pass
    traced(fail)

    mlflow.flush_trace_async_logging()  # traces are written to the store in the background
    for i, tid in enumerate(trace_ids):
        with open(f"{args.out}/trace-{i}.json", "w", encoding="utf-8") as fh:
            fh.write(mlflow.get_trace(tid).to_json())
    print(experiment.experiment_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
