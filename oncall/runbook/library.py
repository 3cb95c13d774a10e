"""Where runbooks are found: --runbooks DIR, $ONCALL_RUNBOOKS, ./runbooks, then the shipped ones."""

from __future__ import annotations

import os
from pathlib import Path

from oncall.runbook.model import Runbook, RunbookError
from oncall.runbook.parse import parse_runbook

SHIPPED = Path(__file__).resolve().parent.parent.parent / "runbooks"


def runbook_dirs(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched, first match wins (a team's own runbook shadows a shipped one of that name)."""
    dirs: list[Path] = []
    if explicit:
        dirs.append(Path(explicit))
    env = os.environ.get("ONCALL_RUNBOOKS")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path.cwd() / "runbooks", SHIPPED]
    seen: list[Path] = []
    for d in dirs:
        r = d.resolve()
        if r not in seen and r.is_dir():
            seen.append(r)
    return seen


def _files(dirs: list[Path]) -> list[Path]:
    out: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.glob("*.md")):
            if p.name.lower() == "readme.md":
                continue
            out.setdefault(p.stem, p)
    return list(out.values())


def list_runbooks(explicit: str | None = None) -> tuple[list[Runbook], list[RunbookError]]:
    """Every runbook found, and the ones that do not parse (each error names its file and line)."""
    books, errors = [], []
    for path in _files(runbook_dirs(explicit)):
        try:
            books.append(parse_runbook(path))
        except RunbookError as exc:
            errors.append(exc)
    return books, errors


def find_runbook(name: str, explicit: str | None = None) -> Runbook:
    """A runbook by name (file stem or front-matter name), or a path to a Markdown file."""
    as_path = Path(name)
    if as_path.suffix == ".md" and as_path.is_file():
        return parse_runbook(as_path)
    dirs = runbook_dirs(explicit)
    for path in _files(dirs):
        if path.stem == name:
            return parse_runbook(path)
    books, _ = list_runbooks(explicit)
    for rb in books:
        if rb.name == name:
            return rb
    names = sorted({p.stem for p in _files(dirs)})
    raise RunbookError(f"no runbook named {name!r}; runbooks: {', '.join(names) or '(none found)'} "
                       f"(searched {', '.join(str(d) for d in dirs) or 'no directory'})")
