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
PY="${PYTHON:-python3}"
OTEL_FILE_EXPORTER="opentelemetry-exporter-otlp-json-file==0.66b1"

make_env() {  # name, then the pip requirements
  local name="$1"; shift
  local dir=".envs/$name" want="$*"
  if [ -f "$dir/.ready" ] && [ "$(cat "$dir/.ready")" = "$want" ]; then
    return 0
  fi
  for attempt in 1 2; do
    rm -rf "$dir"
    # (pip's notes about configured-but-absent local index folders are noise here)
    if "$PY" -m venv "$dir" \
        && { timeout 420 "$dir/bin/pip" install -q --disable-pip-version-check --timeout 60 "$@" 2>&1 \
               | grep -v '^WARNING: Location .* is ignored' >&2; [ "${PIPESTATUS[0]}" -eq 0 ]; }; then
      printf '%s' "$want" > "$dir/.ready"
      echo "setup-exporters: $name ready"
      return 0
    fi
    echo "setup-exporters: installing $name failed (attempt $attempt)" >&2
  done
  rm -rf "$dir"
  echo "setup-exporters: $name unavailable; its tests will skip" >&2
  return 0
}

# LiteLLM SDK + what its `otel` callback needs (SDK and the OTLP JSON file exporter).
make_env litellm "litellm==1.110.2" "opentelemetry-sdk==1.45.2" "$OTEL_FILE_EXPORTER" &
make_env openllmetry-0.62 "opentelemetry-instrumentation-openai==0.62.4" "openai==3.57.0" \
  "opentelemetry-sdk==1.45.2" "$OTEL_FILE_EXPORTER" &
make_env openllmetry-0.54 "opentelemetry-instrumentation-openai==0.54.0" "openai==3.57.0" \
  "opentelemetry-sdk==1.45.2" "$OTEL_FILE_EXPORTER" &
wait
exit 0
