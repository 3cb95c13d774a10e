#!/usr/bin/env bash
# The real LiteLLM proxy the action tests drive (tests/actions/): its own virtual environment in
# .envs/litellm-proxy, never a project dependency (its pins would fight ours). Idempotent: a
# second run with the right version installed does nothing. Pinned exactly; never 1.107.0,
# 1.82.7 or 1.82.8 (compromised releases).
set -euo pipefail
cd "$(dirname "$0")/.."
LITELLM_VERSION=1.108.7
source .ci/lib.sh
ENV_DIR="$ENVS_HOME/litellm-proxy"
exec {lock}>"$ENVS_HOME/.litellm-proxy.lock"; flock "$lock"
case "$LITELLM_VERSION" in
  1.107.0|1.82.7|1.82.8) echo "setup-actions: refusing compromised litellm $LITELLM_VERSION" >&2; exit 1 ;;
esac
if [ -x "$ENV_DIR/bin/litellm" ] && \
   [ "$("$ENV_DIR/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null)" = "$LITELLM_VERSION" ]; then
  exit 0
fi
python3 -m venv "$ENV_DIR"
"$ENV_DIR/bin/pip" install -q --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION" 2>&1 \
  | { grep -v '^WARNING: Location' || true; }
LITELLM_LOCAL_MODEL_COST_MAP=True "$ENV_DIR/bin/litellm" --help >/dev/null
echo "setup-actions: litellm[proxy]==$LITELLM_VERSION in $ENV_DIR"
