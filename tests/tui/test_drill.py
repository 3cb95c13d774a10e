"""The 2 AM drill (issue 27 item 4), as a new user would run it: `oncall demo` builds the incident,
`oncall open` in a real terminal (tmux), and every key the responder presses is sent with send-keys
and counted: open each of the three causes, read and label three outputs, replay the served-model
cohort on the snapshot before (demo-pinned, --repeat to tell noise), run the suggested runbook (gate,
action verified), undo the action, export the postmortem and the eval set, quit. At most 40 keys (note
text and typed production names not counted) and under 3 minutes from `oncall open` to the quit.
The screen is read back at each step; the files and the incident database are checked afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tui.test_tmux import SESSION, kill_server, pytestmark as tmux_mark, screen, tmux, wait_for

pytestmark = [tmux_mark, pytest.mark.slow]

MAX_KEYS = 40
MAX_WALL_S = 180.0
NOTE = 'the new snapshot: must not contain "orderId"'


class Keys:
    """send-keys, one key at a time, each one counted (text typed into a note is sent literally and
    not counted, as the issue says)."""

    def __init__(self) -> None:
        self.count = 0
        self.log: list[str] = []

    def press(self, *keys: str) -> None:
        for k in keys:
            tmux("send-keys", "-t", SESSION, k)
            self.count += 1
            self.log.append(k)
            time.sleep(0.15)  # a responder's pace; Textual handles each key before the next arrives

    def type_text(self, text: str) -> None:
        tmux("send-keys", "-t", SESSION, "-l", text)


def wait_gone(text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = screen()
        if text not in last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never went away; screen was:\n{last}")


def oncall_json(oncall: Path, *args: str) -> dict:
    out = subprocess.run([str(oncall), *args, "--json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def demo_incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`oncall demo` at a small scale (3 hours: the three injected causes), built before the clock starts."""
    oncall = Path(sys.executable).with_name("oncall")
    db = tmp_path_factory.mktemp("drill") / "incident.duckdb"
    subprocess.run([str(oncall), "demo", "--no-tui", "--db", str(db), "--hours", "3"], check=True,
                   capture_output=True, text=True, timeout=300)
    return db


