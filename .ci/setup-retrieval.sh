#!/usr/bin/env bash
# Tool environments for the retrieval tests (tests/test_real_retrieval.py): a small retriever that
# runs offline (LangChain's in-memory vector store) instrumented by the
# real libraries teams run, each in .envs/<name>, never a project dependency.
#
#   .envs/rag-langchain   langchain-core + langchain-openai under openinference-instrumentation-langchain
#                         (OpenInference RETRIEVER spans), OpenLLMetry's opentelemetry-instrumentation-langchain
#                         and -openai (vector-store task spans, GenAI `embeddings`), langsmith (run_type=retriever)
#                         and langfuse (its LangChain handler: retriever observations over OTLP)
#
# Idempotent: an env whose .ready stamp matches its package list is left alone. A registry that is
# slow or down must not fail CI: each env is tried twice (each try bounded), and on a second failure
# the env is removed and the tests that need it skip with the reason. Always exits 0.
# Usage: setup-retrieval.sh [NAME...]  (no names: every env)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

make_env() {  # name, then the pip requirements
  local name="$1"; shift
  local dir=".envs/$name" want="$*"
  if [ -f "$dir/.ready" ] && [ "$(cat "$dir/.ready")" = "$want" ]; then
    return 0
  fi
  for attempt in 1 2; do
    rm -rf "$dir"
    if "$PY" -m venv "$dir" \
        && { timeout 900 "$dir/bin/pip" install -q --disable-pip-version-check --timeout 60 "$@" 2>&1 \
               | grep -v '^WARNING: Location .* is ignored' >&2; [ "${PIPESTATUS[0]}" -eq 0 ]; }; then
      printf '%s' "$want" > "$dir/.ready"
      echo "setup-retrieval: $name ready"
      return 0
    fi
    echo "setup-retrieval: installing $name failed (attempt $attempt)" >&2
  done
  rm -rf "$dir"
  echo "setup-retrieval: $name unavailable; its tests will skip" >&2
  return 0
}

OTEL="opentelemetry-sdk==1.45.2"
FILE_EXPORTER="opentelemetry-exporter-otlp-json-file==0.66b1"
ASKED=("$@")
run() {  # run NAME REQS... when NAME was asked for
  local name="$1"; shift
  if [ "${#ASKED[@]}" -eq 0 ] || [[ " ${ASKED[*]} " == *" $name "* ]]; then make_env "$name" "$@"; fi
}

run rag-langchain "langchain-core==1.8.1" "langchain-openai==1.7.4" \
  "openinference-instrumentation-langchain==0.1.80" "opentelemetry-instrumentation-langchain==0.62.4" \
  "opentelemetry-instrumentation-openai==0.62.4" "langsmith==0.14.17" "langfuse==5.0.4" "numpy" \
  "$OTEL" "$FILE_EXPORTER"
exit 0
