#!/usr/bin/env bash
# Tool environments for the file-format tests (tests/test_real_formats.py and friends): the libraries
# whose own exports oncall reads, each in .envs/<name>, never a project dependency.
#
#   .envs/fmt-langfuse   langfuse (v3+ SDK: OTel spans with langfuse.* attributes, OTLP/HTTP protobuf)
#   .envs/fmt-agents     openai-agents (the Agents SDK's own trace export to /v1/traces/ingest)
#   .envs/fmt-mlflow     mlflow (Trace.to_json, `mlflow traces` CLI, mlflow.* span attributes)
#   .envs/fmt-phoenix    arize-phoenix + OpenInference (phoenix serve on SQLite; span JSON and the
#                        spans dataframe as Parquet)
#   .envs/fmt-opik       opik (its SDK's REST payloads: traces and spans, created then updated)
#   .envs/fmt-braintrust braintrust (its SDK's log rows, merged by id)
#   .envs/fmt-strands    strands-agents (GenAI per-message span events)
#   .envs/fmt-logfire    logfire (instrument_openai: a streamed call as a request span plus a log)
#
# Idempotent: an env whose .ready stamp matches its package list is left alone. A registry that is
# slow or down must not fail CI: each env is tried twice (each try bounded), and on a second failure
# the env is removed and the tests that need it skip with the reason. Always exits 0.
# Usage: setup-formats.sh [NAME...]  (no names: every env)
set -uo pipefail
cd "$(dirname "$0")/.."
source .ci/lib.sh
env_() { make_env setup-formats 900 "$@"; }

want() { [ "$#" -eq 0 ] || [[ " $* " == *" $NAME "* ]]; }
OTEL="opentelemetry-sdk==1.45.2"
run() {  # run NAME REQS... when NAME was asked for
  NAME="$1"; shift
  if [ "${#ASKED[@]}" -eq 0 ] || [[ " ${ASKED[*]} " == *" $NAME "* ]]; then env_ "$NAME" "$@"; fi
}
ASKED=("$@")

# Two at a time: the machine has two cores and others use them too.
{ run fmt-langfuse "langfuse==5.0.4" "openai==3.57.0" "$OTEL"
  run fmt-agents "openai-agents==0.24.0"
  run fmt-opik "opik==2.2.122"
  run fmt-strands "strands-agents[openai]==1.62.0"
  run fmt-logfire "logfire==5.4.0" "openai==3.57.0" "$OTEL" "opentelemetry-exporter-otlp-json-file==0.66b1"; } &
{ run fmt-mlflow "mlflow==3.17.2" "openai==3.57.0"
  run fmt-phoenix "arize-phoenix==20.26.1" "arize-phoenix-client==3.5.0" "arize-phoenix-otel==0.17.2" \
      "openinference-instrumentation-openai" "openai==3.57.0"
  run fmt-braintrust "braintrust==0.48.1" "openai==3.57.0"; } &
wait
exit 0