def test_the_drill_in_40_keys(demo_incident: Path, tmp_path: Path) -> None:
    oncall = Path(sys.executable).with_name("oncall")
    db = demo_incident
    keys = Keys()
    env = f"TERM=xterm-256color ONCALL_CONFIG={tmp_path / 'none.toml'} "
    started = time.monotonic()
    tmux("new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48", "-c", str(db.parent),
         f"sleep 0.5; {env}{oncall} open --db {db}; sleep 60")  # the pane has its size first
    try:
        s = wait_for("what changed: 3", timeout=90)
        assert "prompt version v12 -> v13" in s and "served model gpt-4o-2024-08-06 -> gpt-4o-2024-11-20" in s
        assert "error rate" in s and "429 rate_limit" in s

        # -- open each of the three causes (enter opens the highlighted cause's cohort in the explorer)
        keys.press("Enter")  # the first cause is highlighted when what-changed arrives
        wait_for("prompt_version=v13")
        wait_for(" of ")
        keys.press("Escape")
        wait_for("what changed: 3")
        keys.press("BTab")  # shift+tab: the previous cause, wrapping to the last (the 429 burst)
        keys.press("Enter")
        wait_for("provider=anthropic since=")
        wait_for(" of ")
        keys.press("Escape")
        wait_for("what changed: 3")
        keys.press("BTab")  # the served-model cause
        keys.press("Enter")
        s = wait_for("model=gpt-4o since=")
        wait_for(" of ")

        # -- read and label three outputs of its cohort
        keys.press("r")
        s = wait_for("chatcmpl-")
        assert "1/" in s and "gpt-4o-2024-11-20" in s
        keys.press("g")
        wait_for("labelled good")
        keys.press("j", "g")
        wait_for("2/")
        keys.press("j", "b")
        wait_for("3/")
        wait_for("labelled bad")
        keys.press("n")
        wait_for("note on this request")
        keys.type_text(NOTE)
        keys.press("Enter")
        wait_for("note saved")

        # -- step 1: replay the cohort on the snapshot before, 3 repeats (prefilled from the cause)
        keys.press("1")
        s = wait_for("requests x3:", timeout=60)
        assert "demo-pinned" in s and "suggested:" in s
        keys.press("Tab", "Enter")  # Cancel is focused (the safe default): tab to Replay
        s = wait_for("replay 1: finished", timeout=150)  # esc while it runs would cancel it
        assert "noise (repeat 3)" in s and "changed beyond the model's own variation" in s
        keys.press("Escape")
        wait_for("chatcmpl-")

        # -- step 2: the suggested runbook (pin extract to the snapshot before), gate then action
        keys.press("2")
        s = wait_for("it will run:", timeout=30)
        assert "provider-model-regression" in s
        keys.press("Enter")  # enter in a field submits the form
        wait_for("run the evidence replay?", timeout=30)
        keys.press("Tab", "Enter")
        s = wait_for("apply this change?", timeout=150)
        keys.press("Tab", "Enter")
        s = wait_for("runbook completed", timeout=60)
        assert "✓ verified" in s
        keys.press("Escape")

        # -- undo the action (f4: the audit, newest first; u; confirm)
        keys.press("F4")
        wait_for("actions (the audit)")
        keys.press("u")
        wait_for("undo action 1?", timeout=30)
        keys.press("Tab", "Enter")
        s = wait_for("by 2", timeout=60)  # action 1 undone by action 2

        # -- the postmortem, then the eval set
        keys.press("F7")
        wait_for("ctrl+s exports", timeout=60)
        keys.press("C-s")
        wait_for("export the postmortem draft")
        keys.press("Enter")
        wait_for("postmortem draft written to", timeout=30)
        keys.press("e")
        wait_for("promptfoo eval set")
        keys.press("Enter")
        wait_for("eval set: 3 request(s) written", timeout=60)
        keys.press("C-q")
        wait_gone("postmortem draft", timeout=15)
        wall = time.monotonic() - started
    finally:
        kill_server()

    print(f"\ndrill: {keys.count} keys in {wall:.0f} s: {' '.join(keys.log)}")
    assert keys.count <= MAX_KEYS, keys.log
    assert wall < MAX_WALL_S

    # -- what the drill left: the postmortem names the suggestion taken and the undone action
    postmortem = (db.parent / "postmortem.md").read_text(encoding="utf-8")
    taken = postmortem.split("## Suggested next steps", 1)[1].split("\n## ", 1)[0]
    assert "replay the cohort on the snapshot before (gpt-4o-2024-08-06): **taken** (console, replay run 1" in taken
    assert "pin extract to gpt-4o-2024-08-06 (runbook provider-model-regression): **taken** (console" in taken
    assert taken.count("**taken**") == 2 and "not taken" in taken  # the other causes' steps were not
    assert "replay 1 finished: 60 of 60 replayed against demo-pinned" in postmortem
    assert ("action 1 at" in postmortem and "(pin extract: openai/gpt-4o → openai/gpt-4o-2024-08-06), undone by "
            "action 2" in postmortem)
    assert "No action is in force: every action taken was undone." in postmortem
    assert "Evidence gate: `oncall replay" in postmortem and "— passed" in postmortem

    # -- the audit and the gateway the action changed and put back
    actions = {a["action_id"]: a for a in oncall_json(oncall, "action", "list", "--db", str(db))}
    assert sorted(actions) == [1, 2]
    assert actions[1]["status"] == "verified" and actions[1]["op"] == "pin"
    assert actions[1]["runbook"] == "provider-model-regression"
    assert actions[2]["status"] == "verified" and actions[2]["undo_of"] == 1
    gateway = (db.parent / "incident.demo-world" / "gateway.yaml").read_text(encoding="utf-8")
    assert "gpt-4o-2024-08-06" not in gateway

    # -- the eval set: the three labelled requests, the note's "must not contain" as a check
    evalset = db.parent / "evalset" / "promptfooconfig.yaml"
    text = evalset.read_text(encoding="utf-8")
    assert text.count("oncall-") >= 3 and "orderId" in text
    labels = oncall_json(oncall, "search", "--db", str(db), "label=good,bad")
    assert labels["total"] == 3
