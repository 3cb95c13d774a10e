"""Every README example of replay, runbooks and actions (README.md, runbooks/README.md,
replay/README.md), parsed out of the files and run as written in a temp dir on the demo, at a
terminal that answers yes to what it asks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.demo_world_helpers import ROOT, build_small_demo, copy_demo, env


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    return build_small_demo(tmp_path_factory.mktemp("small-demo"))


def readme_blocks() -> list[tuple[str, list[str]]]:
    """Each ```sh block of the READMEs that runs replay, runbooks or actions: (where, commands)."""
    out = []
    for doc in (ROOT / "README.md", ROOT / "runbooks" / "README.md", ROOT / "replay" / "README.md"):
        text = doc.read_text(encoding="utf-8")
        for i, chunk in enumerate(text.split("```sh\n")[1:]):
            body = chunk.split("```", 1)[0].replace("\\\n", " ")
            cmds = [ln.strip() for ln in body.splitlines() if ln.strip().startswith("oncall ")]
            if any(c.split()[1] in ("replay", "runbook", "action") for c in cmds if len(c.split()) > 1):
                out.append((f"{doc.relative_to(ROOT)} block {i + 1}", cmds))
    return out


BLOCKS = readme_blocks()


def run_typed(cwd: Path, line: str) -> subprocess.CompletedProcess[str]:
    """One README line in a shell, at a terminal that answers yes to whatever it asks."""
    import pty

    master, slave = pty.openpty()
    os.write(master, b"y\n" * 8)
    try:
        return subprocess.run(["bash", "-c", line], cwd=cwd, stdin=slave, capture_output=True, text=True,
                              timeout=300, env=env())
    finally:
        os.close(slave)
        os.close(master)


def test_readme_examples_are_found() -> None:
    where = {w.split(" block")[0] for w, _ in BLOCKS}
    assert where == {"README.md", "runbooks/README.md", "replay/README.md"}
    cmds = [c for _, cs in BLOCKS for c in cs]
    assert any("--target demo-pinned" in c for c in cmds) and any("runbook run" in c for c in cmds)


@pytest.mark.slow
@pytest.mark.parametrize("where,commands", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_readme_example_runs_as_written_on_the_demo(small_demo: Path, tmp_path: Path, where: str,
                                                    commands: list[str]) -> None:
    if shutil.which("oncall", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the `oncall` script is not installed beside this Python (pip install -e .)")
    copy_demo(small_demo, tmp_path)  # what `oncall demo --no-tui` builds, at small scale
    for line in commands:
        if line.split("#")[0].split() == ["oncall", "demo", "--no-tui"]:
            continue  # built above, identically
        started = time.monotonic()
        res = run_typed(tmp_path, line)
        assert res.returncode == 0, f"{where}: `{line}` exited {res.returncode} after " \
                                    f"{time.monotonic() - started:.0f} s\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
