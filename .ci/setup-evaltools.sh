#!/usr/bin/env bash
# The eval tools tests/test_evalset_tools.py runs the exported eval sets with, each in its own
# environment (never project dependencies): promptfoo from npm (0.121.x runs on Node 20) in
# .envs/promptfoo, Inspect AI from PyPI in .envs/inspect. Idempotent; never fails the build: when an
# install fails, the reason is left in .envs/<tool>-install.log and the tests skip quoting it.
set -uo pipefail
cd "$(dirname "$0")/.."
source .ci/lib.sh
exec {lock}>"$ENVS_HOME/.evaltools.lock"; flock "$lock"
PROMPTFOO_VERSION=0.121.20
INSPECT_VERSION=0.3.285

pf="$ENVS_HOME/promptfoo"
if [ ! -x "$pf/node_modules/.bin/promptfoo" ] || ! grep -q "\"version\": \"$PROMPTFOO_VERSION\"" "$pf/node_modules/promptfoo/package.json" 2>/dev/null; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm not installed (promptfoo needs Node 20 and npm)" > .envs/promptfoo-install.log
  elif (npm install --no-audit --no-fund --loglevel=error --prefix "$pf" "promptfoo@$PROMPTFOO_VERSION" \
        || npm install --no-audit --no-fund --loglevel=error --prefix "$pf" "promptfoo@$PROMPTFOO_VERSION") \
        > .envs/promptfoo-install.log 2>&1; then
    rm -f .envs/promptfoo-install.log
  else
    echo "ci: promptfoo install failed (see .envs/promptfoo-install.log); its eval-set test will skip" >&2
  fi
fi

ins="$ENVS_HOME/inspect"
if [ ! -x "$ins/bin/inspect" ] || ! "$ins/bin/python" -c "import inspect_ai, sys; sys.exit(inspect_ai.__version__ != '$INSPECT_VERSION')" 2>/dev/null; then
  if (python3 -m venv "$ins" && ("$ins/bin/pip" install -q "inspect-ai==$INSPECT_VERSION" openai \
        || "$ins/bin/pip" install -q "inspect-ai==$INSPECT_VERSION" openai)) > .envs/inspect-install.log 2>&1; then
    rm -f .envs/inspect-install.log
  else
    echo "ci: inspect-ai install failed (see .envs/inspect-install.log); its eval-set test will skip" >&2
  fi
fi
# The real mermaid parser (with jsdom) for the postmortem's gantt block, pinned by its lockfile.
mm=tests/node-mermaid
if command -v npm >/dev/null 2>&1 && ! { [ -f "$mm/node_modules/.oncall-lock" ] && cmp -s "$mm/package-lock.json" "$mm/node_modules/.oncall-lock"; }; then
  if (cd "$mm" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) > .envs/mermaid-install.log 2>&1; then
    cp "$mm/package-lock.json" "$mm/node_modules/.oncall-lock"
    rm -f .envs/mermaid-install.log
  else
    echo "ci: npm ci in $mm failed (see .envs/mermaid-install.log); the Mermaid parse test will skip" >&2
  fi
fi
exit 0
