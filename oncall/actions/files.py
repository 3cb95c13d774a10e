"""Files on disk, changed safely: content hashes, line patches, atomic replace.

A change to a config file is kept as a *line patch* (which lines, what they were, what they become)
rather than as whole files: the audit then holds only the changed lines (not a config full of
other things), the plan re-applies it to exactly the bytes it was computed from, and an undo applies
it backwards, which gives back the original bytes exactly.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oncall.actions.errors import StateMoved, TargetError
from oncall.actions.model import Plan, Proposal, State
from oncall.redact import REDACTED


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TargetError(f"{what}: {path} does not exist") from None
    except OSError as exc:
        raise TargetError(f"{what}: cannot read {path}: {exc.strerror}") from None


# -- line patches ---------------------------------------------------------------------------------
def make_patch(old: str, new: str) -> list[dict[str, Any]]:
    """Hunks turning `old` into `new`: [{"at": 0-based line, "old": [lines], "new": [lines]}]."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    hunks = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            hunks.append({"at": i1, "old": a[i1:i2], "new": b[j1:j2]})
    return hunks


def apply_patch(text: str, hunks: list[dict[str, Any]], *, reverse: bool = False, what: str = "file") -> str:
    """Apply hunks made by make_patch (backwards with reverse=True); the lines must be as expected."""
    lines = text.splitlines(keepends=True)
    offset = 0
    src, dst = ("new", "old") if reverse else ("old", "new")
    out: list[str] = []
    pos = 0
    for h in hunks:
        # Forward hunks are positioned in the old text; backwards, in the new text, which is the old
        # position shifted by what the earlier hunks added or removed.
        at = h["at"] + (offset if reverse else 0)
        want = h[src]
        if lines[at:at + len(want)] != want:
            raise StateMoved(f"{what}: line {at + 1} is not what the plan expected; the file changed")
        out.extend(lines[pos:at])
        out.extend(h[dst])
        pos = at + len(want)
        offset += len(h["new"]) - len(h["old"])
    out.extend(lines[pos:])
    return "".join(out)


_SECRET_LINE = re.compile(r"(?i)^(\s*-?\s*[\w\-]*(?:key|token|secret|password|authorization)[\w\-]*\s*[:=]\s*)(.+)$")


def undo_proposal(plan: Plan, state: State, *, what: str, name: str, summary: str, payload: dict[str, Any],
                  checks: Callable[[str], list[str]]) -> Proposal:
    """The Proposal that takes a file back to before `plan`'s patch: the patch reversed on the file as it
    is now, its diff, the fingerprint it will have, and the adapter's checks of the text it will hold."""
    text = state.data.decode("utf-8")
    old_text = apply_patch(text, plan.payload["patch"], reverse=True, what=what)
    return Proposal(summary=summary, before=plan.after, after=plan.before, diff=display_diff(text, old_text, name),
                    payload={"patch": make_patch(text, old_text), "path": plan.payload["path"], **payload},
                    expected=sha256(old_text.encode("utf-8")), checks=checks(old_text))


def redact_line(line: str) -> str:
    """A config line for display: a credential-named setting keeps its name, not its value
    (LiteLLM's `os.environ/NAME` references are names, so they stay)."""
    m = _SECRET_LINE.match(line)
    if m and not m.group(2).strip().strip("'\"").startswith("os.environ/"):
        return m.group(1) + REDACTED
    return line


def display_diff(old: str, new: str, name: str, context: int = 2) -> list[str]:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), f"{name} (now)", f"{name} (planned)",
                                 n=context, lineterm="")
    return [redact_line(line) for line in lines]


def patch_for_audit(hunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hunks as stored; a changed line that holds a credential makes the change unauditable."""
    for h in hunks:
        for line in h["old"] + h["new"]:
            if redact_line(line) != line:
                raise TargetError("the change would touch a line holding a credential; refusing to plan it")
    return hunks


# -- atomic replace -------------------------------------------------------------------------------
def atomic_write(path: Path, data: bytes, *, check: Callable[[Path], None] | None = None) -> None:
    """Replace `path` with `data` so a reader sees the old file or the new one, never a mix.

    The new bytes go to a temporary file in the same directory (same file system, so the rename is
    atomic), fsynced, with the old file's permissions; `check(temp_path)` may validate it and raise,
    which leaves the old file untouched; then rename over the old one and fsync the directory so
    the rename survives a crash. The new file's mtime is made later than the old one's: pollers
    such as the flagd provider reload only when mtime moves forward.
    """
    old_stat = path.stat() if path.exists() else None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".oncall-tmp" + path.suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if old_stat is not None:
            os.chmod(tmp, old_stat.st_mode & 0o7777)
            new_mtime = tmp.stat().st_mtime_ns
            if new_mtime <= old_stat.st_mtime_ns:
                bumped = old_stat.st_mtime_ns + 1_000_000
                os.utime(tmp, ns=(bumped, bumped))
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
