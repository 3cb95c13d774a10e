"""The demo ships its world: replay targets demo-pinned / demo-current served on loopback from the
demo's generator, and action targets (gateway, flags, prompts, search) beside the incident. Real
commands, run as a new user would, in a temp dir with no replay suite and no oncall.toml."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from oncall.demoworld import find_world, world_dir
from oncall.demoworld.responder import answer
from tests.demo_world_helpers import build_small_demo, copy_demo, env, oncall

EXTRACT_NEW = "served_model=gpt-4o-2024-11-20 feature=extract"


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    return build_small_demo(tmp_path_factory.mktemp("small-demo"))


@pytest.fixture
def demo(small_demo: Path, tmp_path: Path) -> Path:
    return copy_demo(small_demo, tmp_path)


def replay(cwd: Path, target: str, *args: str) -> dict:
    res = oncall(cwd, "replay", EXTRACT_NEW, "--target", target, "-n", "20", "--repeat", "3", "--seed", "1",
                 "--json", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def metric(summary: dict, name: str, col: str = "replay") -> float:
    return next(m[col] for m in summary["metrics"] if m["metric"] == name)


def test_replay_on_the_pinned_snapshot_tells_the_regression_from_noise(demo: Path) -> None:
    cwd = demo.parent
    pinned, current = replay(cwd, "demo-pinned"), replay(cwd, "demo-current")
    # The old snapshot answers extract's requests with valid JSON and order_id again …
    assert metric(pinned, "json_valid_rate", "original") < 0.85
    assert metric(pinned, "json_valid_rate") >= 0.95
    # … and --repeat says most of the cohort changed beyond the model's own variation on it, while
    # the current snapshot varies among its own replays (noise) and changes far fewer requests.
    assert pinned["noise"]["changed_beyond_noise"] >= 10, pinned["noise"]
    assert current["noise"]["within_noise"] >= 10, current["noise"]
    assert current["noise"]["changed_beyond_noise"] < pinned["noise"]["changed_beyond_noise"] / 2
    assert metric(current, "json_valid_rate") < 0.9
    assert pinned["run"]["model"] == "gpt-4o-2024-08-06" and current["run"]["model"] == "gpt-4o"


def test_the_previous_prompt_version_answers_with_a_third_of_the_tokens(demo: Path) -> None:
    res = oncall(demo.parent, "replay", "prompt_version=v13", "--target", "demo-current", "--prompt",
                 "support-bot-v12", "-n", "20", "--seed", "1", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    s = json.loads(res.stdout)
    assert metric(s, "input_tokens_mean") <= 0.4 * metric(s, "input_tokens_mean", "original")
    assert s["counts"]["errors"] == 0 and s["counts"]["results"] == 20


def test_a_resumed_run_finds_the_demo_server_again(demo: Path) -> None:
    cwd = demo.parent
    first = oncall(cwd, "replay", EXTRACT_NEW, "--target", "demo-pinned", "-n", "6", "--max-requests", "2", "--json")
    assert first.returncode == 1, first.stderr[-2000:]  # stopped at the cap, in a process whose server is gone
    run_id = json.loads(first.stdout)["run_id"]
    res = oncall(cwd, "replay", "--resume", str(run_id), "--max-requests", "50", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["counts"]["results"] == 6


def test_oncall_demo_says_where_its_world_is(tmp_path: Path) -> None:
    res = oncall(tmp_path, "demo", "--no-tui", "--hours", "0.2", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    world = json.loads(res.stdout)["world"]
    world_path = tmp_path / world["dir"]  # named as the db was (relative here), so --json is the same from any cwd
    assert world["replay_targets"] == ["demo-pinned", "demo-current"]
    assert {"gateway", "flags", "prompts"} <= set(world["action_targets"])
    assert world_path.absolute() == world_dir(tmp_path / "incident.duckdb") and find_world(tmp_path / "incident.duckdb")
    w = find_world(tmp_path / "incident.duckdb")
    for path in (w.gateway, w.flags, w.prompts, w.search, w.variants / "support-bot-v12.md"):
        assert path.is_file() and world_path.absolute() in path.parents, path


def test_answers_are_the_generators_deterministic_per_seed_and_input() -> None:
    msgs = [{"role": "system", "content": "Extract the order as JSON with keys order_id, amount, currency, status. "
                                          "Reply with the JSON object only."},
            {"role": "user", "content": "Invoice 48213 for 311.5 USD, status paid, issued 2026-11-02."}]
    old = [answer(7, "gpt-4o-2024-08-06", msgs, k) for k in range(40)]
    new = [answer(7, "openai/gpt-4o", msgs, k) for k in range(40)]
    assert [r.content for r in old] == [answer(7, "gpt-4o-2024-08-06", msgs, k).content for k in range(40)]
    good = json.dumps({"order_id": "48213", "amount": 311.5, "currency": "EUR", "status": "shipped"})
    assert sum(r.content == good for r in old) >= 36  # the old snapshot: right nearly always
    assert {r.model for r in new} == {"gpt-4o-2024-11-20"}
    assert any("orderId" in r.content for r in new) and any(r.content.startswith("Sure!") for r in new)
    assert answer(8, "gpt-4o", msgs, 0) != answer(7, "gpt-4o", msgs, 0) or \
        [answer(8, "gpt-4o", msgs, k).content for k in range(20)] != [r.content for r in new[:20]]


def test_help_center_answers_from_the_articles_it_is_sent_as_the_generator_did(tmp_path: Path) -> None:
    """A replay of the help-center sends the recorded context (its articles are in the system prompt):
    the demo's model answers from them as the app's model did, so an empty retrieval is a refusal
    again and the right article the right answer, on either index."""
    import datetime as dt

    from oncall import demo as demo_gen
    from oncall.ingest.formats.otlp import decode_kv

    asked = 0
    for index in (demo_gen.OLD_INDEX, demo_gen.NEW_INDEX):
        path = tmp_path / f"{index}.jsonl"
        demo_gen.help_center_traffic(path, index=index, start=dt.datetime(2026, 11, 24, 3, tzinfo=dt.UTC),
                                     requests=30)
        for line in path.read_text().splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        attrs = decode_kv(span.get("attributes") or [])
                        if attrs.get("gen_ai.operation.name") != "chat" or "gen_ai.output.messages" not in attrs:
                            continue
                        msgs = [{"role": m["role"], "content": m["parts"][0]["content"]}
                                for m in json.loads(attrs["gen_ai.input.messages"])]
                        said = json.loads(attrs["gen_ai.output.messages"])[0]["parts"][0]["content"]
                        assert answer(1, attrs["gen_ai.request.model"], msgs).content == said, msgs
                        asked += 1
    assert asked >= 50


def test_demo_serve_announces_where_it_listens_and_stops_cleanly(demo: Path) -> None:
    cwd = demo.parent
    proc = subprocess.Popen([sys.executable, "-m", "oncall", "demo", "serve", "--json"], cwd=cwd, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        world = find_world(demo)
        assert world is not None and json.loads(world.serve_file.read_text())["url"] == info["url"]
        assert info["url"].startswith("http://127.0.0.1:")
        assert httpx2.get(info["url"] + "/health").json()["world"] == world.id
        # A second server for the same world is refused; a command uses the announced one.
        again = oncall(cwd, "demo", "serve")
        assert again.returncode == 2 and "already served" in again.stderr
        res = oncall(cwd, "replay", EXTRACT_NEW, "--target", "demo-pinned", "-n", "2")
        assert res.returncode == 0 and info["url"] + "/v1" in res.stderr, res.stderr
        # Any OpenAI client can call it.
        from openai import OpenAI

        chat = OpenAI(base_url=info["base_url"], api_key="none").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "How do I rotate my API key?"}])
        assert chat.model == "gpt-4o-2024-11-20" and "API keys" in chat.choices[0].message.content
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)  # drains its pipes: a full stderr pipe must not hold it
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"`oncall demo serve` did not stop within 60 s of Ctrl-C; its stderr:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    assert not world.serve_file.exists()
