#!/usr/bin/env bash
# Tool environments for the exporter tests (tests/test_real_exporters.py): libraries that pin an
# `openai`/`httpx` of their own, or that exist in two versions side by side, each in .envs/<name>.
#
#   .envs/litellm          litellm (pinned; never 1.107.0, 1.82.7 or 1.82.8: compromised releases)
#   .envs/openllmetry-0.62 opentelemetry-instrumentation-openai, current line (G3 gen_ai.input.messages)
#   .envs/openllmetry-0.54 the last line that writes legacy gen_ai.prompt.N.* attributes
#
# Idempotent: an env whose .ready stamp matches its package list is left alone. A registry that is
# slow or down must not fail CI: each env is tried twice (each try bounded to 7 minutes), and on a second failure the env is removed
# and the tests that need it skip with the reason. Always exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
source .ci/lib.sh
OTEL_FILE_EXPORTER="opentelemetry-exporter-otlp-json-file==0.66b1"
env_() { make_env setup-exporters 420 "$@"; }

# LiteLLM SDK + what its `otel` callback needs (SDK and the OTLP JSON file exporter).
env_ litellm "litellm==1.110.2" "opentelemetry-sdk==1.45.2" "$OTEL_FILE_EXPORTER" &
env_ openllmetry-0.62 "opentelemetry-instrumentation-openai==0.62.4" "openai==3.57.0" \
  "opentelemetry-sdk==1.45.2" "$OTEL_FILE_EXPORTER" &
env_ openllmetry-0.54 "opentelemetry-instrumentation-openai==0.54.0" "openai==3.57.0" \
  "opentelemetry-sdk==1.45.2" "$OTEL_FILE_EXPORTER" &
wait
exit 0
