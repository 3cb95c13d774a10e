"""Real components for the action tests: two OpenAI-compatible upstreams on loopback and a real
LiteLLM proxy (litellm[proxy]==1.108.7 in .envs/litellm-proxy, installed by .ci/setup-actions.sh,
or $ONCALL_LITELLM_BIN) routing `support-bot` to the primary. Tests that need the proxy skip with
the reason when it is not installed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.openai_server import OpenAIServer

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-oncall-test-master-5b1e0c9d7a3f4e21"
UPSTREAM_KEY = "upstream-key-zebra-41f7"  # not credential-shaped: only oncall's own scrubbing hides it

CONFIG_TEMPLATE = """\
# LiteLLM proxy for the support bot (test fixture)
model_list:
  - model_name: support-bot          # what the app asks for
    litellm_params:
      model: openai/gpt-4o
      api_base: {primary}
      api_key: os.environ/UPSTREAM_KEY
  - model_name: support-bot-fallback # the other provider
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {fallback}
      api_key: os.environ/UPSTREAM_KEY
  - model_name: support-bot-mini     # the cheaper model (cost-runaway)
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {fallback}
      api_key: os.environ/UPSTREAM_KEY
  - model_name: summarize            # the demo's anthropic traffic (provider-outage)
    litellm_params:
      model: openai/claude-3-5-sonnet-20241022
      api_base: {primary}
      api_key: os.environ/UPSTREAM_KEY
  - model_name: summarize-fallback
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {fallback}
      api_key: os.environ/UPSTREAM_KEY

router_settings:
  model_group_alias: {{}}   # incident flips go here
  num_retries: 0

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def litellm_bin() -> Path | None:
    env = os.environ.get("ONCALL_LITELLM_BIN")
    p = Path(env) if env else ROOT / ".envs" / "litellm-proxy" / "bin" / "litellm"
    return p if p.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proxy:
    url: str
    config: Path
    original: bytes
    proc: subprocess.Popen
    log: Path
    workdir: Path

    def ask(self, model: str = "support-bot") -> httpx2.Response:
        return httpx2.post(f"{self.url}/v1/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {MASTER_KEY}"},
                           json={"model": model, "messages": [{"role": "user", "content": "where is my order?"}]})

    def wait_serving(self, api_base: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.ask().headers.get("x-litellm-model-api-base", "").rstrip("/") == api_base:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"proxy not serving {api_base} after {timeout}s; log: {self.log.read_text()[-2000:]}")


def proxy_env() -> dict[str, str]:
    return {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": MASTER_KEY,
            "UPSTREAM_KEY": UPSTREAM_KEY, "LITELLM_LOG": "ERROR"}


def start_proxy(workdir: Path, primary: OpenAIServer, fallback: OpenAIServer, *extra: str,
                config_text: str | None = None) -> Proxy:
    """The real proxy on a free port, serving CONFIG_TEMPLATE on the two upstreams (or `config_text`)."""
    binary = litellm_bin()
    if binary is None:
        pytest.skip("the real LiteLLM proxy is not installed: run .ci/setup-actions.sh (or set ONCALL_LITELLM_BIN)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    config.write_text(config_text or CONFIG_TEMPLATE.format(primary=primary.base_url, fallback=fallback.base_url))
    port = free_port()
    log = workdir / "proxy.log"
    # cwd is the fixture's own directory: --reload also watches *.py in the working directory.
    proc = subprocess.Popen([str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                             *extra], cwd=workdir, env=proxy_env(), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    proxy = Proxy(f"http://127.0.0.1:{port}", config, config.read_bytes(), proc, log, workdir)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"LiteLLM proxy exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx2.get(f"{proxy.url}/health/liveliness", timeout=2).status_code == 200:
                return proxy
        except httpx2.HTTPError:
            pass
        time.sleep(0.3)
    stop_proxy(proxy)
    raise AssertionError(f"LiteLLM proxy did not start in 120 s: {log.read_text()[-3000:]}")


def stop_proxy(proxy: Proxy) -> None:
    try:
        os.killpg(proxy.proc.pid, signal.SIGTERM)
        proxy.proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proxy.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def upstreams():
    primary, fallback = OpenAIServer(name="primary").start(), OpenAIServer(name="fallback").start()
    yield primary, fallback
    primary.stop()
    fallback.stop()


@pytest.fixture(scope="session")
def reload_proxy(tmp_path_factory, upstreams):
    """A real proxy started with --reload (it restarts itself when config.yaml changes)."""
    proxy = start_proxy(tmp_path_factory.mktemp("litellm-reload"), *upstreams, "--reload")
    yield proxy
    stop_proxy(proxy)


@pytest.fixture
def gateway(reload_proxy, upstreams, tmp_path, monkeypatch):
    """The --reload proxy, serving the primary, with an oncall.toml naming it `gateway` (production)."""
    primary, _ = upstreams
    if reload_proxy.config.read_bytes() != reload_proxy.original:  # a failed test left it changed
        reload_proxy.config.write_bytes(reload_proxy.original)
    reload_proxy.wait_serving(primary.base_url)
    monkeypatch.setenv("LITELLM_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("UPSTREAM_KEY", UPSTREAM_KEY)
    write_toml(tmp_path, f"""
[actions.targets.gateway]
adapter = "litellm-config"
production = true
config = "{reload_proxy.config}"
proxy_url = "{reload_proxy.url}"
master_key_env = "LITELLM_MASTER_KEY"
reload = "watch"
verify_timeout = 60
""")
    monkeypatch.chdir(tmp_path)
    yield reload_proxy
    if reload_proxy.config.read_bytes() != reload_proxy.original:
        reload_proxy.config.write_bytes(reload_proxy.original)


def write_toml(directory: Path, text: str) -> Path:
    p = directory / "oncall.toml"
    p.write_text(text)
    return p


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path_factory, monkeypatch):
    """Keep the developer's own ~/.config/oncall/oncall.toml out of the tests."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.delenv("ONCALL_TOML", raising=False)
