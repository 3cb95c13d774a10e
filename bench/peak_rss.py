"""Peak RSS of one child process, measured so that it is the child's own.

`os.wait4` on a child this process forked is not enough: at exec Linux carries the forking parent's
peak RSS into the child's `ru_maxrss` (a 300 MB parent running `true` reports 313 MB), so a bench
that built its incident in-process measured itself. A launcher this small forks the command instead
and writes the command's `ru_maxrss` to a file; its own few MB are all it can carry over.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

LAUNCHER = """import resource, subprocess, sys
p = subprocess.run(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(p.returncode)"""


def run_with_peak(cmd: list[str], **popen: Any) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """Run cmd to completion (subprocess.run's keyword arguments) and return it with its peak RSS in MB."""
    fd, name = tempfile.mkstemp(prefix="peak-rss-")
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, name, *cmd], **popen)
        text = Path(name).read_text().strip()
    finally:
        os.unlink(name)
    return proc, int(text) / 1024 if text else float("nan")
