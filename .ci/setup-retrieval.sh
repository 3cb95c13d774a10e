#!/usr/bin/env bash
# Tool environments for the retrieval tests (tests/test_real_retrieval.py): a small retriever that
# runs offline (LangChain's in-memory vector store) instrumented by the
# real libraries teams run, each in .envs/<name>, never a project dependency.
#
#   .envs/rag-langchain   langchain-core + langchain-openai under openinference-instrumentation-langchain
#                         (OpenInference RETRIEVER spans), OpenLLMetry's opentelemetry-instrumentation-langchain
#                         and -openai (vector-store task spans, GenAI `embeddings`), langsmith (run_type=retriever)
#                         and langfuse (its LangChain handler: retriever observations over OTLP)
#   .envs/rag-qdrant      qdrant-client (in-memory mode) under OpenLLMetry's opentelemetry-instrumentation-qdrant
#                         and -openai (vector-store spans that record the collection, not the hits)
#
# Idempotent: an env whose .ready stamp matches its package list is left alone. A registry that is
# slow or down must not fail CI: each env is tried twice (each try bounded), and on a second failure
# the env is removed and the tests that need it skip with the reason. Always exits 0.
# Usage: setup-retrieval.sh [NAME...]  (no names: every env)
set -uo pipefail
cd "$(dirname "$0")/.."
source .ci/lib.sh
env_() { make_env setup-retrieval 900 "$@"; }

OTEL="opentelemetry-sdk==1.45.2"
FILE_EXPORTER="opentelemetry-exporter-otlp-json-file==0.66b1"
ASKED=("$@")
run() {  # run NAME REQS... when NAME was asked for
  local name="$1"; shift
  if [ "${#ASKED[@]}" -eq 0 ] || [[ " ${ASKED[*]} " == *" $name "* ]]; then env_ "$name" "$@"; fi
}

run rag-langchain "langchain-core==1.8.1" "langchain-openai==1.7.4" \
  "openinference-instrumentation-langchain==0.1.80" "opentelemetry-instrumentation-langchain==0.62.4" \
  "opentelemetry-instrumentation-openai==0.62.4" "langsmith==0.14.17" "langfuse==5.0.4" "numpy" \
  "$OTEL" "$FILE_EXPORTER"
run rag-qdrant "qdrant-client==1.20.0" "opentelemetry-instrumentation-qdrant==0.62.4" \
  "opentelemetry-instrumentation-openai==0.62.4" "openai==3.63.0" "$OTEL" "$FILE_EXPORTER"
exit 0
