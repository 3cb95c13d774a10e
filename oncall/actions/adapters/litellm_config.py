"""LiteLLM proxy, config as code: change config.yaml, make the proxy pick it up, probe it.

Operations:
- `repoint alias=support-bot to=support-bot-fallback`: requests for the app-facing name `alias` go to
  the deployments named `to`, through `router_settings.model_group_alias` (which LiteLLM's router
  consults before model_name, so the alias's own entries stay in the file for the way back).
  `to=<alias>` removes the alias entry. For a *quality* regression this is the flip: LiteLLM's
  `fallbacks` only fire after errors.
- `pin deployment=<model_name or model_info.id> model=openai/gpt-4o-2024-08-06`: the deployment's
  `litellm_params.model` becomes a dated snapshot.

Pick-up (`reload` in the target): `watch` — the proxy runs with `--reload` and restarts itself when
the file changes; `sighup` — SIGHUP to a multi-worker proxy (`pid` or `pidfile`), which restarts its
workers one by one (a one-worker proxy dies on SIGHUP, so that is refused at plan time);
`command` — run `restart_command`. Validation before the file is replaced: the structural checks
always, and LiteLLM's own `--validate_config` when `litellm_bin` is set.

Verification: probe requests through the proxy (`proxy_url`, key from `probe_key_env` or
`master_key_env`) until `consecutive` answers in a row come from the planned deployment, read from
the `x-litellm-model-name` / `x-litellm-model-api-base` headers (the body's `model` is rewritten to
the alias), or `verify_timeout` (default 60 s) passes.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from oncall.actions import files
from oncall.actions.adapters import litellm_yaml as ly
from oncall.actions.adapters.base import Adapter, Op, RunContext
from oncall.actions.errors import BadArguments, ConfigError, InvalidChange, StateMoved, TargetError
from oncall.actions.model import Plan, Proposal, State, Verification
from oncall.actions.secrets import scrub, secret
from oncall.redact import REDACTED

RELOAD_MODES = ("watch", "sighup", "command")


class LiteLLMConfig(Adapter):
    kind = "litellm-config"
    description = "LiteLLM proxy config.yaml: repoint an alias, pin a deployment to a dated snapshot"
    verify_timeout = 60.0
    ops = {
        "repoint": Op("requests for `alias` are served by the deployments named `to`",
                      {"alias": "the app-facing model name (e.g. support-bot)",
                       "to": "model_name of the deployments to serve it (the fallback)"}),
        "pin": Op("pin a deployment's litellm_params.model to a dated snapshot",
                  {"deployment": "model_name (with one deployment) or model_info.id",
                   "model": "the new litellm_params.model, e.g. openai/gpt-4o-2024-08-06"},
                  {"probe": "model name to probe through the proxy (default: the deployment's model_name)"}),
    }

    def check_config(self) -> None:
        t = self.target
        self.path = t.path("config")
        self.reload = t.get("reload", "watch")
        if self.reload not in RELOAD_MODES:
            raise ConfigError(f"{t.where}: target {t.name}: reload must be one of {', '.join(RELOAD_MODES)}")
        if self.reload == "sighup" and not (t.get("pid") or t.get("pidfile")):
            raise ConfigError(f"{t.where}: target {t.name}: reload = \"sighup\" needs `pid` or `pidfile`")
        if self.reload == "command" and not t.get("restart_command"):
            raise ConfigError(f"{t.where}: target {t.name}: reload = \"command\" needs `restart_command`")

    @property
    def what(self) -> str:
        return f"{self.target.name} ({self.path})"

    # -- read / propose ------------------------------------------------------------------------
    def read(self, args: dict[str, Any]) -> State:
        data = files.read_bytes(self.path, self.what)
        return State(files.sha256(data), data)

    def propose(self, state: State, op: str, args: dict[str, Any]) -> Proposal:
        text = state.data.decode("utf-8")
        doc, y = ly.load(text, self.what)
        if op == "repoint":
            before, after, probe_model = self._repoint(doc, str(args["alias"]), str(args["to"]))
        else:
            before, after, probe_model = self._pin(doc, str(args["deployment"]), str(args["model"]))
            probe_model = str(args.get("probe") or probe_model)
        new_text = ly.dump(y, doc)
        old_doc = ly.load(text, self.what)[0]
        return self._proposal(text, new_text, old_doc, doc, probe_model, before, after, op)

    def _repoint(self, doc: Any, alias: str, to: str) -> tuple[dict, dict, str]:
        names = ly.model_names(doc)
        if to not in names:
            raise BadArguments(f"{self.what}: no model_list entry is named {to!r} (model names: {', '.join(names)})")
        current = ly.resolve(doc, alias)
        if alias not in names and alias not in ly.aliases(doc):
            raise BadArguments(f"{self.what}: {alias!r} is neither a model_name nor a model_group_alias "
                               f"(model names: {', '.join(names)})")
        before = {"alias": alias, "served_by": current, "deployments": ly.deployments(doc, current)}
        if to != current:
            from ruamel.yaml.comments import CommentedMap

            rs = doc.get("router_settings")
            if rs is None:
                rs = doc["router_settings"] = CommentedMap()
            mga = rs.get("model_group_alias")
            if mga is None:
                mga = rs["model_group_alias"] = CommentedMap()
            if to == alias:
                if alias not in names:
                    raise BadArguments(f"{self.what}: {alias!r} has no deployments of its own to point back to")
                del mga[alias]
            elif isinstance(mga.get(alias), dict):
                mga[alias]["model"] = to
            else:
                mga[alias] = to
        after = {"alias": alias, "served_by": to, "deployments": ly.deployments(doc, to)}
        return before, after, alias

    def _pin(self, doc: Any, deployment: str, model: str) -> tuple[dict, dict, str]:
        matches = [m for m in ly.model_list(doc) if isinstance(m, dict) and (
            str(m.get("model_name")) == deployment or str((m.get("model_info") or {}).get("id")) == deployment)]
        if len(matches) != 1:
            found = "no deployment" if not matches else f"{len(matches)} deployments"
            raise BadArguments(f"{self.what}: {found} named {deployment!r}; name one by model_info.id "
                               f"(model names: {', '.join(ly.model_names(doc))})")
        entry = matches[0]
        params = entry.get("litellm_params")
        if not isinstance(params, dict) or "model" not in params:
            raise TargetError(f"{self.what}: deployment {deployment!r} has no litellm_params.model")
        before = {"deployment": deployment, "model": str(params["model"])}
        if str(params["model"]) != model:
            params["model"] = model
        return before, {"deployment": deployment, "model": model}, str(entry["model_name"])

    def _proposal(self, text: str, new_text: str, old_doc: Any, new_doc: Any, probe_model: str,
                  before: dict, after: dict, op: str) -> Proposal:
        hunks = files.patch_for_audit(files.make_patch(text, new_text))
        old_deps = ly.deployments(old_doc, ly.resolve(old_doc, probe_model))
        new_deps = ly.deployments(new_doc, ly.resolve(new_doc, probe_model))
        notes = []
        if hunks and old_deps == new_deps:
            notes.append("the probe cannot tell the old deployment from the new one (same model and api_base)")
        checks = ly.check_structure(new_text, self.what) if hunks else []
        checks += self._pickup_checks() if hunks else []
        if hunks and self.target.get("litellm_bin"):
            checks.append("LiteLLM --validate_config runs on the new file before it replaces the old")
        if op == "repoint":
            summary = f"{before['alias']}: served by {before['served_by']} → {after['served_by']}"
        else:
            summary = f"pin {before['deployment']}: {before['model']} → {after['model']}"
        return Proposal(summary=summary, before=before, after=after,
                        diff=files.display_diff(text, new_text, self.path.name),
                        payload={"patch": hunks, "probe": {"model": probe_model, "expect": new_deps, "old": old_deps}},
                        expected=files.sha256(new_text.encode("utf-8")), changes=bool(hunks), checks=checks,
                        notes=notes)

    def restore(self, plan: Plan, state: State) -> Proposal:
        text = state.data.decode("utf-8")
        old_text = self._before(plan, text)
        probe = plan.payload["probe"]
        summary = plan.summary
        prop = Proposal(summary=f"back to {summary.split(' → ')[0]}" if " → " in summary else summary,
                        before=plan.after, after=plan.before, diff=files.display_diff(text, old_text, self.path.name),
                        payload={"patch": files.make_patch(text, old_text),
                                 "probe": {"model": probe["model"], "expect": probe["old"], "old": probe["expect"]}},
                        expected=files.sha256(old_text.encode("utf-8")),
                        checks=ly.check_structure(old_text, self.what) + self._pickup_checks())
        if prop.expected != plan.fingerprint:
            raise TargetError(f"{self.what}: the reversed change does not give back the original file; refusing")
        return prop

    def _before(self, plan: Plan, text: str) -> str:
        """The file as it was before `plan`: its patch backwards; or, where the audit could keep a
        changed line only redacted (a flow-style entry, `{model: …, api_key: …}` on one line), the
        same operation made again towards plan.before. restore() then checks the bytes are the
        original's, so a file that moved since is still refused."""
        try:
            return files.apply_patch(text, plan.payload["patch"], reverse=True, what=self.what)
        except StateMoved:
            if not any(REDACTED in line for h in plan.payload["patch"] for line in h["old"] + h["new"]):
                raise
        doc, y = ly.load(text, self.what)
        b = plan.before
        if plan.op.endswith("repoint"):
            self._repoint(doc, str(b["alias"]), str(b["served_by"]))
        else:
            self._pin(doc, str(b["deployment"]), str(b["model"]))
        return ly.dump(y, doc)

    # -- write and pick up -----------------------------------------------------------------------
    def apply(self, plan: Plan, state: State, ctx: RunContext) -> dict[str, Any]:
        text = state.data.decode("utf-8")
        new_text = files.apply_patch(text, plan.payload["patch"], what=self.what)
        new = new_text.encode("utf-8")
        if files.sha256(new) != plan.expected:
            raise TargetError(f"{self.what}: the patched file is not the planned one; nothing written")
        ly.check_structure(new_text, self.what)
        pid, workers = self._sighup_target() if self.reload == "sighup" else (None, [])
        files.atomic_write(self.path, new, check=self._validate_with_litellm)
        applied: dict[str, Any] = {"file": str(self.path), "sha256": plan.expected, "reload": self.reload}
        if self.reload == "sighup":
            os.kill(pid, signal.SIGHUP)
            applied.update(pid=pid, old_workers=workers)
        elif self.reload == "command":
            try:
                self._run_restart()
            except TargetError:
                files.atomic_write(self.path, state.data)  # the proxy still runs the old config: keep them in step
                raise
        applied["written_at"] = time.time()
        return applied

    def _pickup_checks(self) -> list[str]:
        if self.reload == "sighup":
            pid, workers = self._sighup_target()
            return [f"proxy PID {pid} runs {len(workers)} workers: SIGHUP restarts them one by one"]
        if self.reload == "command":
            return ["the restart command runs after the write"]
        return ["the proxy watches the file (--reload) and restarts when it changes"]

    def _sighup_target(self) -> tuple[int, list[int]]:
        pid = self._pid()
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise TargetError(f"{self.what}: proxy PID {pid} is not running; nothing written") from None
        except PermissionError:
            raise TargetError(f"{self.what}: not allowed to signal proxy PID {pid}; nothing written") from None
        workers = worker_pids(pid)
        if len(workers) < 2:
            raise InvalidChange(f"{self.what}: proxy PID {pid} runs {len(workers) or 'no separate'} worker(s); "
                                "SIGHUP would kill it. Start it with --num_workers 2 (and "
                                "--timeout_worker_healthcheck 60), use --reload, or set reload = \"command\"")
        return pid, workers

    def _pid(self) -> int:
        if self.target.get("pid"):
            return int(self.target.get("pid"))
        pidfile = self.target.path("pidfile")
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError) as exc:
            raise TargetError(f"{self.what}: cannot read a PID from {pidfile}: {exc}") from None

    def _run_restart(self) -> None:
        cmd = self.target.get("restart_command")
        argv = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
        timeout = float(self.target.get("restart_timeout", 120))
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TargetError(f"{self.what}: restart command {argv[0]} failed: {exc}; config.yaml restored") from None
        if res.returncode != 0:
            tail = scrub((res.stderr or res.stdout).strip().splitlines()[-1:] or [""])[0]
            raise TargetError(f"{self.what}: restart command exited {res.returncode}: {tail}; config.yaml restored")

    def _validate_with_litellm(self, candidate: Path) -> None:
        binary = self.target.get("litellm_bin")
        if not binary:
            return
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        try:
            res = subprocess.run([str(binary), "--config", str(candidate), "--validate_config"], capture_output=True,
                                 text=True, timeout=float(self.target.get("validate_timeout", 120)), env=env,
                                 cwd=str(candidate.parent))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InvalidChange(f"{self.what}: LiteLLM --validate_config could not run ({exc}); "
                                "the old file is kept") from None
        if res.returncode != 0:
            out = (res.stdout + res.stderr).strip().splitlines()
            why = next((ln for ln in reversed(out) if "validation failed" in ln), out[-1] if out else "")
            raise InvalidChange(f"{self.what}: LiteLLM --validate_config rejected the new file: "
                                f"{scrub(why.strip())}; the old file is kept")

    # -- verify -----------------------------------------------------------------------------------
    def verify(self, plan: Plan, ctx: RunContext, applied: dict[str, Any], deadline: float) -> Verification:
        if not self.target.get("proxy_url"):
            return Verification(False, "no proxy_url configured: the change was written but not probed")
        if applied.get("old_workers"):
            self._wait_workers_replaced(applied["pid"], applied["old_workers"], deadline)
        probe = plan.payload["probe"]
        want = probe["expect"]
        need = int(self.target.get("consecutive", 2))
        streak, probes, last, last_error = 0, 0, None, None
        while True:
            probes += 1
            try:
                last = self._probe(probe["model"])
                last_error = None
                streak = streak + 1 if _matches(last, want) else 0
            except TargetError as exc:
                streak, last_error = 0, str(exc)
            if streak >= need:
                return Verification(True, f"{probe['model']} answered by {_who(last)} ({need} probes in a row)",
                                    {"probes": probes, "headers": last, "expected": want})
            if time.monotonic() >= deadline:
                seen = f"last answered by {_who(last)}" if last else f"last error: {last_error}"
                return Verification(False, f"{probe['model']} not yet served by {want} ({seen})",
                                    {"probes": probes, "headers": last, "expected": want, "error": last_error})
            time.sleep(0.25)

    def _probe(self, model: str) -> dict[str, Any]:
        from oncall.actions.http import request

        url = str(self.target.get("proxy_url")).rstrip("/") + "/v1/chat/completions"
        key_env = self.target.get("probe_key_env") or self.target.get("master_key_env")
        headers = {"Authorization": f"Bearer {secret(key_env, what=f'target {self.target.name} probe key')}"} \
            if key_env else {}
        body = {"model": model, "messages": [{"role": "user", "content": self.target.get("probe_prompt", "ping")}],
                "max_tokens": int(self.target.get("probe_max_tokens", 1))}
        resp = request("POST", url, what=f"probe through {self.target.name}", json=body, headers=headers,
                       timeout=float(self.target.get("probe_timeout", 10)))
        h = resp.headers
        return {"x-litellm-model-name": h.get("x-litellm-model-name"),
                "x-litellm-model-api-base": (h.get("x-litellm-model-api-base") or "").rstrip("/") or None,
                "x-litellm-model-group": h.get("x-litellm-model-group"),
                "x-litellm-model-id": h.get("x-litellm-model-id")}

    def _wait_workers_replaced(self, pid: int, old: list[int], deadline: float) -> None:
        while time.monotonic() < deadline and set(old) & set(worker_pids(pid)):
            time.sleep(0.25)


def _matches(headers: dict[str, Any], want: list[dict[str, Any]]) -> bool:
    for d in want:
        if headers.get("x-litellm-model-name") == d["model"] and (
                d["api_base"] is None or headers.get("x-litellm-model-api-base") == d["api_base"]):
            return True
    return False


def _who(headers: dict[str, Any] | None) -> str:
    if not headers:
        return "nobody"
    base = headers.get("x-litellm-model-api-base")
    return f"{headers.get('x-litellm-model-name')}" + (f" at {base}" if base else "")


def worker_pids(pid: int) -> list[int]:
    """The proxy's worker processes (uvicorn's spawned children), from /proc; [] where there is none."""
    out = []
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError, IndexError):
            continue
        if b"resource_tracker" not in cmdline:
            out.append(int(entry.name))
    return sorted(out)
