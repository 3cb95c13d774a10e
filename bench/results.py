"""bench/RESULTS.md is shared by every benchmark: each one owns the section between its two markers."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(begin: str, end: str, text: str, path: Path = RESULTS) -> None:
    """Replace the text between `begin` and `end` (appending the section if it is not there yet)."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)
