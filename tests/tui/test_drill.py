"""The 2 AM drill (issue 27 item 4) in a real terminal (tmux), every key counted.

`oncall demo` builds the incident and its world (once per module), then the clock starts at `oncall
open`: open every cause the overview lists (enter opens its cohort, the explorer's count must be the
cause's), read and label three outputs of the served-model cohort (one with a note), take its next
step 1 (replay the cohort on the snapshot before, demo-pinned, with --repeat to tell noise), take
step 2 (the suggested runbook: gate passes, action applied and verified), undo the action (u on the
finished run), export the postmortem and the eval set, quit. At most 40 keys (note text not counted), under 3 minutes.

Keys go one at a time with a person's small gap (~0.2 s); the test waits for the screen a key leads
to before the next one (a key sent while a screen is being replaced reaches the old one, in any
terminal program). The screen is read back at each step; the files and the incident afterwards.

The same drill on an incident loaded from real instrumentation exports (opentelemetry-instrumentation-
openai-v2 writing OTLP JSON through the official file exporter, tests/drill_traffic.py) against a
loopback OpenAI server whose `gpt-4o` moves to a new snapshot mid-stream (after one tenant's prompt
moved to a new version: two causes), with a replay suite naming
the snapshot before and a real LiteLLM proxy (--reload) as the production gateway: at most 50 keys.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.openai_server import OpenAIServer
from tests.tui.test_tmux import pytestmark as tmux_mark

pytestmark = tmux_mark  # as the other tmux tests: skipped only where tmux cannot be installed

MAX_KEYS = 40
MAX_SECONDS = 180.0
NOTE = 'new snapshot opens with filler: must not contain "happy to help"'
ONCALL = Path(sys.executable).with_name("oncall")


class Terminal:
    """A tmux server of our own (-L) holding the console. `press` counts keys; `type_text` (a note)
    does not, as the issue counts them."""

    def __init__(self, name: str, cols: int = 160, rows: int = 48) -> None:
        self.socket = f"oncall-drill-{name}-{os.getpid()}"
        self.cols, self.rows = cols, rows
        self.keys: list[str] = []

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def start(self, command: str, cwd: Path) -> None:
        # `sleep` first: the pane has its size before the console asks for it; the trailing sleep
        # keeps the pane (and what the console printed on exit) readable after a quit
        self.tmux("new-session", "-d", "-s", "drill", "-x", str(self.cols), "-y", str(self.rows), "-c", str(cwd),
                  f"sleep 0.3; {command}; sleep 120")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "drill")

    def press(self, *keys: str) -> None:
        for k in keys:
            self.tmux("send-keys", "-t", "drill", k)
            self.keys.append(k)
            time.sleep(0.2)

    def type_text(self, text: str) -> None:
        self.tmux("send-keys", "-t", "drill", "-l", text)
        time.sleep(0.2)

    def wait_for(self, *texts: str, timeout: float = 60.0) -> str:
        """The screen once it shows every one of `texts`."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            last = self.screen()
            if all(t in last for t in texts):
                return last
            time.sleep(0.2)
        missing = [t for t in texts if t not in last]
        raise AssertionError(f"{missing!r} never appeared after keys {self.keys}; screen was:\n{last}")

    def wait_gone(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text in (last := self.screen()):
            assert time.monotonic() < deadline, f"{text!r} stayed after keys {self.keys}:\n{last}"
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@dataclass
class Cause:
    line: str  # as the overview shows it
    filter_words: list[str]  # the cohort's keys (`for tenant=acme, feature=x` -> tenant=acme feature=x)
    requests: str  # the cohort's size, as printed ("3,315")


# A cause's line: its time, its title `… for k=v, k=v` (a retrieval index adds `(with embedding model …)`),
# then its size. A title longer than the screen wraps onto the next row.
CAUSE_LINE = re.compile(r"^▊ \S.*? for (?P<cohort>\S+=\S+(?:, \S+=\S+)*)(?: \(with [^)]*\))?\s+"
                        r"\((?P<n>[\d,]+) requests\)")
CAUSE_START = re.compile(r"^▊ \d\d:\d\d")


def _rows(screen: str) -> list[str]:
    """The what-changed rows with a wrapped cause title joined back onto its first row."""
    rows: list[str] = []
    for line in screen.splitlines():
        body = line.rstrip().rstrip("▎").rstrip()
        if rows and CAUSE_START.match(rows[-1]) and " requests)" not in rows[-1] and body.startswith("▊ ") \
                and not CAUSE_START.match(body) and "└" not in body:
            rows[-1] += " " + body[2:].strip()
        else:
            rows.append(body)
    return rows


def overview_causes(screen: str) -> list[Cause]:
    """The causes the overview's what-changed lists, top to bottom (effects, indented └, skipped)."""
    out = []
    for line in _rows(screen):
        m = CAUSE_LINE.match(line)
        if m and "└" not in line.split(" for ")[0]:
            out.append(Cause(line.strip("▊▎ "), m["cohort"].split(", "), m["n"]))
    return out


def visiting_order(n: int, last: int) -> list[int]:
    """The causes in the order that takes the fewest tab / shift+tab presses from the first
    (highlighted when what-changed arrives), ending on `last` (the cohort the drill stays in)."""

    def moves(a: int, b: int) -> int:
        return min((b - a) % n, (a - b) % n)

    def cost(path: tuple[int, ...]) -> int:
        return sum(moves(a, b) for a, b in zip((0, *path), (*path, last), strict=True))

    if last == 0:  # the drill's cohort is the highlighted one: visit the others first, then come back
        return [*min(itertools.permutations(range(1, n)), key=cost), 0]
    rest = [i for i in range(1, n) if i != last]
    return [0, *min(itertools.permutations(rest), key=cost), last]


def move_keys(a: int, b: int, n: int) -> list[str]:
    forward = (b - a) % n
    return ["Tab"] * forward if forward <= n - forward else ["BTab"] * (n - forward)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`oncall demo` as a new user runs it (3 hours: every injected problem), built before the clock."""
    where = tmp_path_factory.mktemp("drill-demo")
    subprocess.run([str(ONCALL), "demo", "--no-tui", "--hours", "3"], cwd=where, check=True, capture_output=True,
                   text=True, timeout=600)
    return where / "incident.duckdb"


def oncall_json(*args: str) -> object:
    return json.loads(subprocess.run([str(ONCALL), *args, "--json"], check=True, capture_output=True,
                                     text=True).stdout)


def drill(t: Terminal, *, target: str, production: str | None = None) -> tuple[float, list[Cause]]:
    """The drill from the overview to the quit, every key through `t`; (seconds, the causes listed).
    `target`: the replay target the served-model step must name; `production`: the gateway's name
    when it is a production target (typed to confirm, as text: not counted)."""
    started = time.monotonic()
    s = t.wait_for("what changed:", "requests)", timeout=120)
    listed = int(re.search(r"what changed: (\d+)", s)[1])
    causes = overview_causes(s)
    assert len(causes) == listed >= 1, s
    served = [i for i, c in enumerate(causes) if " served model " in c.line]
    assert len(served) == 1, s

    # -- every cause: enter opens its cohort in the explorer (its count is the cause's), esc returns
    at = 0
    for i in visiting_order(len(causes), served[0]):
        t.press(*move_keys(at, i, len(causes)), "Enter")
        at = i
        top = t.wait_for(f"1 of {causes[i].requests} ", timeout=30).splitlines()[:4]
        assert all(w in "\n".join(top) for w in causes[i].filter_words), (causes[i], top)
        if i != served[0]:
            t.press("Escape")
            t.wait_for("what changed:")

    # -- read and label three outputs of the served-model cohort (enter reads the first row)
    t.press("Enter")
    s = t.wait_for("1/", "chatcmpl-", "served model")  # the reader's metadata: the provider's response id
    t.press("b")
    t.wait_for("labelled bad")
    t.press("n")
    t.wait_for("note on this request")
    t.type_text(NOTE)
    t.press("Enter")
    t.wait_for("note saved")
    t.press("j")
    t.wait_for("2/")
    t.press("g")
    t.wait_for("labelled good")
    t.press("j")
    t.wait_for("3/")
    t.press("b")
    t.wait_for("labelled bad")

    # -- its next step 1: replay the cohort on the snapshot before, prefilled, --repeat to tell noise
    t.press("1")
    s = t.wait_for("suggested: replay the cohort on the snapshot before", "requests x3:", timeout=30)
    assert target in s, s
    t.press("Tab", "Enter")  # Cancel has the focus (a replay costs money): tab to Replay
    s = t.wait_for("replay 1: finished", "noise (repeat 3):", timeout=150)
    assert re.search(r"noise \(repeat 3\): \d+ request\(s\) changed beyond the model's own variation, \d+ within "
                     r"noise", s), s
    t.press("Escape")
    t.wait_for("3/", "chatcmpl-")

    # -- its next step 2: the suggested runbook; gate passes, the action is applied and verified
    t.press("2")
    s = t.wait_for("suggested: pin extract to", "it will run:", timeout=30)
    assert "provider-model-regression" in s
    t.press("Enter")  # enter in the form starts it
    t.wait_for("run the evidence replay?", timeout=60)
    t.press("Tab", "Enter")
    s = t.wait_for("apply this change?", timeout=150)
    assert "pin extract: openai/gpt-4o → openai/gpt-4o-2024-08-06" in s
    confirm(t, production)
    s = t.wait_for("runbook completed", timeout=120)
    assert "gate passed" in s and "✓ verified" in s, s

    # -- undo it: u on the finished run, confirm (the audit's pair is checked afterwards)
    t.press("u")
    t.wait_for("undo action 1?", timeout=30)
    confirm(t, production)
    s = t.wait_for("undo of action 1: action 2 ", timeout=120)
    assert "undo of action 1: action 2 verified" in s, s

    # -- the postmortem (f7), exported beside the incident; e: the eval set
    t.press("F7")
    t.wait_for("lines of Markdown", timeout=60)
    t.press("C-s")
    t.wait_for("export the postmortem draft")
    t.press("Enter")
    t.wait_for("postmortem draft written to", timeout=30)
    t.press("e")
    t.wait_for("promptfoo eval set")
    t.press("Enter")
    t.wait_for("eval set: 3 request(s) written", timeout=60)
    t.press("C-q")
    t.wait_gone("lines of Markdown")
    return time.monotonic() - started, causes


def confirm(t: Terminal, production: str | None) -> None:
    """Apply in the confirmation: Cancel has the focus (tab to Apply), or a production target's name
    is typed (text, not counted) and enter applies."""
    if production is None:
        t.press("Tab", "Enter")
    else:
        t.wait_for("is a production target: type its name")
        t.type_text(production)
        t.press("Enter")


def check_what_the_drill_left(here: Path, db: Path) -> None:
    """The postmortem records the suggestions taken (and not taken), the replay and the undone action;
    the audit has the action and its undo; the eval set parses with the labels and the note's check."""
    md = (here / "postmortem.md").read_text(encoding="utf-8")
    steps = md.split("## Suggested next steps", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"replay the cohort on the snapshot before \(gpt-4o-2024-08-06\): \*\*taken\*\* \(console, "
                     r"replay run 1", steps), steps
    assert re.search(r"pin extract to gpt-4o-2024-08-06 \(runbook provider-model-regression\): \*\*taken\*\* "
                     r"\(console", steps), steps
    assert steps.count("**taken**") == 2 and "not taken" in steps
    assert "undone by action 2" in md and "every action taken was undone" in md

    actions = {a["action_id"]: a for a in oncall_json("action", "list", "--db", str(db))}
    assert sorted(actions) == [1, 2]
    assert actions[1]["status"] == "verified" and actions[1]["runbook"] == "provider-model-regression"
    assert actions[2]["status"] == "verified" and actions[2]["undo_of"] == 1
    assert oncall_json("replay", "show", "1", "--db", str(db))["noise"]["repeat"] == 3

    config = YAML(typ="safe").load((here / "evalset" / "promptfooconfig.yaml").read_text(encoding="utf-8"))
    assert sorted(case["metadata"]["label"] for case in config["tests"]) == ["bad", "bad", "good"]
    noted = [case for case in config["tests"] if case["metadata"]["note"] == NOTE]
    assert len(noted) == 1
    assert {"type": "not-icontains", "value": "happy to help"} in noted[0]["assert"]


def test_the_drill_on_the_demo_in_40_keys(demo: Path, tmp_path: Path) -> None:
    here = demo.parent
    world = here / f"{demo.stem}.demo-world"
    gateway_before = (world / "gateway.yaml").read_text(encoding="utf-8")
    env = f"TERM=xterm-256color ONCALL_CONFIG={tmp_path / 'none.toml'} XDG_CONFIG_HOME={tmp_path / 'xdg'} "
    t = Terminal("demo")
    t.start(f"{env}{ONCALL} open --db {demo.name}", here)
    try:
        elapsed, causes = drill(t, target="demo-pinned")
    finally:
        t.stop()
    print(f"\ndrill on the demo: {len(t.keys)} keys in {elapsed:.0f} s ({len(causes)} causes): {' '.join(t.keys)}")
    assert len(causes) >= 3
    assert len(t.keys) <= MAX_KEYS, t.keys
    assert elapsed < MAX_SECONDS
    check_what_the_drill_left(here, demo)
    assert (world / "gateway.yaml").read_text(encoding="utf-8") == gateway_before  # pinned, then put back
    assert oncall_json("replay", "show", "1", "--db", str(demo))["run"]["target"] == "demo-pinned"


# -- the same drill on real instrumentation exports ---------------------------------------------------------------
MAX_KEYS_EXPORTERS = 50
OLD, NEW = "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"
ORDER = re.compile(r"Order (\d+) (.+?), ([\d.]+) (\w+)\.")
GATEWAY = """\
# the support app's LiteLLM proxy: each feature asks for its own model_name
model_list:
  - model_name: support-bot
    litellm_params: {{model: openai/gpt-4o, api_base: "{upstream}", api_key: os.environ/UPSTREAM_KEY}}
  - model_name: extract
    litellm_params: {{model: openai/gpt-4o, api_base: "{upstream}", api_key: os.environ/UPSTREAM_KEY}}
router_settings:
  num_retries: 0
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def snapshot_answers(server: OpenAIServer) -> Callable[[dict[str, Any]], str | None]:
    """How the two gpt-4o snapshots answer the app (the loopback server serves whichever its
    served_models names): the newer renames extract's order_id to orderId or wraps the JSON in
    prose, and opens support answers with filler. Anything else gets the server's default."""

    def answer(req: dict[str, Any]) -> str | None:
        served = server.served_models.get(req.get("model"), req.get("model"))
        messages = [m for m in req.get("messages") or [] if isinstance(m, dict)]
        if len(messages) < 2:
            return None
        system, user = str(messages[0].get("content")), str(messages[-1].get("content"))
        order = ORDER.match(user)
        if system.startswith("Extract the order") and order:
            doc = {"order_id": order[1], "status": order[2], "amount": float(order[3]), "currency": order[4]}
            if served == NEW and int(order[1]) % 4 < 2:
                doc = {"orderId": doc.pop("order_id"), **doc}
            elif served == NEW:
                return "Sure! Here is the order as JSON: " + json.dumps(doc)
            return json.dumps(doc)
        if "support" in system:
            base = f"You will find that under Settings ({user.rstrip('?').lower()})."
            return f"Of course, happy to help! {base} Anything else I can do?" if served == NEW else base
        return None

    return answer


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """A responder's directory: the app's traffic as its instrumentation exported it, loaded with
    `oncall load` (150 calls; 150 more once tenant acme's support prompt went to v13; 150 after the
    provider moved `gpt-4o` to a new snapshot); the
    replay suite's targets on the same upstream; the real LiteLLM proxy (--reload) in front of it,
    named in oncall.toml as the production gateway."""
    from tests.actions.conftest import start_proxy, stop_proxy

    where = tmp_path_factory.mktemp("drill-exporters")
    upstream = OpenAIServer(served_models={"gpt-4o": OLD}).start()
    upstream.answerer = snapshot_answers(upstream)
    proxy = None
    try:
        gen = Path(__file__).resolve().parents[1] / "drill_traffic.py"
        phases = (("before", "v12", OLD), ("prompt", "v13", OLD), ("after", "v13", NEW))
        for n, (name, acme_prompt, served) in enumerate(phases):
            upstream.served_models["gpt-4o"] = served  # "after": the provider's silent update
            subprocess.run([sys.executable, str(gen), "--base-url", upstream.base_url, "--out",
                            str(where / f"{name}.jsonl"), "--calls", "150", "--offset", str(150 * n),
                            "--acme-prompt", acme_prompt], check=True, capture_output=True, text=True, timeout=300)
            time.sleep(1.0)  # each change lands on a later second than the last call before it
        subprocess.run([str(ONCALL), "load", "--db", "incident.duckdb", *(f"{name}.jsonl" for name, *_ in phases)],
                       cwd=where, check=True, capture_output=True, text=True, timeout=300)
        (where / "replay").mkdir()
        (where / "replay" / "targets.toml").write_text("".join(
            f'[targets.{name}]\nbase_url = "{upstream.base_url}"\nmodel = "{model}"\napi_key_env = "ONCALL_TEST_KEY"\n'
            f"price_in = 2.5\nprice_out = 10\n\n" for name, model in (("gpt-4o-today", "gpt-4o"),
                                                                     ("gpt-4o-pinned", OLD))))
        proxy = start_proxy(where / "gateway", upstream, upstream, "--reload",
                            config_text=GATEWAY.format(upstream=upstream.base_url))
        (where / "oncall.toml").write_text(
            f'[actions.targets.gateway]\nadapter = "litellm-config"\nproduction = true\nconfig = "{proxy.config}"\n'
            f'proxy_url = "{proxy.url}"\nmaster_key_env = "LITELLM_MASTER_KEY"\nreload = "watch"\n'
            f"verify_timeout = 60\n")
        yield where, proxy
    finally:
        if proxy is not None:
            stop_proxy(proxy)
        upstream.stop()


def test_the_drill_on_real_exporter_traffic_in_50_keys(exported, tmp_path: Path) -> None:
    from tests.actions.conftest import MASTER_KEY

    here, proxy = exported
    env = (f"TERM=xterm-256color ONCALL_TOML={here / 'oncall.toml'} XDG_CONFIG_HOME={tmp_path / 'xdg'} "
           f"ONCALL_TEST_KEY=sk-test-not-a-real-key LITELLM_MASTER_KEY={MASTER_KEY} ")
    t = Terminal("exporters")
    t.start(f"{env}{ONCALL} open --db incident.duckdb", here)
    try:
        elapsed, causes = drill(t, target="gpt-4o-pinned", production="gateway")
    finally:
        t.stop()
    print(f"\ndrill on exporter traffic: {len(t.keys)} keys in {elapsed:.0f} s ({len(causes)} causes): "
          f"{' '.join(t.keys)}")
    assert len(t.keys) <= MAX_KEYS_EXPORTERS, t.keys
    assert elapsed < MAX_SECONDS
    assert len(causes) == 2
    check_what_the_drill_left(here, here / "incident.duckdb")
    assert proxy.config.read_bytes() == proxy.original  # pinned, then put back
    assert oncall_json("replay", "show", "1", "--db", str(here / "incident.duckdb"))["run"]["target"] == "gpt-4o-pinned"
