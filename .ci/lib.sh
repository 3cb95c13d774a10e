# Sourced by the .ci/setup-*.sh scripts (run from the clone's root).
#
# The tool environments the tests drive live outside the clone, in $ONCALL_ENVS (default
# ~/.cache/oncall/envs), so a second clone, a worktree or CI's next run on the same machine reuses
# them instead of installing ~3 GB again; the clone's .envs is a symlink to that directory, which is
# where the tests look. An existing real .envs directory (an older checkout) is used as it is.
# Each environment is made under a lock, so two clones setting up at once do not build it twice.
ENVS_HOME="${ONCALL_ENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/oncall/envs}"
if [ -d .envs ] && [ ! -L .envs ]; then
  ENVS_HOME="$PWD/.envs"
else
  mkdir -p "$ENVS_HOME"
  real="$(cd "$ENVS_HOME" && pwd -P)"
  [ "$(readlink .envs 2>/dev/null)" = "$real" ] || ln -sfn "$real" .envs
fi
# The real path: a venv's scripts name their interpreter by the path the venv was made at, so an
# environment made through the symlink would break when this clone is deleted.
ENVS_HOME="$(cd "$ENVS_HOME" && pwd -P)"
PY="${PYTHON:-python3}"

# make_env TAG SECONDS NAME REQUIREMENT...: a venv $ENVS_HOME/NAME with exactly those requirements.
# Idempotent: an env whose .ready stamp matches its requirement list is left alone. A registry that
# is slow or down must not fail CI: two tries, each bounded to SECONDS; on a second failure the env is
# removed and the tests that need it skip with the reason. Always returns 0.
make_env() {
  local tag="$1" limit="$2" name="$3"; shift 3
  local dir="$ENVS_HOME/$name" want="$*"
  exec {lock}>"$ENVS_HOME/.$name.lock"
  flock "$lock"
  if [ -f "$dir/.ready" ] && [ "$(cat "$dir/.ready")" = "$want" ]; then
    flock -u "$lock"; return 0
  fi
  local attempt
  for attempt in 1 2; do
    rm -rf "$dir"
    # (pip's notes about configured-but-absent local index folders are noise here)
    if "$PY" -m venv "$dir" \
        && { timeout "$limit" "$dir/bin/pip" install -q --disable-pip-version-check --timeout 60 "$@" 2>&1 \
               | grep -v '^WARNING: Location .* is ignored' >&2; [ "${PIPESTATUS[0]}" -eq 0 ]; }; then
      printf '%s' "$want" > "$dir/.ready"
      echo "$tag: $name ready"
      flock -u "$lock"; return 0
    fi
    echo "$tag: installing $name failed (attempt $attempt)" >&2
  done
  rm -rf "$dir"
  echo "$tag: $name unavailable; its tests will skip" >&2
  flock -u "$lock"
  return 0
}
