#!/usr/bin/env bash
# The Node project tests/test_node_exports.py drives (Vercel AI SDK + OpenTelemetry JS SDK), installed
# exactly as tests/node/package-lock.json pins it into tests/node/node_modules (git-ignored).
# Idempotent: a matching install is kept. Never fails the build: when npm cannot install, the
# reason is left in .envs/node-install.log and those tests skip quoting it.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=tests/node
log=.envs/node-install.log
stamp=$dir/node_modules/.oncall-lock
source .ci/lib.sh
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node/npm not installed (the Node export tests need Node 20 and npm)" > "$log"
  echo "ci: node/npm missing; the Node export tests will skip" >&2
  exit 0
fi
if [ -f "$stamp" ] && cmp -s "$dir/package-lock.json" "$stamp"; then
  exit 0
fi
if (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) > "$log" 2>&1; then
  cp "$dir/package-lock.json" "$stamp"
  rm -f "$log"
else
  echo "ci: npm ci in $dir failed (see $log); the Node export tests will skip" >&2
fi
exit 0
