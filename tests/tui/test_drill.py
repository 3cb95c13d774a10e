"""The 2 AM drill (issue 27 item 4) in a real terminal (tmux), every key counted.

`oncall demo` builds the incident and its world (once per module), then the clock starts at `oncall
open`: open every cause the overview lists (enter opens its cohort, the explorer's count must be the
cause's), read and label three outputs of the served-model cohort (one with a note), take its next
step 1 (replay the cohort on the snapshot before, demo-pinned, with --repeat to tell noise), take
step 2 (the suggested runbook: gate passes, action applied and verified), undo the action, export
the postmortem and the eval set, quit. At most 40 keys (note text not counted), under 3 minutes.

Keys go one at a time with a person's small gap (~0.2 s); the test waits for the screen a key leads
to before the next one (a key sent while a screen is being replaced reaches the old one, in any
terminal program). The screen is read back at each step; the files and the incident afterwards.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

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


CAUSE_LINE = re.compile(r"^▊ \S.*? for (?P<cohort>\S+=\S+(?:, \S+=\S+)*)\s+\((?P<n>[\d,]+) requests\)")


def overview_causes(screen: str) -> list[Cause]:
    """The causes the overview's what-changed lists, top to bottom (effects, indented └, skipped)."""
    out = []
    for line in screen.splitlines():
        m = CAUSE_LINE.match(line)
        if m and "└" not in line.split(" for ")[0]:
            out.append(Cause(line.strip("▊▎ "), m["cohort"].split(", "), m["n"]))
    return out


def visiting_order(n: int, last: int) -> list[int]:
    """The causes in the order that takes the fewest tab / shift+tab presses from the first
    (highlighted when what-changed arrives), ending on `last` (the cohort the drill stays in)."""

    def moves(a: int, b: int) -> int:
        return min((b - a) % n, (a - b) % n)

    rest = [i for i in range(1, n) if i != last]
    best = min(itertools.permutations(rest), key=lambda p: sum(moves(a, b) for a, b in
                                                                 zip((0, *p), (*p, last), strict=True)))
    return [0, *best, last] if last != 0 else [0, *best]


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


def test_the_drill_on_the_demo_in_40_keys(demo: Path, tmp_path: Path) -> None:
    here = demo.parent
    world = here / f"{demo.stem}.demo-world"
    gateway_before = (world / "gateway.yaml").read_text(encoding="utf-8")
    env = f"TERM=xterm-256color ONCALL_CONFIG={tmp_path / 'none.toml'} XDG_CONFIG_HOME={tmp_path / 'xdg'} "
    t = Terminal("demo")
    started = time.monotonic()
    t.start(f"{env}{ONCALL} open --db {demo.name}", here)
    try:
        s = t.wait_for("what changed:", "requests)", timeout=120)
        listed = int(re.search(r"what changed: (\d+)", s)[1])
        causes = overview_causes(s)
        assert len(causes) == listed >= 3, s
        served = [i for i, c in enumerate(causes) if " served model " in c.line]
        assert len(served) == 1, s

        # -- every cause: enter opens its cohort in the explorer (its count is the cause's), esc returns
        order = visiting_order(len(causes), served[0])
        at = 0
        for i in order:
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
        assert "gpt-4o-2024-11-20" in s
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
        assert "demo-pinned" in s
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
        t.press("Tab", "Enter")
        s = t.wait_for("runbook completed", timeout=90)
        assert "gate passed" in s and "✓ verified" in s, s

        # -- undo it: the audit (f4), u on the newest action, confirm
        t.press("F4")
        t.wait_for("actions (the audit)")
        t.press("u")
        t.wait_for("undo action 1?", timeout=30)
        t.press("Tab", "Enter")
        s = t.wait_for("undoes 1", "by 2", timeout=60)

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
        elapsed = time.monotonic() - started
    finally:
        t.stop()

    print(f"\ndrill on the demo: {len(t.keys)} keys in {elapsed:.0f} s ({len(causes)} causes): {' '.join(t.keys)}")
    assert len(t.keys) <= MAX_KEYS, t.keys
    assert elapsed < MAX_SECONDS

    # -- the postmortem records the suggestions taken (and not taken), the replay, the undone action
    md = (here / "postmortem.md").read_text(encoding="utf-8")
    steps = md.split("## Suggested next steps", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"replay the cohort on the snapshot before \(gpt-4o-2024-08-06\): \*\*taken\*\* \(console, "
                     r"replay run 1", steps), steps
    assert re.search(r"pin extract to gpt-4o-2024-08-06 \(runbook provider-model-regression\): \*\*taken\*\* "
                     r"\(console", steps), steps
    assert steps.count("**taken**") == 2 and "not taken" in steps
    assert "undone by action 2" in md and "every action taken was undone" in md
    assert "demo-pinned" in md.split("## Replay results", 1)[1].split("\n## ", 1)[0]

    # -- the audit, and the gateway config the action changed and put back
    actions = {a["action_id"]: a for a in oncall_json("action", "list", "--db", str(demo))}
    assert sorted(actions) == [1, 2]
    assert actions[1]["status"] == "verified" and actions[1]["runbook"] == "provider-model-regression"
    assert actions[2]["status"] == "verified" and actions[2]["undo_of"] == 1
    assert (world / "gateway.yaml").read_text(encoding="utf-8") == gateway_before
    replay = oncall_json("replay", "show", "1", "--db", str(demo))
    assert replay["run"]["target"] == "demo-pinned" and replay["noise"]["repeat"] == 3

    # -- the eval set parses: the three labelled requests, the note's "must not contain" as a check
    config = YAML(typ="safe").load((here / "evalset" / "promptfooconfig.yaml").read_text(encoding="utf-8"))
    labels = sorted(case["metadata"]["label"] for case in config["tests"])
    assert labels == ["bad", "bad", "good"]
    noted = [case for case in config["tests"] if case["metadata"]["note"] == NOTE]
    assert len(noted) == 1
    assert {"type": "not-icontains", "value": "happy to help"} in noted[0]["assert"]
